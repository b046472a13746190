package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/kmirror/kmirror/pkg/cluster"
	"github.com/kmirror/kmirror/pkg/heartbeat"
	"github.com/kmirror/kmirror/pkg/topics"
	"github.com/kmirror/kmirror/pkg/verify"
)

func newVerifyCommand() *cobra.Command {
	var flags configFlags
	var only string
	var exact bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Compare the mirrored topics on both clusters, partition by partition (audits, failover drills)",
		Long: "verify reads every partition of the mirrored topics on the source and on the target, with an\n" +
			"independent client, and compares them record by record (key, value, headers, timestamp): counts,\n" +
			"checksums, records lost (with their offset ranges), duplicated, changed, and whether the first\n" +
			"copies keep the source order with duplicates only as whole re-runs. It reads each side up to its\n" +
			"end at the start, so run it on a caught-up or stopped mirror. It exits 1 on any loss, change or\n" +
			"reordering (and, with --exact, on duplicates too).",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := flags.load()
			if err != nil {
				return err
			}
			include, exclude := cfg.Topics.Include, cfg.Topics.Exclude
			if only != "" {
				include, exclude = []string{only}, nil
			}
			filter, err := topics.NewFilter(include, exclude)
			if err != nil {
				return fmt.Errorf("--topics: %w", err)
			}
			if only == "" {
				// Heartbeats are written all the time: a stopped mirror leaves the last few behind.
				filter.Decide(func(t string) (bool, bool) {
					_, isHeartbeat := heartbeat.Origin(cfg.Heartbeats.Topic, t)
					return false, isHeartbeat
				})
			}
			name, err := topics.NewNamer(cfg.Topics.ReplicationPolicy, cfg.Source.Alias)
			if err != nil {
				return err
			}
			src, err := cluster.New("source", cfg.Source)
			if err != nil {
				return err
			}
			tgt, err := cluster.New("target", cfg.Target)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			srcOpts, tgtOpts := clientOpts(src), clientOpts(tgt)
			mirrored, err := listMirrored(ctx, src.Bootstrap(), srcOpts, filter, name)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if len(mirrored) == 0 {
				fmt.Fprintf(out, "no source topic matches %q (exclude %q): nothing to compare\n", include, exclude)
				return exitError{code: 1}
			}
			rep, err := verify.CompareWith(ctx, src.Bootstrap(), tgt.Bootstrap(), mirrored,
				verify.Options{SourceOpts: srcOpts, TargetOpts: tgtOpts})
			if err != nil {
				return fmt.Errorf("compare: %w", err)
			}
			for _, p := range rep.Partitions {
				verdict := "identical"
				switch {
				case !p.Complete():
					verdict = "DIFFERS"
				case !p.Exact():
					verdict = "complete (duplicates)"
				}
				fmt.Fprintf(out, "%s/%d -> %s/%d: source %d, target %d, checksums %016x %016x: %s\n",
					p.Topic, p.Partition, mirrored[p.Topic], p.Partition, p.Source, p.Target, p.SourceChecksum, p.TargetChecksum, verdict)
			}
			fmt.Fprintln(out, rep.String())
			if !rep.Complete() || (exact && !rep.Exact()) {
				return exitError{code: 1}
			}
			return nil
		},
	}
	flags.register(cmd)
	cmd.Flags().StringVar(&only, "topics", "", "compare only the source topics matching this regular expression (anchored), instead of topics.include/exclude")
	cmd.Flags().BoolVar(&exact, "exact", false, "also fail on duplicates (at-least-once delivery allows them after a restart)")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Minute, "limit for the whole comparison")
	return cmd
}

// listMirrored returns the source topics the filter selects, each with its target name.
func listMirrored(ctx context.Context, addrs []string, opts []kgo.Opt, filter *topics.Filter, name topics.Namer) (map[string]string, error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addrs...)}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to the source: %w", err)
	}
	defer cl.Close()
	listed, err := kadm.NewClient(cl).ListTopics(ctx)
	if err != nil {
		return nil, fmt.Errorf("list source topics: %w", err)
	}
	out := make(map[string]string)
	for _, t := range slices.Sorted(maps.Keys(listed)) {
		if filter.Match(t) {
			out[t] = name(t)
		}
	}
	return out, nil
}

// clientOpts turns a cluster's TLS and SASL settings into franz-go options.
func clientOpts(c *cluster.Cluster) []kgo.Opt {
	var opts []kgo.Opt
	if t := c.TLS(); t != nil {
		opts = append(opts, kgo.DialTLSConfig(t))
	}
	switch mech, user, pass := c.SASL(); mech {
	case "PLAIN":
		opts = append(opts, kgo.SASL(plain.Auth{User: user, Pass: pass}.AsMechanism()))
	case "SCRAM-SHA-256":
		opts = append(opts, kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha256Mechanism()))
	case "SCRAM-SHA-512":
		opts = append(opts, kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha512Mechanism()))
	}
	return opts
}
