// Command kmirror mirrors Kafka topics from a source cluster to a target cluster.
//
// main only wires: it reads the configuration, builds the components, runs them and turns
// signals into a graceful stop.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The first signal starts a graceful stop; from then on the signals have their default
	// action again, so a second one ends the process at once.
	context.AfterFunc(ctx, stop)
	if err := newRootCommand().ExecuteContext(ctx); err != nil {
		os.Exit(reportExit(err))
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "kmirror",
		Short: "Mirror Kafka topics from a source cluster to a target cluster",
		Long: "kmirror copies topics, continuously and in order per partition, from a source Kafka cluster\n" +
			"to a target cluster, committing source offsets only once the target has acknowledged.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newRunCommand(), newValidateCommand(), newVerifyCommand(), newOffsetsCommand(), newFailoverCommand(), newTopicsCommand(), newHeartbeatsCommand(), newStatusCommand(), newMigrateCommand(), newDemoCommand(), newConfigCommand(), newVersionCommand())
	return root
}
