package preflight

import (
	"bytes"
	"context"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kmirror/kmirror/pkg/config"
)

// TestExactlyOnceRefusesAPositionsGroupAnotherMirrorWrote: the positions group this
// configuration names on the target holds a position of orders written from another source (its
// topic ID is not this source's orders'): two mirrors would share the group and the transactional
// ids. validate --connect fails "positions group not shared" and says how to fix it; with the
// positions written from this source's orders it passes.
func TestExactlyOnceRefusesAPositionsGroupAnotherMirrorWrote(t *testing.T) {
	eu, us := startCluster(t, "europe", kfake.SeedTopics(2, "orders")), startCluster(t, "us", kfake.SeedTopics(2, "orders"))
	cfg := config.Default()
	cfg.Source.Bootstrap, cfg.Target.Bootstrap = eu.Addrs(), us.Addrs()
	cfg.Delivery.Mode = config.ExactlyOnce
	group := cfg.Delivery.Positions(cfg.Consumer.GroupID, cfg.Source.Alias)

	store := func(topicID string) {
		t.Helper()
		cl, err := kgo.NewClient(kgo.SeedBrokers(us.Addrs()...))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		offs := kadm.Offsets{}
		offs.Add(kadm.Offset{Topic: "orders", Partition: 0, At: 42, LeaderEpoch: -1, Metadata: "kmirror topic_id=" + topicID})
		resp, err := kadm.NewClient(cl).CommitOffsets(context.Background(), group, offs)
		if err == nil {
			err = resp.Error()
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	run := func() (bool, string) {
		var out bytes.Buffer
		ok := Print(&out, Run(context.Background(), &cfg))
		return ok, out.String()
	}

	store("AAAAAAAAAAAAAAAAAAAAAA") // another source's orders
	ok, out := run()
	if ok || !strings.Contains(out, "positions group not shared   FAILED") || !strings.Contains(out, "source.alias") {
		t.Fatalf("a positions group written from another source's orders passed, or failed without the fix:\n%s", out)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(eu.Addrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	td, err := kadm.NewClient(cl).ListTopics(context.Background(), "orders")
	if err != nil {
		t.Fatal(err)
	}
	id := td["orders"].ID
	store(base64.RawURLEncoding.EncodeToString(id[:])) // as Kafka prints it, and kmirror stores it
	if ok, out := run(); !ok || !strings.Contains(out, "positions group not shared   ok") {
		t.Fatalf("a positions group written from this source failed:\n%s", out)
	}
}
