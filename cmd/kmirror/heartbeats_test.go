package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kmirror/kmirror/pkg/heartbeat"
)

// TestHeartbeatsPrintsTheLastOfEveryFlow runs `kmirror heartbeats` against a target holding two
// origins' heartbeat topics (one behind a prefix), several heartbeats each and a record that is
// none: it prints the last heartbeat of each flow with its age, and exits 1 on a cluster with
// none.
func TestHeartbeatsPrintsTheLastOfEveryFlow(t *testing.T) {
	bin := buildBinary(t)
	europe, us := startPair(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(us.Addrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopics(context.Background(), 1, 1, nil, "kmirror.heartbeats.europe", "asia.kmirror.heartbeats.asia"); err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Millisecond)
	var records []*kgo.Record
	for i := range 5 {
		for _, f := range []struct{ topic, origin, target string }{
			{"kmirror.heartbeats.europe", "europe", "us"},
			{"kmirror.heartbeats.europe", "europe", "asia"}, // another flow from europe, copied along
			{"asia.kmirror.heartbeats.asia", "asia", "europe"},
		} {
			h := heartbeat.New(f.origin, f.target, now.Add(time.Duration(i-5)*time.Second))
			records = append(records, &kgo.Record{Topic: f.topic, Key: h.Key(), Value: h.Value(), Timestamp: h.Time()})
		}
	}
	records = append(records, &kgo.Record{Topic: "kmirror.heartbeats.europe", Key: []byte("junk"), Value: []byte("not a heartbeat")})
	if err := cl.ProduceSync(context.Background(), records...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "kmirror.yaml")
	os.WriteFile(p, []byte(fmt.Sprintf("source: {bootstrap: [%s]}\ntarget: {bootstrap: [%s]}\n", europe.Addrs()[0], us.Addrs()[0])), 0o600)

	out, err := exec.Command(bin, "heartbeats", "--config", p).CombinedOutput()
	if err != nil {
		t.Fatalf("kmirror heartbeats: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	last := heartbeat.New("", "", now.Add(-time.Second)).Emitted
	want := []string{"asia.kmirror.heartbeats.asia asia->europe " + last, "kmirror.heartbeats.europe europe->asia " + last,
		"kmirror.heartbeats.europe europe->us " + last}
	if len(lines) != 4 {
		t.Fatalf("kmirror heartbeats printed %d lines, want a header and 3:\n%s", len(lines), out)
	}
	for i, w := range want {
		if got := strings.Join(strings.Fields(lines[i+1]), " "); !strings.HasPrefix(got, w+" ") {
			t.Errorf("line %d: %q, want it to start with %q", i+1, got, w)
		}
	}

	out, err = exec.Command(bin, "heartbeats", "--config", p, "--cluster", "source").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "no heartbeat found on source") {
		t.Errorf("kmirror heartbeats on a source without heartbeats: %v\n%s", err, out)
	}
}
