package mirror

import (
	"errors"
	"slices"

	"go.uber.org/zap"

	"github.com/kmirror/kmirror/pkg/cluster"
	"github.com/kmirror/kmirror/pkg/config"
)

// Reload applies next, a configuration loaded while the mirror runs, and returns what changed:
//   - the credentials of both clusters (TLS files, SCRAM user and password; files are read again
//     even when their paths are unchanged, as a rotation rewrites them in place): every
//     connection opened from now on uses them, those open keep theirs until they close;
//   - topics.include and exclude: the next topic refresh (topics.refresh_interval) mirrors what
//     they select now, and the consumer group rejoins with it;
//   - groups.include and exclude: the group offset sync starts over with them.
//
// log.level is the caller's to apply: it owns the logger. When a change needs a restart, Reload
// applies nothing and returns a *config.RefusedError naming each such key and why; when a file
// cannot be used, it applies nothing either. It is not safe for concurrent use (one reload at a
// time: the signal loop).
func (m *Mirror) Reload(next *config.Config) ([]config.Change, error) {
	running := m.live.Load()
	changes := config.Diff(running, next)
	if err := config.Refused(changes); err != nil {
		return changes, err
	}
	// Check every file before anything changes.
	for _, c := range []struct {
		key string
		cfg config.Cluster
	}{{"source", next.Source}, {"target", next.Target}} {
		if _, err := cluster.New(c.key, c.cfg); err != nil {
			return changes, err
		}
	}
	srcChanged, serr := m.source.Reload(next.Source)
	tgtChanged, terr := m.target.Reload(next.Target)
	if err := errors.Join(serr, terr); err != nil {
		return changes, err // a file changed between the check and now; the next reload retries
	}
	// A file rewritten in place changes no key: it is named as changed all the same.
	for _, key := range append(srcChanged, tgtChanged...) {
		if !slices.ContainsFunc(changes, func(c config.Change) bool { return c.Key == key }) {
			changes = append(changes, config.Change{Key: key, Reloadable: true})
		}
	}
	if err := m.filter.Set(next.Topics.Include, next.Topics.Exclude); err != nil {
		return changes, err // validated at load: cannot happen
	}
	if gs := m.groups.Load(); gs != nil && changed(changes, "groups.include", "groups.exclude") {
		if err := gs.setGroups(next.Groups.Include, next.Groups.Exclude); err != nil {
			return changes, err
		}
	}
	m.live.Store(next)
	if changed(changes, "topics.include", "topics.exclude") {
		m.log.Info("topic selection reloaded: the next refresh mirrors what it selects",
			zap.Strings("include", next.Topics.Include), zap.Strings("exclude", next.Topics.Exclude),
			zap.Duration("refresh_interval", m.cfg.Topics.RefreshInterval))
	}
	if changed(changes, "groups.include", "groups.exclude") {
		m.log.Info("group selection reloaded", zap.Strings("include", next.Groups.Include), zap.Strings("exclude", next.Groups.Exclude))
	}
	return changes, nil
}

// changed reports whether one of keys is among changes.
func changed(changes []config.Change, keys ...string) bool {
	return slices.ContainsFunc(changes, func(c config.Change) bool { return slices.Contains(keys, c.Key) })
}
