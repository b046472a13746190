package main

import (
	"context"
	"fmt"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/mirror"
	"github.com/kmirror/kmirror/pkg/telemetry"
	"github.com/kmirror/kmirror/pkg/version"
)

type configFlags struct {
	path string
	set  []string
}

func (f *configFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&f.path, "config", "c", "", "YAML configuration file (see configs/kmirror.yaml)")
	cmd.Flags().StringArrayVar(&f.set, "set", nil, "override a key, e.g. --set producer.compression=zstd (repeatable)")
}

func (f *configFlags) load() (*config.Config, error) { return config.Load(f.path, f.set) }

func newRunCommand() *cobra.Command {
	var flags configFlags
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Mirror until stopped (SIGTERM/SIGINT drain, commit and exit)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := flags.load()
			if err != nil {
				return err
			}
			return run(cmd.Context(), cfg)
		},
	}
	flags.register(cmd)
	return cmd
}

func run(ctx context.Context, cfg *config.Config) error {
	log, err := telemetry.NewLogger(telemetry.LogConfig{Level: cfg.Log.Level, Format: cfg.Log.Format}, cfg.Source.Alias, cfg.Target.Alias)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	log.Info("starting kmirror", zap.String("version", version.Version),
		zap.Strings("include", cfg.Topics.Include), zap.String("policy", cfg.Topics.ReplicationPolicy))

	m, err := mirror.New(cfg, mirror.Options{Log: log})
	if err != nil {
		return err
	}
	go notifySystemd(ctx, log, m.Ready)
	if err := m.Run(ctx); err != nil {
		log.Error("kmirror stopped with an error", zap.Error(err))
		return exitError{code: 1}
	}
	return nil
}

// notifySystemd tells systemd (Type=notify) that kmirror is ready once it is, and that it is
// stopping when ctx ends. Outside systemd it does nothing.
func notifySystemd(ctx context.Context, log *zap.Logger, ready func() error) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			_, _ = daemon.SdNotify(false, daemon.SdNotifyStopping)
			return
		case <-t.C:
			if ready() == nil {
				if ok, err := daemon.SdNotify(false, daemon.SdNotifyReady); err != nil {
					log.Warn("notify systemd", zap.Error(err))
				} else if ok {
					log.Info("told systemd kmirror is ready")
				}
				<-ctx.Done()
				_, _ = daemon.SdNotify(false, daemon.SdNotifyStopping)
				return
			}
		}
	}
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "kmirror", version.Version)
		},
	}
}
