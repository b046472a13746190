package telemetry

import (
	"fmt"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// LogConfig selects how kmirror logs.
type LogConfig struct {
	// Level is one of debug, info, warn, error.
	Level string
	// Format is "console" for people or "json" for machines.
	Format string
	// Dynamic, when set, is given the logger's level, through which it can be changed while the
	// logger runs (a configuration reload of log.level).
	Dynamic *zap.AtomicLevel
}

// NewLogger builds the process logger. Every line carries the source and target cluster aliases,
// so logs of several kmirror instances can be told apart once they are collected together.
func NewLogger(cfg LogConfig, sourceAlias, targetAlias string) (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(cfg.Level)
	if err != nil {
		return nil, fmt.Errorf("log.level %q: want debug, info, warn or error", cfg.Level)
	}
	var zc zap.Config
	switch cfg.Format {
	case "json":
		zc = zap.NewProductionConfig()
		zc.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	case "console", "":
		zc = zap.NewDevelopmentConfig()
		zc.Development = false
		zc.EncoderConfig.EncodeLevel = zapcore.CapitalLevelEncoder
		zc.DisableStacktrace = true
	default:
		return nil, fmt.Errorf("log.format %q: want console or json", cfg.Format)
	}
	zc.Level = zap.NewAtomicLevelAt(level)
	if cfg.Dynamic != nil {
		*cfg.Dynamic = zc.Level
	}
	zc.Sampling = nil
	logger, err := zc.Build()
	if err != nil {
		return nil, fmt.Errorf("build logger: %w", err)
	}
	return logger.With(zap.String("source", sourceAlias), zap.String("target", targetAlias)), nil
}
