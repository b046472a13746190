package main

import (
	"context"
	"os"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/mirror"
)

// reloadOnSignal reloads the configuration on each signal from hup until ctx ends: it loads the
// file again (with the same --config, --set and environment), hands it to the mirror, and sets
// the log level. A configuration that cannot be loaded, or that changes what needs a restart, is
// refused: logged with every reason, and the mirror goes on as it was. Only the keys that
// changed are logged, never a value of a credential.
func reloadOnSignal(ctx context.Context, hup <-chan os.Signal, load func() (*config.Config, error), m *mirror.Mirror, level zap.AtomicLevel, log *zap.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		log.Info("SIGHUP: reloading the configuration")
		next, err := load()
		if err != nil {
			log.Error("reload refused: the configuration cannot be used; still running with the previous one", zap.Error(err))
			continue
		}
		changes, err := m.Reload(next)
		if err != nil {
			log.Error("reload refused; still running with the previous configuration", zap.Error(err))
			continue
		}
		keys := make([]string, 0, len(changes))
		for _, c := range changes {
			keys = append(keys, c.Key)
			if c.Key == "log.level" {
				if l, err := zapcore.ParseLevel(next.Log.Level); err == nil {
					level.SetLevel(l)
				}
			}
		}
		if len(keys) == 0 {
			log.Info("configuration reloaded: nothing changed")
			continue
		}
		log.Info("configuration reloaded", zap.Strings("changed", keys))
	}
}
