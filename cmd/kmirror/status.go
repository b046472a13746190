package main

import (
	"context"
	"errors"
	"time"

	"github.com/spf13/cobra"

	"github.com/kmirror/kmirror/pkg/status"
)

func newStatusCommand() *cobra.Command {
	var flags configFlags
	var addr string
	var asJSON bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "status [--addr HOST:PORT | --config FILE] [--json]",
		Short: "Print what a running kmirror mirrors: per partition its lag, RPO and stalls; heartbeat; group sync; errors",
		Long: "status asks the running daemon (GET /status on its telemetry.listen address, read from --config\n" +
			"unless --addr names it) and prints, per mirrored partition of that member, the records not yet\n" +
			"mirrored, their bytes, the RPO (age of the oldest of them) and whether it is stalled; then the last\n" +
			"heartbeat mirrored, the group offset sync and the latest errors. --json prints the daemon's JSON.\n" +
			"It exits 0 when the daemon is ready, 1 when it answers not ready or cannot be reached, 78 when the\n" +
			"configuration cannot be read.",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if addr == "" {
				cfg, err := flags.load()
				if err != nil {
					return err
				}
				if addr = cfg.Telemetry.Listen; addr == "" {
					return configError{errors.New("telemetry.listen is empty in the configuration: the daemon serves no /status; name its address with --addr")}
				}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			r, err := status.Fetch(ctx, addr)
			if err != nil {
				return err
			}
			if asJSON {
				if err := writeJSON(cmd.OutOrStdout(), r); err != nil {
					return err
				}
			} else {
				status.Print(cmd.OutOrStdout(), r)
			}
			if !r.Ready {
				return exitError{code: exitFailure}
			}
			return nil
		},
	}
	flags.register(cmd)
	cmd.Flags().StringVar(&addr, "addr", "", "the daemon's telemetry address (host:port or URL); default: telemetry.listen of --config")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the daemon's /status JSON")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "give up asking after this long")
	return cmd
}
