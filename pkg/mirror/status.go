package mirror

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kmirror/kmirror/pkg/cluster"
	"github.com/kmirror/kmirror/pkg/status"
	"github.com/kmirror/kmirror/pkg/topics"
	"github.com/kmirror/kmirror/pkg/version"
)

// Status reports the flow as /status serves it: readiness and why not, every partition this
// member mirrors with its lag, RPO and stall, the heartbeat, the group offset sync and the latest
// errors.
func (m *Mirror) Status() status.Report {
	cfg := m.live.Load()
	r := status.Report{
		At: time.Now(), Version: version.Version, Source: m.cfg.Source.Alias, Target: m.cfg.Target.Alias,
		Group: m.cfg.Consumer.GroupID, DeliveryMode: m.cfg.Delivery.Mode, Ready: true,
		Include: cfg.Topics.Include, Exclude: cfg.Topics.Exclude,
	}
	if err := m.Ready(); err != nil {
		r.Ready, r.NotReady = false, err.Error()
	}
	if m.cfg.Heartbeats.Enabled {
		r.Heartbeat = &status.Heartbeat{Topic: m.cfg.HeartbeatTopic()}
	}
	if gs := m.groups.Load(); gs != nil && gs.running() {
		r.GroupSync = &status.GroupSync{Include: cfg.Groups.Include}
	}
	name, err := topics.NewNamer(m.cfg.Topics.ReplicationPolicy, m.cfg.Source.Alias)
	if err != nil { // validated at load: cannot happen
		name = func(s string) string { return s }
	}
	m.board.Fill(&r, name)
	return r
}

// notConnected says which cluster is not reached yet (Ready, before the mirror has connected to
// both and set up its consumer group).
func (m *Mirror) notConnected() error {
	var missing []string
	for i, c := range []*cluster.Cluster{m.source, m.target} {
		role := [2]string{"source", "target"}[i]
		if !m.reached[i].Load() {
			missing = append(missing, fmt.Sprintf("%s cluster %s %v not reached yet (retrying; %s)", role, c.Alias(), c.Bootstrap(), c.Hint()))
		}
	}
	if len(missing) == 0 {
		return errors.New("not connected to both clusters yet: both reached, setting up (topics, offset map, consumer group)")
	}
	return fmt.Errorf("not connected to both clusters yet: %s", strings.Join(missing, "; "))
}

// Started returns nil while Run is running: the mirror has started its work, whether or not the
// clusters answer yet.
func (m *Mirror) Started() error {
	if !m.running.Load() {
		return errors.New("the mirror is not running")
	}
	return nil
}

// Ready returns nil when the mirror is connected to both clusters, inside a consumer-group
// session and has not failed; otherwise the reason.
func (m *Mirror) Ready() error {
	if e := m.fatalErr.Load(); e != nil {
		return fmt.Errorf("failed: %w", *e)
	}
	if !m.connected.Load() {
		return m.notConnected()
	}
	if e := m.noTopics.Load(); e != nil {
		return *e
	}
	h := m.handler.Load()
	if h == nil || !h.Joined() {
		return errors.New("not in a source consumer-group session (joining or rebalancing)")
	}
	return h.StalledErr()
}
