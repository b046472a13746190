package mirror

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	zapobserver "go.uber.org/zap/zaptest/observer"

	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/embedded"
	"github.com/kmirror/kmirror/pkg/testpki"
)

// TestReloadMirrorsANewlyIncludedTopicAndRefusesWhatNeedsARestart: a reload that adds a topic to
// topics.include mirrors it, every record once and in order, while the first topic goes on; a
// reload that changes ring.workers (or bootstrap) is refused naming each key and why, and
// changes nothing: the selection stays.
func TestReloadMirrorsANewlyIncludedTopicAndRefusesWhatNeedsARestart(t *testing.T) {
	p := newPair(t)
	createTopic(t, p.europe, "orders", 2, nil)
	createTopic(t, p.europe, "payments", 2, nil)
	produce(t, p.europe, numbered("orders", 2, 0, 100)...)
	produce(t, p.europe, numbered("payments", 2, 0, 300)...)
	cfg := p.config("orders")
	m := start(t, cfg).m
	waitFor(t, "orders mirrored", 30*time.Second, func() bool { return endOffsets(t, p.us, "orders") == 100 })
	if n := endOffsets(t, p.us, "payments"); n != 0 {
		t.Fatalf("payments mirrored before it was included: %d records", n)
	}

	refused := *cfg
	refused.Topics.Include = []string{"orders", "payments"}
	refused.Ring.Workers++
	refused.Source.Bootstrap = []string{"elsewhere:9092"}
	_, err := m.Reload(&refused)
	var re *config.RefusedError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "ring.workers: ") || !strings.Contains(err.Error(), "source.bootstrap: ") {
		t.Fatalf("reload of ring.workers and source.bootstrap: %v, want a refusal naming both", err)
	}
	time.Sleep(3 * cfg.Topics.RefreshInterval)
	if n := endOffsets(t, p.us, "payments"); n != 0 {
		t.Fatalf("a refused reload applied topics.include: payments has %d records on the target", n)
	}

	next := *cfg
	next.Topics.Include = []string{"orders", "payments"}
	changes, err := m.Reload(&next)
	if err != nil || len(changes) != 1 || changes[0].Key != "topics.include" {
		t.Fatalf("reload of topics.include: %v, %v", changes, err)
	}
	produce(t, p.europe, numbered("orders", 2, 100, 100)...)
	waitFor(t, "payments mirrored after the reload", 60*time.Second, func() bool {
		return endOffsets(t, p.us, "payments") == 300 && endOffsets(t, p.us, "orders") == 200
	})
	rep := compare(t, p, map[string]string{"orders": "orders", "payments": "payments"})
	s := rep.Sum()
	if !rep.Exact() {
		t.Fatalf("after the reload: %s", rep)
	}
	t.Logf("after the reload: source %d target %d lost %d duplicated %d reordered %d", s.Source, s.Target, s.Lost, s.Duplicates, s.Reordered)
	if st := m.Status(); !slices.Equal(st.Include, []string{"orders", "payments"}) || len(st.Topics) != 2 {
		t.Errorf("status after the reload: include %v, topics %d", st.Include, len(st.Topics))
	}
}

