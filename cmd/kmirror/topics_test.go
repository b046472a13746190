package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kmirror/kmirror/pkg/embedded"
	"github.com/kmirror/kmirror/pkg/topics"
)

// TestTopicsPlanPrintsWhatWouldChangeAndChangesNothing: against two in-process clusters,
// `kmirror topics plan` names the topic to create (partitions, capped replication factor,
// configs), the partitions to add, the config difference as "key: target → source" and the
// topic in sync, the same in --json, exits 0, and the target is left exactly as it was.
func TestTopicsPlanPrintsWhatWouldChangeAndChangesNothing(t *testing.T) {
	bin := buildBinary(t)
	europe, us := startPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin := map[*embedded.Cluster]*kadm.Client{}
	for _, c := range []*embedded.Cluster{europe, us} {
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.Addrs()...))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		admin[c] = kadm.NewClient(cl)
	}
	create := func(c *embedded.Cluster, name string, partitions int32, configs map[string]*string) {
		t.Helper()
		if _, err := admin[c].CreateTopic(ctx, partitions, 1, configs, name); err != nil {
			t.Fatal(err)
		}
	}
	hour, week := "3600000", "604800000"
	create(europe, "orders", 3, map[string]*string{"retention.ms": &hour})
	create(us, "orders", 3, map[string]*string{"retention.ms": &week})
	create(europe, "grown", 4, nil)
	create(us, "grown", 2, nil)
	create(europe, "same", 1, nil)
	create(us, "same", 1, nil)
	compact := "compact"
	create(europe, "fresh", 2, map[string]*string{"cleanup.policy": &compact})
	cfgPath := filepath.Join(t.TempDir(), "kmirror.yaml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
source: {bootstrap: [%q]}
target: {bootstrap: [%q]}
topics: {include: [orders, grown, same, fresh]}
`, europe.Addrs()[0], us.Addrs()[0])), 0o600); err != nil {
		t.Fatal(err)
	}

	out, err := exec.Command(bin, "topics", "plan", "--config", cfgPath).CombinedOutput()
	if err != nil {
		t.Fatalf("topics plan: %v\n%s", err, out)
	}
	text := string(out)
	t.Logf("topics plan:\n%s", text)
	for _, want := range []string{
		"fresh:\n  create: 2 partitions, replication factor 1 (topics.replication_factor 3, capped at the target's broker count)\n",
		"    cleanup.policy = compact\n",
		"grown:\n  add partitions: 2 → 4\n",
		"orders:\n  configs (target → source):\n    retention.ms: 604800000 → 3600000\n",
		"same: in sync\n",
		"4 topics, 1 to create, 1 to grow, 1 with config differences, 1 in sync\n",
	} {
		if !strings.Contains(text, want) {
			t.Fatalf("plan lacks %q", want)
		}
	}

	out, err = exec.Command(bin, "topics", "plan", "--json", "--config", cfgPath).Output()
	if err != nil {
		t.Fatalf("topics plan --json: %v", err)
	}
	var plan topics.Plan
	if err := json.Unmarshal(out, &plan); err != nil {
		t.Fatalf("topics plan --json: %v\n%s", err, out)
	}
	if len(plan.Topics) != 4 || plan.Topics[0].Source != "fresh" || plan.Topics[0].Create == nil ||
		plan.Topics[2].Configs[0] != (topics.ConfigChange{Key: "retention.ms", Target: week, Source: hour}) || !plan.Topics[3].InSync() {
		t.Fatalf("plan --json: %s", out)
	}

	td, err := admin[us].ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if td.Has("fresh") || len(td["grown"].Partitions) != 2 {
		t.Fatalf("the plan changed the target's topics: %v", td.Names())
	}
	rc, err := admin[us].DescribeTopicConfigs(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range rc[0].Configs {
		if c.Key == "retention.ms" && c.MaybeValue() != week {
			t.Fatalf("the plan changed the target's retention.ms to %s", c.MaybeValue())
		}
	}
}
