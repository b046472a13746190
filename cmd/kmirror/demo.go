package main

import (
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/kmirror/kmirror/pkg/demo"
	"github.com/kmirror/kmirror/pkg/telemetry"
)

func newDemoCommand() *cobra.Command {
	o := demo.Options{Topic: "orders", Partitions: 12, Brokers: 3}
	var logLevel string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Mirror a generated workload between two embedded Kafka clusters and verify it",
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := telemetry.NewLogger(telemetry.LogConfig{Level: logLevel, Format: "console"}, "europe", "us")
			if err != nil {
				return err
			}
			defer func() { _ = log.Sync() }()
			o.Out = cmd.OutOrStdout()
			o.Log = log
			if err := demo.Run(cmd.Context(), o); err != nil {
				log.Error("demo failed", zap.Error(err))
				return exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&o.Records, "records", 800_000, "records to produce and mirror")
	cmd.Flags().IntVar(&o.Rate, "rate", 30_000, "records produced per second (0: as fast as possible)")
	cmd.Flags().IntVar(&o.ValueBytes, "value-bytes", 512, "size of each record's value")
	cmd.Flags().Int32Var(&o.Partitions, "partitions", 12, "partitions of the demo topic")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", 10*time.Minute, "give up after this long")
	cmd.Flags().StringVar(&logLevel, "log-level", "warn", "kmirror's log level during the demo")
	return cmd
}
