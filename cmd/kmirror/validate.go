package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newValidateCommand() *cobra.Command {
	var flags configFlags
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check a configuration file and print the effective settings",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := flags.load()
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "configuration is valid: mirroring %v from %s %v to %s %v (policy %s, group %q, %d workers)\n",
				cfg.Topics.Include, cfg.Source.Alias, cfg.Source.Bootstrap, cfg.Target.Alias, cfg.Target.Bootstrap,
				cfg.Topics.ReplicationPolicy, cfg.Consumer.GroupID, cfg.Ring.Workers)
			return nil
		},
	}
	flags.register(cmd)
	return cmd
}
