package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/IBM/sarama"
	"github.com/spf13/cobra"

	"github.com/kmirror/kmirror/pkg/cluster"
	"github.com/kmirror/kmirror/pkg/heartbeat"
)

func newHeartbeatsCommand() *cobra.Command {
	var (
		flags   configFlags
		on      string
		asJSON  bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "heartbeats",
		Short: "The last heartbeat of every flow found on a cluster, with its age",
		Long: "heartbeats reads the heartbeat topics on the target (or, with --cluster source, the source)\n" +
			"and prints the last heartbeat of each flow found there, with how long ago it was emitted.\n" +
			"It exits 1 when it finds none.",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := flags.load()
			if err != nil {
				return err
			}
			cc := cfg.Target
			switch on {
			case "target":
			case "source":
				cc = cfg.Source
			default:
				return fmt.Errorf("--cluster %q: want source or target", on)
			}
			cl, err := cluster.New(on, cc)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			client, err := sarama.NewClient(cl.Bootstrap(), cl.Config("heartbeats"))
			if err != nil {
				return fmt.Errorf("connect to %s %s: %w", on, cl.Alias(), err)
			}
			defer client.Close()
			seen, err := heartbeat.Latest(ctx, client, cfg.Heartbeats.Topic)
			if err != nil {
				return fmt.Errorf("heartbeats on %s %s: %w", on, cl.Alias(), err)
			}
			now := time.Now()
			out := cmd.OutOrStdout()
			if asJSON {
				type row struct {
					Topic string `json:"topic"`
					heartbeat.Heartbeat
					AgeSeconds float64 `json:"age_seconds"`
				}
				rows := []row{}
				for _, s := range seen {
					rows = append(rows, row{s.Topic, s.Heartbeat, now.Sub(s.Time()).Seconds()})
				}
				if err := writeJSON(out, rows); err != nil {
					return err
				}
			} else {
				w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "TOPIC\tFLOW\tEMITTED\tAGE")
				for _, s := range seen {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", s.Topic, s.Key(), s.Emitted, now.Sub(s.Time()).Round(time.Millisecond))
				}
				if err := w.Flush(); err != nil {
					return err
				}
			}
			if len(seen) == 0 {
				return fmt.Errorf("no heartbeat found on %s %s (topics %s.<origin>)", on, cl.Alias(), cfg.Heartbeats.Topic)
			}
			return nil
		},
	}
	flags.register(cmd)
	cmd.Flags().StringVar(&on, "cluster", "target", "the cluster to read: target or source")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "give up reading after this long")
	return cmd
}
