package topics

import (
	"context"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/kmirror/kmirror/pkg/config"
)

// TestCycleRule: which source topics a flow leaves out under the prefix policy. The flows are
// named source→target; the chains are what the prefix policy makes of a topic that travelled
// (us→europe makes "us.orders" on europe; us→asia→europe makes "asia.us.orders").
func TestCycleRule(t *testing.T) {
	cases := []struct {
		flow  string // "source→target"
		topic string
		cycle bool
		why   string // a part of the reason, when a cycle
	}{
		// Local topics: nothing to say.
		{"europe→us", "orders", false, ""},
		{"europe→us", "payments-v2", false, ""},
		// Two-way pair: what came from the other side is never sent back.
		{"europe→us", "us.orders", true, `target's alias "us"`},
		{"us→europe", "europe.orders", true, `target's alias "europe"`},
		// The copy made by the reverse flow, copied once more, would be us.europe.orders on us.
		{"us→europe", "us.europe.orders", true, "source's own alias"},
		// The whole chain counts, as in MirrorMaker 2: europe→us→asia made us.europe.orders on
		// asia; asia→europe must not bring it home.
		{"asia→europe", "us.europe.orders", true, `target's alias "europe"`},
		// us→asia→europe made asia.us.orders on europe; europe→us must not send it back to us.
		{"europe→us", "asia.us.orders", true, `"us.orders"`},
		// ...but a topic from a third cluster that never saw the target goes on.
		{"europe→us", "asia.orders", false, ""},
		{"europe→us", "asia.africa.orders", false, ""},
		// A cluster mirrored into itself under another alias (validation cannot tell when the
		// bootstrap lists differ): the first copy europe.orders is not copied again, so nothing
		// nests past one level.
		{"europe→eu", "europe.orders", true, "source's own alias"},
		{"europe→eu", "europe.europe.orders", true, "source's own alias"},
		// Topics that merely contain dots.
		{"europe→us", "orders.v2", false, ""},
		{"europe→us", "com.example.orders", false, ""},
		{"europe→us", "orders.us", false, ""},                             // the last part is the topic, never a prefix
		{"europe→us", "us", false, ""},                                    // no separator: local
		{"europe→us", "us.", false, ""},                                   // nothing after it: local, as Java's split reads it
		{"europe→us", "us..", false, ""},                                  // likewise
		{"europe→us", "usa.orders", false, ""},                            // a prefix is a whole part, not a string prefix
		{"europe→us", "US.orders", false, ""},                             // aliases are compared as Kafka compares names: with case
		{"europe→us", "orders.us.eu", true, `target's alias "us"`},        // MirrorMaker 2 reads every part before the last as a hop
		{"europe→us", "us..orders", true, `target's alias "us"`},          // an empty part after it is still a remote prefix
		{"europe→us", ".us.orders", true, `target's alias "us"`},          // an empty first part is a hop from nowhere
		{"europe→us", "..orders", false, ""},                              // empty parts only
		{"europe-west→us-east", "us-east.orders", true, `"us-east"`},      // aliases with dashes
		{"europe-west→us-east", "us.orders", false, ""},                   // a different alias
		{"europe-west→us-east", "europe.west.orders", false, ""},          // not the alias europe-west
		{"europe→us", "__kmirror.offset-map.us", false, ""},               // internal topics are the filter's business
		{"europe→us", "asia.africa.oceania.us.europe.orders", true, "us"}, // long chains
	}
	for _, tc := range cases {
		src, tgt, _ := strings.Cut(tc.flow, "→")
		why := Cycles{Source: src, Target: tgt}.Check(tc.topic)
		if got := why != ""; got != tc.cycle {
			t.Errorf("%s, topic %q: cycle = %v (%q), want %v", tc.flow, tc.topic, got, why, tc.cycle)
			continue
		}
		if tc.cycle && !strings.Contains(why, tc.why) {
			t.Errorf("%s, topic %q: reason %q does not mention %q", tc.flow, tc.topic, why, tc.why)
		}
	}
}

// TestCycleRuleStopsAnyTwoWayLoop: for topics of two sites written under the prefix policy by
// two flows europe→us and us→europe, follow every copy the flows would make: each topic is
// copied exactly once and nothing nests.
func TestCycleRuleStopsAnyTwoWayLoop(t *testing.T) {
	clusters := map[string]map[string]bool{
		"europe": {"orders": true, "eu-only": true, "orders.v2": true},
		"us":     {"orders": true, "us-only": true},
	}
	flows := [][2]string{{"europe", "us"}, {"us", "europe"}}
	for round := 0; round < 10; round++ {
		for _, f := range flows {
			rule := Cycles{Source: f[0], Target: f[1]}
			for topic := range clusters[f[0]] {
				if rule.Check(topic) == "" {
					clusters[f[1]][f[0]+Separator+topic] = true
				}
			}
		}
	}
	for name, want := range map[string][]string{
		"europe": {"eu-only", "orders", "orders.v2", "us.orders", "us.us-only"},
		"us":     {"europe.eu-only", "europe.orders", "europe.orders.v2", "orders", "us-only"},
	} {
		var got []string
		for topic := range clusters[name] {
			got = append(got, topic)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s ends with %v, want %v", name, got, want)
		}
	}
}

