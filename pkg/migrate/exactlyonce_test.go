package migrate

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/embedded"
)

// TestSeedIsWhatExactlyOnceReads: with delivery.mode exactly_once kmirror resumes a partition
// from its positions group on the target, and only when that (and its former name) holds
// nothing, from the source group that migrate seeds. So migrate seeds an exactly-once
// configuration as it does an at-least-once one, and refuses in both modes (at_least_once may be
// switched later) — naming the group, the position and the fix — when a positions group on the
// target already holds a position of a seeded partition, which would win over the seed; --force
// deletes those positions, so that the seed is what is read.
func TestSeedIsWhatExactlyOnceReads(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	src, tgt := startFake(t, "europe"), startFake(t, "us")
	produce(t, src, "orders", 2, map[int32][]string{0: repeat("a", 10), 1: repeat("b", 10)})
	produce(t, tgt, "europe.orders", 2, nil)
	positions := []Position{{Topic: "orders", Partition: 0, Copied: 5, Next: 6}, {Topic: "orders", Partition: 1, Copied: 3, Next: 4}}

	for _, mode := range []string{config.AtLeastOnce, config.ExactlyOnce} {
		t.Run(mode, func(t *testing.T) {
			cfg := config.Default()
			cfg.Source.Bootstrap, cfg.Target.Bootstrap = src.Addrs(), tgt.Addrs()
			cfg.Topics.Include, cfg.Topics.ReplicationPolicy = []string{"orders"}, config.PolicyPrefix
			cfg.Consumer.GroupID, cfg.Delivery.Mode = "kmirror-"+mode, mode
			sc, tc := client(t, "source", cfg.Source), client(t, "target", cfg.Target)
			group := cfg.Delivery.Positions(cfg.Consumer.GroupID, cfg.Source.Alias)

			// A clean target: the seed is planned and committed in either mode.
			plan, err := PlanSeed(ctx, sc, tc, &cfg, positions)
			if err != nil {
				t.Fatalf("plan: %v", err)
			}
			if err := Seed(ctx, sc, tc, plan, false); err != nil {
				t.Fatalf("seed: %v", err)
			}
			if c := committed(t, src, cfg.Consumer.GroupID); fmt.Sprint(c) != "map[0:6 1:4]" {
				t.Fatalf("source group holds %v, want map[0:6 1:4]", c)
			}

			// A position of an earlier exactly-once run on the target (here of orders/1, under its
			// target name) would be read before the seed: refused, nothing seeded, the fix named
			// (the refusal comes before the one of a group with committed offsets).
			// Its former name (before the source alias was part of it) is read next: checked too.
			legacy := cfg.Delivery.LegacyPositions(cfg.Consumer.GroupID)
			commitOn(t, tgt, group, "europe.orders", 1, 9)
			commitOn(t, tgt, legacy, "europe.orders", 0, 2)
			plan, err = PlanSeed(ctx, sc, tc, &cfg, positions)
			if err != nil {
				t.Fatalf("plan: %v", err)
			}
			err = Seed(ctx, sc, tc, plan, false)
			if len(plan.Stale) != 2 {
				t.Errorf("plan.Stale %+v, want europe.orders/1 in %s and europe.orders/0 in %s", plan.Stale, group, legacy)
			}
			if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("positions group %q on the target", group)) ||
				!strings.Contains(err.Error(), "europe.orders/1 at 9") || !strings.Contains(err.Error(), "europe.orders/0 at 2") ||
				!strings.Contains(err.Error(), "--delete-offsets") {
				t.Fatalf("seed with a position in %s: error %v, want a refusal naming the group, the position and the fix", group, err)
			}
			if c := committed(t, tgt, group); fmt.Sprint(c) != "map[1:9]" {
				t.Fatalf("a refused seed changed the positions group: %v", c)
			}
			// --force (the source group has offsets now) deletes them: the seed is what is read.
			if err := Seed(ctx, sc, tc, plan, true); err != nil {
				t.Fatalf("seed deleting the positions: %v", err)
			}
			for _, g := range []string{group, legacy} {
				if c := committed(t, tgt, g); len(c) != 0 {
					t.Fatalf("positions group %s still holds %v", g, c)
				}
			}
			if c := committed(t, src, cfg.Consumer.GroupID); fmt.Sprint(c) != "map[0:6 1:4]" {
				t.Fatalf("source group holds %v, want map[0:6 1:4]", c)
			}
		})
	}
}

// commitOn commits offset for topic/partition in group on c, as an admin commit.
func commitOn(t *testing.T, c *embedded.Cluster, group, topic string, partition int32, offset int64) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Addrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var os kadm.Offsets
	os.Add(kadm.Offset{Topic: topic, Partition: partition, At: offset, LeaderEpoch: -1})
	if err := kadm.NewClient(cl).CommitAllOffsets(context.Background(), group, os); err != nil {
		t.Fatal(err)
	}
}

// TestSeedWithoutAccessToThePositionsGroups: an at-least-once deployment's target user need not
// read kmirror's exactly_once positions groups. Not authorised to, migrate seeds and says which
// groups it could not check (Plan.Unread), rather than fail or pass over them in silence.
func TestSeedWithoutAccessToThePositionsGroups(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	src := startFake(t, "europe")
	all := func(r kmsg.ACLResourceType, name string) kfake.ACL {
		return kfake.ACL{Resource: r, Name: name, Pattern: kmsg.ACLResourcePatternTypeLiteral, Operation: kmsg.ACLOperationAll, Allow: true}
	}
	tgt, err := embedded.Start("us", 1, kfake.EnableSASL(), kfake.EnableACLs(), kfake.Superuser("PLAIN", "admin", "admin"),
		kfake.User("PLAIN", "kmirror", "secret", all(kmsg.ACLResourceTypeTopic, "*"), all(kmsg.ACLResourceTypeCluster, "kafka-cluster")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tgt.Close)
	produce(t, src, "orders", 2, map[int32][]string{0: repeat("a", 10), 1: repeat("b", 10)})
	positions := []Position{{Topic: "orders", Partition: 0, Copied: 5, Next: 6}, {Topic: "orders", Partition: 1, Copied: 3, Next: 4}}

	cfg := config.Default()
	cfg.Source.Bootstrap, cfg.Target.Bootstrap = src.Addrs(), tgt.Addrs()
	cfg.Target.SASL.Mechanism, cfg.Target.SASL.Username, cfg.Target.SASL.Password = "PLAIN", "kmirror", "secret"
	cfg.Topics.Include, cfg.Topics.ReplicationPolicy, cfg.Consumer.GroupID = []string{"orders"}, config.PolicyPrefix, "kmirror-europe-us"
	sc, tc := client(t, "source", cfg.Source), client(t, "target", cfg.Target)
	plan, err := PlanSeed(ctx, sc, tc, &cfg, positions)
	if err != nil {
		t.Fatalf("plan without Describe on the positions groups: %v", err)
	}
	want := []string{"kmirror-europe-us-europe-positions", "kmirror-europe-us-positions"}
	if fmt.Sprint(plan.Unread) != fmt.Sprint(want) || len(plan.Stale) != 0 {
		t.Fatalf("plan.Unread %v (Stale %v), want %v", plan.Unread, plan.Stale, want)
	}
	if err := Seed(ctx, sc, tc, plan, false); err != nil {
		t.Fatalf("seed: %v", err)
	}
	if c := committed(t, src, cfg.Consumer.GroupID); fmt.Sprint(c) != "map[0:6 1:4]" {
		t.Fatalf("source group holds %v, want map[0:6 1:4]", c)
	}
}
