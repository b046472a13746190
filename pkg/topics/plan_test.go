package topics

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/kmirror/kmirror/pkg/config"
)

// newLivingSyncer is a syncer with continuous config sync on (the default configuration).
func newLivingSyncer(t *testing.T, src, tgt *fakeAdmin, log *zap.Logger, mutate func(*SyncerConfig)) *Syncer {
	t.Helper()
	f, err := NewFilter([]string{".*"}, []string{"excluded"})
	if err != nil {
		t.Fatal(err)
	}
	n, _ := NewNamer(config.PolicyIdentity, "europe")
	cfg := SyncerConfig{Filter: f, Name: n, Create: true, ReplicationFactor: 1, SyncConfigs: config.Default().Topics.SyncConfigs,
		SyncExistingConfigs: true, DefaultMaxMessageBytes: 1048588, Log: log}
	if mutate != nil {
		mutate(&cfg)
	}
	return NewSyncer(src, tgt, cfg)
}

func refresh(t *testing.T, s *Syncer) {
	t.Helper()
	if _, err := s.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestSourceConfigChangeReachesTheTargetAsADiff: a synced config the source overrides is set on
// the existing target topic and logged as one diff line; target-only settings (a config not in
// sync_configs, an override of a config the source leaves at its default) stay; nothing is set
// again while the two agree; a later change on the source follows.
func TestSourceConfigChangeReachesTheTargetAsADiff(t *testing.T) {
	src, tgt := newFakeAdmin(), newFakeAdmin()
	src.add("orders", 3, map[string]string{"retention.ms": "1000"},
		map[string]string{"compression.type": "producer", "message.timestamp.after.max.ms": longMax, "message.timestamp.before.max.ms": longMax})
	tgt.add("orders", 3, map[string]string{"segment.ms": "5000", "compression.type": "zstd"},
		map[string]string{"retention.ms": "604800000", "message.timestamp.after.max.ms": longMax, "message.timestamp.before.max.ms": longMax})
	core, logs := observer.New(zap.InfoLevel)
	s := newLivingSyncer(t, src, tgt, zap.New(core), nil)
	for range 3 {
		refresh(t, s)
	}
	if len(tgt.alters) != 1 || fmt.Sprint(tgt.alters[0]) != "map[retention.ms:1000]" {
		t.Fatalf("target altered %v, want once with retention.ms=1000 only", tgt.alters)
	}
	eff := tgt.effective["orders"]
	if eff["segment.ms"] != "5000" || eff["compression.type"] != "zstd" {
		t.Fatalf("target-only settings changed: %v", eff)
	}
	diff := logs.FilterMessage("synced target topic configs from the source").All()
	if len(diff) != 1 || diff[0].ContextMap()["topic"] != "orders" || fmt.Sprint(diff[0].ContextMap()["changes"]) != "[retention.ms: 604800000 → 1000]" {
		t.Fatalf("diff lines %+v, want one for orders: retention.ms: 604800000 → 1000", diff)
	}

	src.add("orders", 3, map[string]string{"retention.ms": "2000"}, nil)
	refresh(t, s)
	diff = logs.FilterMessage("synced target topic configs from the source").All()
	if len(tgt.alters) != 2 || len(diff) != 2 || fmt.Sprint(diff[1].ContextMap()["changes"]) != "[retention.ms: 1000 → 2000]" {
		t.Fatalf("after a source change: alters %v, diff lines %+v", tgt.alters, diff)
	}
}

// TestExcludedConfigsAreNeverSynced: the configs that would harm fidelity or the target's
// safety are not set on the target even when sync_configs lists them, and min.insync.replicas
// is capped at the target topic's replication factor.
func TestExcludedConfigsAreNeverSynced(t *testing.T) {
	src, tgt := newFakeAdmin(), newFakeAdmin()
	over := map[string]string{"message.timestamp.type": "LogAppendTime", "unclean.leader.election.enable": "true",
		"leader.replication.throttled.replicas": "0:1", "follower.replication.throttled.replicas": "0:2",
		"message.timestamp.difference.max.ms": "1000", "min.insync.replicas": "3"}
	src.add("orders", 1, over, nil)
	defaults := map[string]string{"message.timestamp.type": "CreateTime", "unclean.leader.election.enable": "false",
		"leader.replication.throttled.replicas": "", "follower.replication.throttled.replicas": "",
		"message.timestamp.difference.max.ms": longMax, "min.insync.replicas": "1"}
	tgt.add("orders", 1, nil, defaults)
	tgt.rf = 2
	s := newLivingSyncer(t, src, tgt, zap.NewNop(), func(c *SyncerConfig) {
		c.SyncConfigs = []string{"message.timestamp.type", "unclean.leader.election.enable", "leader.replication.throttled.replicas",
			"follower.replication.throttled.replicas", "message.timestamp.difference.max.ms", "min.insync.replicas"}
	})
	refresh(t, s)
	if len(tgt.alters) != 1 || fmt.Sprint(tgt.alters[0]) != "map[min.insync.replicas:2]" {
		t.Fatalf("target altered %v, want only min.insync.replicas=2 (capped at replication factor 2)", tgt.alters)
	}
}

// TestSyncedConfigsKeepTheStricterWarningCoherent: a target bound stricter than the source is
// loosened by the sync and not warned about; a compacted target of a source left at the default
// cleanup.policy is not changed (defaults are never copied) and is warned about once, saying so.
// With sync_existing_configs off, nothing is altered and the warning says that instead.
func TestSyncedConfigsKeepTheStricterWarningCoherent(t *testing.T) {
	for _, syncExisting := range []bool{true, false} {
		t.Run(fmt.Sprint("sync_existing_configs=", syncExisting), func(t *testing.T) {
			src, tgt := newFakeAdmin(), newFakeAdmin()
			src.add("users", 1, map[string]string{"message.timestamp.after.max.ms": "86400000"},
				map[string]string{"cleanup.policy": "delete", "message.timestamp.before.max.ms": longMax})
			tgt.add("users", 1, map[string]string{"cleanup.policy": "compact", "message.timestamp.after.max.ms": "3600000"},
				map[string]string{"message.timestamp.before.max.ms": longMax})
			core, logs := observer.New(zap.InfoLevel)
			s := newLivingSyncer(t, src, tgt, zap.New(core), func(c *SyncerConfig) { c.SyncExistingConfigs = syncExisting })
			refresh(t, s)
			refresh(t, s)
			w := logs.FilterMessageSnippet("accepts less than its source").All()
			if len(w) != 1 {
				t.Fatalf("stricter warnings %+v, want one", w)
			}
			got := fmt.Sprint(w[0].ContextMap()["because"])
			topic, _ := s.Lookup("users")
			if syncExisting {
				if want := "[cleanup.policy: the source leaves it at its default, which is never copied]"; got != want {
					t.Fatalf("because %s, want %s", got, want)
				}
				if tgt.effective["users"]["message.timestamp.after.max.ms"] != "86400000" || tgt.effective["users"]["cleanup.policy"] != "compact" {
					t.Fatalf("target configs %v, want the source's after.max.ms and its own cleanup.policy", tgt.effective["users"])
				}
				if topic.TimestampAfterMax.Hours() != 24 || !topic.Compacted {
					t.Fatalf("target topic read as %+v, want the synced 24h bound, compacted", topic)
				}
			} else {
				if want := "[message.timestamp.after.max.ms: topics.sync_existing_configs is false cleanup.policy: topics.sync_existing_configs is false]"; got != want {
					t.Fatalf("because %s, want %s", got, want)
				}
				if len(tgt.alters) != 0 {
					t.Fatalf("altered %v with sync_existing_configs off", tgt.alters)
				}
			}
		})
	}
}

// TestPlanChangesNothingAndIsWhatRefreshDoes: the plan names the topic to create (capped
// replication factor and configs), the partitions to add and the config differences, changes
// nothing on the target; after a refresh the same plan is all in sync. The capped replication
// factor is warned about once.
func TestPlanChangesNothingAndIsWhatRefreshDoes(t *testing.T) {
	src, tgt := newFakeAdmin(), newFakeAdmin()
	bounds := map[string]string{"message.timestamp.after.max.ms": longMax, "message.timestamp.before.max.ms": longMax}
	src.add("new", 4, map[string]string{"cleanup.policy": "compact"}, bounds)
	src.add("grown", 6, nil, bounds)
	src.add("drifted", 2, map[string]string{"retention.ms": "3600000"}, bounds)
	src.add("same", 2, nil, bounds)
	src.add("excluded", 2, nil, bounds)
	tgt.add("grown", 3, nil, bounds)
	tgt.add("drifted", 2, nil, map[string]string{"retention.ms": "604800000", "message.timestamp.after.max.ms": longMax, "message.timestamp.before.max.ms": longMax})
	tgt.add("same", 2, nil, bounds)
	tgt.brokers = 2
	core, logs := observer.New(zap.InfoLevel)
	s := newLivingSyncer(t, src, tgt, zap.New(core), func(c *SyncerConfig) { c.ReplicationFactor = 3 })
	plan, err := s.Plan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]TopicPlan{}
	var names []string
	for _, p := range plan.Topics {
		byName[p.Source] = p
		names = append(names, p.Source)
	}
	if !slices.Equal(names, []string{"drifted", "grown", "new", "same"}) {
		t.Fatalf("planned %v", names)
	}
	if c := byName["new"].Create; c == nil || c.Partitions != 4 || c.ReplicationFactor != 2 || c.Requested != 3 ||
		c.Configs["cleanup.policy"] != "compact" || c.Configs["message.timestamp.after.max.ms"] != longMax {
		t.Fatalf("plan for new: %+v", byName["new"].Create)
	}
	if g := byName["grown"].Grow; g == nil || g.From != 3 || g.To != 6 || len(byName["grown"].Configs) != 0 {
		t.Fatalf("plan for grown: %+v", byName["grown"])
	}
	if c := byName["drifted"].Configs; len(c) != 1 || c[0].String() != "retention.ms: 604800000 → 3600000" {
		t.Fatalf("plan for drifted: %v", c)
	}
	if !byName["same"].InSync() {
		t.Fatalf("plan for same: %+v", byName["same"])
	}
	if len(tgt.created) != 0 || len(tgt.alters) != 0 {
		t.Fatalf("planning changed the target: created %v, altered %v", tgt.created, tgt.alters)
	}

	refresh(t, s)
	refresh(t, s)
	if plan, err = s.Plan(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, p := range plan.Topics {
		if p.Source != "grown" && !p.InSync() { // the fake's CreatePartitions does not grow
			t.Fatalf("after refresh %s is not in sync: %+v", p.Source, p)
		}
	}
	if d := tgt.created["new"]; d == nil || d.ReplicationFactor != 2 {
		t.Fatalf("created %+v", d)
	}
	w := logs.FilterMessageSnippet("replication factor below topics.replication_factor").All()
	if len(w) != 1 || w[0].ContextMap()["topic"] != "new" || w[0].ContextMap()["requested"] != int64(3) {
		t.Fatalf("capped replication factor warnings: %+v", w)
	}
}
