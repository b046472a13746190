package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/kmirror/kmirror/pkg/preflight"
)

func newValidateCommand() *cobra.Command {
	var flags configFlags
	var connect bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check a configuration file, and with --connect what both clusters allow",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := flags.load()
			if err != nil {
				return err
			}
			// load has checked that the files the settings name (CA, client certificate, password
			// file) are readable now, not first when run starts.
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "configuration is valid: mirroring %v from %s %v to %s %v (policy %s, group %q, %d workers)\n",
				cfg.Topics.Include, cfg.Source.Alias, cfg.Source.Bootstrap, cfg.Target.Alias, cfg.Target.Bootstrap,
				cfg.Topics.ReplicationPolicy, cfg.Consumer.GroupID, cfg.Ring.Workers)
			fmt.Fprintln(out, "effective settings (defaults, then the file, then KMIRROR_* variables, then --set):")
			for _, line := range cfg.Effective() {
				fmt.Fprintln(out, "  "+line)
			}
			if !connect {
				return nil
			}
			ctx, cancel := context.WithTimeoutCause(cmd.Context(), timeout, fmt.Errorf("--timeout %s", timeout))
			defer cancel()
			if !preflight.Print(out, preflight.Run(ctx, cfg)) {
				return exitError{code: 1}
			}
			return nil
		},
	}
	flags.register(cmd)
	cmd.Flags().BoolVar(&connect, "connect", false, "connect to both clusters and check reachability, TLS, authentication and the operations kmirror needs")
	cmd.Flags().DurationVar(&timeout, "timeout", time.Minute, "limit for the --connect checks")
	return cmd
}