// TestSyncerLeavesCyclesOutAndSaysSoOnce: a topic left out as a cycle is never prepared on the
// target, is logged once and counted once, however many refreshes see it.
func TestSyncerLeavesCyclesOutAndSaysSoOnce(t *testing.T) {
	src, tgt := newFakeAdmin(), newFakeAdmin()
	src.add("orders", 2, nil, nil)
	src.add("us.orders", 2, nil, nil)
	src.add("asia.us.orders", 1, nil, nil)
	src.add("orders.v2", 1, nil, nil)
	core, logs := observer.New(zap.InfoLevel)
	f, _ := NewFilter([]string{".*"}, nil)
	n, _ := NewNamer(config.PolicyPrefix, "europe")
	counted := 0
	s := NewSyncer(src, tgt, SyncerConfig{Filter: f, Name: n, Cycles: &Cycles{Source: "europe", Target: "us"}, Create: true,
		ReplicationFactor: 1, DefaultMaxMessageBytes: 1048588, Log: zap.New(core),
		Events: Events{CycleSkipped: func() { counted++ }}})
	for range 3 {
		names, err := s.Refresh(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"orders", "orders.v2"}; !slices.Equal(names, want) {
			t.Fatalf("mirrored %v, want %v", names, want)
		}
	}
	if counted != 2 {
		t.Errorf("counted %d cycle topics, want 2 (each once)", counted)
	}
	lines := logs.FilterMessageSnippet("would go round in a cycle")
	if lines.Len() != 2 {
		t.Errorf("%d log lines about cycles, want 2 (one per topic)", lines.Len())
	}
	for _, e := range lines.All() {
		if topic := e.ContextMap()["topic"]; topic != "us.orders" && topic != "asia.us.orders" {
			t.Errorf("a cycle line names %v", topic)
		}
	}
	var created []string
	for topic := range tgt.created {
		created = append(created, topic)
	}
	slices.Sort(created)
	if want := []string{"europe.orders", "europe.orders.v2"}; !slices.Equal(created, want) {
		t.Errorf("created %v on the target, want %v (a cycle must not be prepared)", created, want)
	}
	if _, err := s.EnsurePartitions(context.Background(), "us.orders", 2); err == nil {
		t.Error("EnsurePartitions prepared a cycle topic")
	}
}

// TestCycleRuleStopsNestingOfAClusterMirroredIntoItself: one cluster reached under two
// bootstrap lists and two aliases (which validation cannot see) is mirrored into itself with
// the prefix policy. Without the rule every refresh nested one level more (15 levels in 40 s
// were seen); with it, the first copy is the last.
func TestCycleRuleStopsNestingOfAClusterMirroredIntoItself(t *testing.T) {
	one := map[string]bool{"orders": true}
	rule := Cycles{Source: "europe", Target: "eu"}
	for range 15 { // refreshes
		for topic := range one {
			if rule.Check(topic) == "" {
				one["europe"+Separator+topic] = true
			}
		}
	}
	if len(one) != 2 || !one["europe.orders"] {
		t.Fatalf("the cluster ends with %v, want orders and one copy, europe.orders", one)
	}
}

// TestMirroredIsPlansDecision: Mirrored says of every source topic what Plan does (the group
// offset sync and the failover command ask it), names the target topic as Plan does, and,
// unlike Plan, neither logs nor counts the cycles it is asked about.
func TestMirroredIsPlansDecision(t *testing.T) {
	src, tgt := newFakeAdmin(), newFakeAdmin()
	all := []string{"orders", "us.orders", "asia.us.orders", "europe.orders", "orders.v2", "audit", "__consumer_offsets",
		"kmirror.heartbeats.europe", "kmirror.heartbeats.us"}
	for _, topic := range all {
		src.add(topic, 1, nil, nil)
	}
	f, _ := NewFilter([]string{"orders.*", ".*\\.orders", "kmirror\\..*"}, []string{"audit"})
	f.Decide(func(topic string) (bool, bool) { // the heartbeat rule's shape: the target's own never
		return false, topic == "kmirror.heartbeats.us"
	})
	n, _ := NewNamer(config.PolicyPrefix, "europe")
	counted := 0
	cfg := SyncerConfig{Filter: f, Name: n, Cycles: &Cycles{Source: "europe", Target: "us"}, Create: true,
		ReplicationFactor: 1, DefaultMaxMessageBytes: 1048588, Events: Events{CycleSkipped: func() { counted++ }}}
	for _, topic := range all {
		_, _ = cfg.Mirrored(topic)
	}
	if counted != 0 {
		t.Errorf("Mirrored counted %d cycles, want 0 (Plan counts them)", counted)
	}
	plan, err := NewSyncer(src, tgt, cfg).Plan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	planned := map[string]string{}
	for _, p := range plan.Topics {
		planned[p.Source] = p.Target
	}
	for _, topic := range all {
		target, mirrored := cfg.Mirrored(topic)
		if want, inPlan := planned[topic]; mirrored != inPlan || target != want {
			t.Errorf("Mirrored(%q) = %q, %v; Plan: %q, %v", topic, target, mirrored, want, inPlan)
		}
	}
	if want := []string{"kmirror.heartbeats.europe", "orders", "orders.v2"}; len(planned) != len(want) {
		t.Errorf("planned %v, want %v", planned, want)
	}
}
