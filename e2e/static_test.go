//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestStaticMemberRestartDoesNotRebalance runs two kmirror members under load and restarts the
// second (SIGTERM, then started again at once). With consumer.group_instance_id the restart is
// inside the session timeout and the group does not rebalance: the restarted member comes back
// in the same generation and the first member never starts a new session. Without an instance
// id (the control) the same restart moves the generation on and the first member rejoins, so
// the check would see a rebalance if there were one. Either way nothing is lost and every
// partition stays in order.
func TestStaticMemberRestartDoesNotRebalance(t *testing.T) {
	for _, static := range []bool{true, false} {
		name := "dynamic"
		if static {
			name = "static"
		}
		t.Run(name, func(t *testing.T) {
			europe := startCluster(t, "europe")
			us := startCluster(t, "us")
			topic := "members-" + name
			europe.createTopic(t, topic, 8, 1, nil)
			load := startLoad(t, europe.bootstrap, topic, 40_000, 2_000)

			config := func(member string) string {
				id := ""
				if static {
					id = "kmirror-" + member
				}
				return writeConfig(t, fmt.Sprintf(`
source: {alias: europe, bootstrap: [%s], metadata_refresh: 2s}
target: {alias: us, bootstrap: [%s]}
topics: {include: [%q], refresh_interval: 2s, replication_factor: 1}
consumer: {group_id: members-%s, group_instance_id: %q, session_timeout: 30s, heartbeat_interval: 1s}
commit: {interval: 500ms}
telemetry: {listen: ""}
log: {format: json}
`, strings.Join(europe.bootstrap, ", "), strings.Join(us.bootstrap, ", "), topic, name, id))
			}
			cfgA, cfgB := config("a"), config("b")
			a := startKmirror(t, cfgA)
			waitFor(t, "the first member to join", time.Minute, func() bool { return len(joins(a)) == 1 })
			b := startKmirror(t, cfgB)
			waitFor(t, "both members in one generation", 2*time.Minute, func() bool {
				ja, jb := joins(a), joins(b)
				return len(jb) > 0 && len(ja) > 0 && ja[len(ja)-1].Generation == jb[len(jb)-1].Generation &&
					ja[len(ja)-1].Partitions > 0 && jb[len(jb)-1].Partitions > 0
			})
			time.Sleep(3 * time.Second) // records flow through both
			before := joins(b)
			gen := before[len(before)-1].Generation
			sessionsA := len(joins(a))

			b.stop()
			restarted := time.Now()
			b = startKmirror(t, cfgB)
			waitFor(t, "the restarted member to join", time.Minute, func() bool { return len(joins(b)) > 0 })
			back := joins(b)[0]
			time.Sleep(10 * time.Second) // a rebalance the first member would go through shows by now
			t.Logf("figures: %s: generation %d before the restart, %d after; the first member's sessions %d before, %d after; back %s after the restart",
				name, gen, back.Generation, sessionsA, len(joins(a)), time.Since(restarted).Round(100*time.Millisecond))
			if static {
				if back.Generation != gen {
					t.Errorf("the restarted static member joined generation %d, want %d: the group rebalanced", back.Generation, gen)
				}
				if back.Partitions != before[len(before)-1].Partitions {
					t.Errorf("the restarted static member got %d partitions, want its %d", back.Partitions, before[len(before)-1].Partitions)
				}
				if n := len(joins(a)); n != sessionsA {
					t.Errorf("the first member started %d sessions during the restart, want none", n-sessionsA)
				}
			} else if back.Generation == gen || len(joins(a)) == sessionsA {
				t.Errorf("a dynamic restart kept generation %d (after: %d) and the first member's %d sessions (after: %d): "+
					"the check would not see a rebalance", gen, back.Generation, sessionsA, len(joins(a)))
			}

			produced := load.wait(t)
			waitFor(t, "every record on the target", 3*time.Minute, func() bool { return us.count(t, topic) >= int64(produced) })
			b.stop()
			a.stop()
			rep := compare(t, europe, us, map[string]string{topic: topic})
			s := rep.Sum()
			if s.Source != produced || s.Lost != 0 || s.Reordered != 0 || s.Foreign != 0 {
				t.Fatalf("source %d (produced %d), lost %d, out of order %d, changed %d: want all of them, in order",
					s.Source, produced, s.Lost, s.Reordered, s.Foreign)
			}
		})
	}
}

// join is one "joined the source consumer group" line of a kmirror log.
type join struct {
	Generation int32 `json:"generation"`
	Partitions int   `json:"partitions"`
}

func joins(k *kmirror) []join {
	var out []join
	for _, l := range strings.Split(k.log(), "\n") {
		if !strings.Contains(l, "joined the source consumer group") {
			continue
		}
		var j join
		if json.Unmarshal([]byte(l), &j) == nil {
			out = append(out, j)
		}
	}
	return out
}