// TestReloadedTargetCAReachesTheRunningMirror: the target's certificate is signed by a CA the
// mirror's ca_file does not hold (a CA rotated on the brokers first); the mirror retries and
// says the target is not reached. Once the file holds the new CA and the configuration is
// reloaded, with the very same settings, the mirror connects and mirrors everything.
func TestReloadedTargetCAReachesTheRunningMirror(t *testing.T) {
	dir := t.TempDir()
	var pkis [2]string
	for i, name := range []string{"old", "new"} {
		pkis[i] = filepath.Join(dir, name)
		if err := os.Mkdir(pkis[i], 0o700); err != nil {
			t.Fatal(err)
		}
	}
	oldPKI, newPKI := newPKIIn(t, pkis[0]), newPKIIn(t, pkis[1])
	europe, err := embedded.Start("europe", 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(europe.Close)
	us, err := embedded.Start("us", 1, kfake.TLS(&tls.Config{Certificates: []tls.Certificate{newPKI.Server}, MinVersion: tls.VersionTLS12}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(us.Close)
	p := &pair{t: t, europe: europe, us: us}
	createTopic(t, europe, "orders", 2, nil)
	produce(t, europe, numbered("orders", 2, 0, 200)...)

	caFile := filepath.Join(dir, "ca.crt")
	copyFile(t, oldPKI.CAFile, caFile)
	cfg := p.config("orders")
	cfg.Target.TLS = config.TLS{Enabled: true, CAFile: caFile}
	cfg.Target.DialTimeout = time.Second
	core, logs := zapobserver.New(zapcore.InfoLevel)
	m := startWith(t, cfg, Options{Log: zap.New(core)}).m
	waitFor(t, "the target refused for its CA", 30*time.Second, func() bool {
		err := m.Ready()
		return err != nil && strings.Contains(err.Error(), "target cluster us") && logs.FilterMessageSnippet("cannot reach cluster").Len() > 0
	})

	copyFile(t, newPKI.CAFile, caFile)
	changes, err := m.Reload(cfg)
	if err != nil || len(changes) != 1 || changes[0].Key != "target.tls.ca_file" {
		t.Fatalf("reload after the CA file was rewritten: %v, %v", changes, err)
	}
	waitFor(t, "the mirror ready over TLS with the reloaded CA", 90*time.Second, func() bool { return m.Ready() == nil })

	// An independent client over TLS reads the target: every record once, in source order.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(readFile(t, newPKI.CAFile))
	reader, err := kgo.NewClient(kgo.SeedBrokers(us.Addrs()...),
		kgo.DialTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}),
		kgo.ConsumeTopics("orders"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	last := map[int32]int{0: -1, 1: -1}
	got, outOfOrder := 0, 0
	for got < 200 {
		fs := reader.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of 200 mirrored records over TLS", got)
		}
		fs.EachRecord(func(r *kgo.Record) {
			n, _ := strconv.Atoi(string(r.Headers[0].Value))
			if n <= last[r.Partition] || int32(n)%2 != r.Partition {
				outOfOrder++
			}
			last[r.Partition] = n
			got++
		})
	}
	t.Logf("after the CA reload: 200 produced, %d read from the target over TLS, %d out of order or misplaced", got, outOfOrder)
	if got != 200 || outOfOrder != 0 {
		t.Fatalf("read %d records (want 200), %d out of order", got, outOfOrder)
	}
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newPKIIn(t *testing.T, dir string) *testpki.PKI {
	t.Helper()
	p, err := testpki.New(dir, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestReloadOfGroupsIncludeStartsSyncingTheGroup: with no group selected the sync commits
// nothing on the target; a reload that selects app syncs it (the translated positions, 103 and
// 250: partition 0 of the target had 3 records first) and /status reports the sync.
func TestReloadOfGroupsIncludeStartsSyncingTheGroup(t *testing.T) {
	p := newPair(t)
	createTopic(t, p.europe, "orders", 2, nil)
	createTopic(t, p.us, "orders", 2, nil)
	produce(t, p.us, &kgo.Record{Topic: "orders", Partition: 0, Value: []byte("a")}, &kgo.Record{Topic: "orders", Partition: 0, Value: []byte("b")},
		&kgo.Record{Topic: "orders", Partition: 0, Value: []byte("c")})
	produce(t, p.europe, numbered("orders", 2, 0, 1000)...)
	commitOffsets(t, p.europe, "app", "orders", map[int32]int64{0: 100, 1: 250})
	cfg := p.config("orders")
	cfg.OffsetMap.FlushInterval = 200 * time.Millisecond
	cfg.Groups.SyncInterval = time.Second
	m := start(t, cfg).m
	waitFor(t, "orders mirrored", 30*time.Second, func() bool { return endOffsets(t, p.us, "orders") == 1003 })
	time.Sleep(2 * cfg.Groups.SyncInterval)
	if got := committed(t, p.us, "app", "orders"); len(got) != 0 {
		t.Fatalf("a group not selected was synced: %v", got)
	}
	if st := m.Status(); st.GroupSync != nil {
		t.Fatalf("status reports a group sync with groups.include empty: %+v", st.GroupSync)
	}

	next := *cfg
	next.Groups.Include = []string{"app"}
	if changes, err := m.Reload(&next); err != nil || len(changes) != 1 || changes[0].Key != "groups.include" {
		t.Fatalf("reload of groups.include: %v, %v", changes, err)
	}
	waitFor(t, "group app synced after the reload", 30*time.Second, func() bool {
		got := committed(t, p.us, "app", "orders")
		return got[0] == 103 && got[1] == 250
	})
	waitFor(t, "the sync on /status", 10*time.Second, func() bool {
		st := m.Status()
		return st.GroupSync != nil && !st.GroupSync.LastRound.IsZero() && st.GroupSync.Groups >= 1
	})
}
