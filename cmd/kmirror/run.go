package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/groups"
	"github.com/kmirror/kmirror/pkg/mirror"
	"github.com/kmirror/kmirror/pkg/status"
	"github.com/kmirror/kmirror/pkg/telemetry"
	"github.com/kmirror/kmirror/pkg/version"
)

func newRunCommand() *cobra.Command {
	var flags configFlags
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Mirror until stopped (SIGTERM/SIGINT drain, commit and exit; SIGHUP reloads the configuration)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			// SIGHUP is a reload from the start: its default action would end the process at once.
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			cfg, err := flags.load()
			if err != nil {
				return err
			}
			return run(cmd.Context(), cfg, hup, flags.load)
		},
	}
	flags.register(cmd)
	return cmd
}

// stopMargin is how long past shutdown.timeout a stop may take before the process exits
// regardless: flushing traces (at most 5 s) and a little slack.
const stopMargin = 10 * time.Second

// run mirrors with cfg until ctx ends; each signal on hup reloads the configuration with load
// (reload.go).
func run(ctx context.Context, cfg *config.Config, hup <-chan os.Signal, load func() (*config.Config, error)) error {
	level := zap.NewAtomicLevel()
	log, err := telemetry.NewLogger(telemetry.LogConfig{Level: cfg.Log.Level, Format: cfg.Log.Format, Dynamic: &level}, cfg.Source.Alias, cfg.Target.Alias)
	if err != nil {
		return configError{err}
	}
	defer func() { _ = log.Sync() }()
	log.Info("starting kmirror", zap.String("version", version.Version),
		zap.Strings("include", cfg.Topics.Include), zap.String("policy", cfg.Topics.ReplicationPolicy))
	applyGCPercent(cfg.Runtime.GCPercent, log)

	reg := prometheus.NewRegistry()
	metrics, err := telemetry.NewMetrics(reg)
	if err != nil {
		return fmt.Errorf("register metrics: %w", err)
	}
	saramaMetrics := telemetry.NewSaramaCollector()
	if cfg.Telemetry.SaramaMetrics {
		reg.MustRegister(saramaMetrics)
	}

	host, _ := os.Hostname()
	tracing, err := telemetry.NewTracing(ctx, telemetry.TracingConfig{
		Endpoint: cfg.Telemetry.Tracing.Endpoint, Protocol: cfg.Telemetry.Tracing.Protocol,
		Insecure: cfg.Telemetry.Tracing.Insecure, SampleRatio: cfg.Telemetry.Tracing.SampleRatio,
		PropagateToTarget: cfg.Telemetry.Tracing.PropagateToTarget,
	}, telemetry.ResourceInfo{
		ServiceVersion: version.Version, SourceAlias: cfg.Source.Alias, TargetAlias: cfg.Target.Alias,
		InstanceID: fmt.Sprintf("%s-%d", host, os.Getpid()),
	})
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tracing.Shutdown(sctx); err != nil {
			log.Warn("flush traces", zap.Error(err))
		}
	}()
	if tracing.Enabled {
		log.Info("tracing to OTLP collector", zap.String("endpoint", cfg.Telemetry.Tracing.Endpoint),
			zap.Float64("sample_ratio", cfg.Telemetry.Tracing.SampleRatio),
			zap.Bool("propagate_to_target", cfg.Telemetry.Tracing.PropagateToTarget))
	}

	m, err := mirror.New(cfg, mirror.Options{
		Log: log, Metrics: metrics, Tracing: tracing,
		SaramaClients: func(name string, c *sarama.Config) {
			if !cfg.Telemetry.SaramaMetrics {
				c.MetricRegistry = telemetry.WithoutAny(c.MetricRegistry)
				return
			}
			c.MetricRegistry = telemetry.WithoutConsumerBatchSize(c.MetricRegistry)
			if !cfg.Telemetry.SaramaTopicMetrics {
				c.MetricRegistry = telemetry.WithoutTopicMetrics(c.MetricRegistry)
			}
			saramaMetrics.Add(name, c.MetricRegistry)
		},
	})
	if err != nil {
		return err
	}

	// The endpoint outlives the mirror by nothing: it stops when run returns.
	srvCtx, stopServer := context.WithCancel(context.Background())
	defer stopServer()
	if cfg.Telemetry.Listen != "" {
		srv, err := telemetry.NewServer(telemetry.ServerConfig{Listen: cfg.Telemetry.Listen, Pprof: cfg.Telemetry.Pprof, Started: m.Started,
			Routes: map[string]http.Handler{
				"/offsets/translate": groups.TranslateHandler(m.Planner),
				status.Path:          status.Handler(m.Status),
			},
			About: map[string]string{
				"/offsets/translate": "?group=G[&topic=T]: where a source group resumes on the target (JSON)",
				status.Path:          "per partition lag, RPO, stalls; heartbeat; group sync; errors (JSON; kmirror status prints it)",
			}},
			reg, m.Ready, log)
		if err != nil {
			return err
		}
		go func() {
			if err := srv.Run(srvCtx); err != nil {
				log.Error("telemetry endpoint stopped", zap.Error(err))
			}
		}()
	}
	go reloadOnSignal(ctx, hup, load, m, level, log)
	go notifySystemd(ctx, log, m.Started, func() error {
		err := m.Ready()
		if err == nil {
			metrics.Ready.Set(1)
		} else {
			metrics.Ready.Set(0)
		}
		return err
	})
	// A stop is bounded: the mirror keeps to shutdown.timeout whatever the clusters do; should it
	// not, the process ends anyway a little later (traces get their 5 s to flush in between).
	context.AfterFunc(ctx, func() {
		time.AfterFunc(cfg.Shutdown.Timeout+stopMargin, func() {
			log.Error("stop took longer than shutdown.timeout plus its margin; exiting now",
				zap.Duration("shutdown_timeout", cfg.Shutdown.Timeout), zap.Duration("margin", stopMargin))
			_ = log.Sync()
			os.Exit(1)
		})
	})
	if err := m.Run(ctx); err != nil {
		log.Error("kmirror stopped with an error", zap.Error(err))
		return exitError{code: exitFailure}
	}
	return nil
}

// notifySystemd tells systemd (Type=notify) that kmirror has started (READY=1) once the mirror
// runs, without waiting for the clusters: a start while the target is down is a start, and the
// unit's start timeout must not fail it. Each change of readiness is told as STATUS= (the
// reason when not ready, as /readyz says it), and STOPPING=1 when ctx ends. It polls readiness
// (which also keeps the kmirror_ready gauge) for as long as ctx lasts. Outside systemd the
// notifications do nothing.
func notifySystemd(ctx context.Context, log *zap.Logger, started, ready func() error) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	notified, status := false, ""
	notify := func(state string) {
		if _, err := daemon.SdNotify(false, state); err != nil {
			log.Warn("notify systemd", zap.Error(err))
		}
	}
	for {
		select {
		case <-ctx.Done():
			notify(daemon.SdNotifyStopping)
			return
		case <-t.C:
			if !notified && started() == nil {
				notified = true
				notify(daemon.SdNotifyReady)
			}
			now := "STATUS=mirroring"
			if err := ready(); err != nil {
				now = "STATUS=not ready: " + strings.ReplaceAll(err.Error(), "\n", " ")
			}
			if notified && now != status {
				status = now
				notify(now)
			}
		}
	}
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, the commit and the build date",
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), version.String())
		},
	}
}

// applyGCPercent sets the collector's target from runtime.gc_percent, unless the operator set GOGC
// in the environment, which wins.
func applyGCPercent(percent int, log *zap.Logger) {
	if v, ok := os.LookupEnv("GOGC"); ok {
		log.Info("GOGC is set in the environment; runtime.gc_percent is not applied", zap.String("GOGC", v))
		return
	}
	debug.SetGCPercent(percent)
}
