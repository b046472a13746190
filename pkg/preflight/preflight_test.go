package preflight

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/embedded"
)

// startCluster starts an in-process cluster for the test's duration.
func startCluster(t *testing.T, name string, opts ...kfake.Opt) *embedded.Cluster {
	t.Helper()
	c, err := embedded.Start(name, 1, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestAllChecksPassOnOpenClusters(t *testing.T) {
	eu, us := startCluster(t, "europe", kfake.SeedTopics(2, "orders")), startCluster(t, "us")
	cfg := config.Default()
	cfg.Source.Bootstrap, cfg.Target.Bootstrap = eu.Addrs(), us.Addrs()
	cfg.Groups.Include = []string{"app.*"}
	var out bytes.Buffer
	checks := Run(context.Background(), &cfg)
	if !Print(&out, checks) {
		t.Fatalf("checks failed on open clusters:\n%s", out.String())
	}
	for _, want := range []string{"describe topics", "1 match topics.include", "read (list offsets)", "consumer group", "create topics", "idempotent write",
		"list consumer groups (group offset sync)", "offset-map topic", "__kmirror.offset-map.europe: kmirror creates it",
		"heartbeat topic", "kmirror.heartbeats.europe: kmirror creates it (validate only: nothing created); kmirror writes a heartbeat to it every 1s"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestHeartbeatTopicIsCheckedOnTheSourceAndNeverCreated(t *testing.T) {
	for _, seeded := range []bool{false, true} {
		topics := []string{"orders"}
		if seeded {
			topics = append(topics, "kmirror.heartbeats.europe")
		}
		eu, us := startCluster(t, "europe", kfake.SeedTopics(1, topics...)), startCluster(t, "us")
		cfg := config.Default()
		cfg.Source.Bootstrap, cfg.Target.Bootstrap = eu.Addrs(), us.Addrs()
		var out bytes.Buffer
		if !Print(&out, Run(context.Background(), &cfg)) {
			t.Fatalf("checks failed on open clusters:\n%s", out.String())
		}
		want := "kmirror.heartbeats.europe: kmirror creates it"
		if seeded {
			want = "kmirror.heartbeats.europe: exists"
		}
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
		cl, err := kgo.NewClient(kgo.SeedBrokers(eu.Addrs()...))
		if err != nil {
			t.Fatal(err)
		}
		names, err := kadm.NewClient(cl).ListTopics(context.Background())
		cl.Close()
		if err != nil || len(names.Names()) != len(topics) {
			t.Errorf("the source holds topics %v (%v) after the checks, want %v: a check creates nothing", names.Names(), err, topics)
		}
		cfg.Heartbeats.Enabled = false
		out.Reset()
		Print(&out, Run(context.Background(), &cfg))
		if strings.Contains(out.String(), "heartbeat topic") {
			t.Errorf("heartbeats.enabled false, yet the topic is checked:\n%s", out.String())
		}
	}
}

func TestExactlyOnceChecksTransactionalIDsAndThePositionsGroup(t *testing.T) {
	eu, us := startCluster(t, "europe", kfake.SeedTopics(2, "orders")), startCluster(t, "us")
	cfg := config.Default()
	cfg.Source.Bootstrap, cfg.Target.Bootstrap = eu.Addrs(), us.Addrs()
	cfg.Delivery.Mode = config.ExactlyOnce
	var out bytes.Buffer
	if !Print(&out, Run(context.Background(), &cfg)) {
		t.Fatalf("checks failed on open clusters:\n%s", out.String())
	}
	for _, want := range []string{"transactional write", `transactional id "kmirror-europe-validate" initialised`, "positions group", "kmirror-europe-positions", "positions group not shared", "read target topics (positions)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestUnreachableAndUnauthenticatedClustersFailWithAFix(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().String()
	ln.Close()
	us, err := embedded.Start("us", 1, kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "admin", "right"))
	if err != nil {
		t.Fatal(err)
	}
	defer us.Close()
	cfg := config.Default()
	cfg.Source.Bootstrap = []string{closed}
	cfg.Source.DialTimeout = 1e9
	cfg.Target.Bootstrap = us.Addrs()
	cfg.Target.SASL = config.SASL{Mechanism: "SCRAM-SHA-256", Username: "admin", Password: "wrong-secret-value"}
	var out bytes.Buffer
	if Print(&out, Run(context.Background(), &cfg)) {
		t.Fatalf("checks passed against an unreachable source and a wrong password:\n%s", out.String())
	}
	s := out.String()
	for _, want := range []string{"source  reach, TLS, authenticate", "target  reach, TLS, authenticate", "FAILED", "fix: check target.bootstrap, target.sasl SASL credentials", "verdict: FAILED"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "wrong-secret-value") {
		t.Fatal("the output prints the password")
	}
}

// TestTimeoutIsHonouredAgainstASilentBroker points the source at a socket that accepts
// connections and never answers: the checks must end at the deadline (not after sarama's 30 s
// read timeouts, retried), reporting the source as unanswered.
func TestTimeoutIsHonouredAgainstASilentBroker(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c) // held open, never answered
		}
	}()
	us, err := embedded.Start("us", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer us.Close()
	cfg := config.Default()
	cfg.Source.Bootstrap = []string{ln.Addr().String()}
	cfg.Target.Bootstrap = us.Addrs()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	began := time.Now()
	var out bytes.Buffer
	ok := Print(&out, Run(ctx, &cfg))
	if took := time.Since(began); took > 5*time.Second {
		t.Fatalf("checks took %s with a 3 s deadline", took)
	}
	if ok || !strings.Contains(out.String(), "no answer within") || !strings.Contains(out.String(), "target  idempotent write") {
		t.Fatalf("want the silent source reported unanswered and the target checked:\n%s", out.String())
	}
}

// TestCoordinatorLoadingIsARetryNotAMissingACL makes the source's group coordinator answer
// COORDINATOR_LOAD_IN_PROGRESS: the verdict must say to retry, not to grant an ACL.
func TestCoordinatorLoadingIsARetryNotAMissingACL(t *testing.T) {
	var loadingFor atomic.Int32
	eu, us := startCluster(t, "europe", kfake.SeedTopics(1, "orders")), startCluster(t, "us")
	fake := eu.Fake()
	fake.KeepControl()
	var calls atomic.Int32
	fake.ControlKey(int16(kmsg.DescribeGroups), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		fake.KeepControl()
		if calls.Add(1) > loadingFor.Load() {
			return nil, nil, false
		}
		req := kr.(*kmsg.DescribeGroupsRequest)
		resp := req.ResponseKind().(*kmsg.DescribeGroupsResponse)
		for _, g := range req.Groups {
			rg := kmsg.NewDescribeGroupsResponseGroup()
			rg.Group = g
			rg.ErrorCode = 14 // COORDINATOR_LOAD_IN_PROGRESS
			resp.Groups = append(resp.Groups, rg)
		}
		return resp, nil, true
	})
	cfg := config.Default()
	cfg.Source.Bootstrap, cfg.Target.Bootstrap = eu.Addrs(), us.Addrs()

	// Loading for the first two answers, as right after a broker starts: retried, then ok.
	loadingFor.Store(2)
	var out bytes.Buffer
	if !Print(&out, Run(context.Background(), &cfg)) {
		t.Fatalf("a coordinator that finished loading during the checks must pass:\n%s", out.String())
	}

	// Loading for longer than the time allowed: a retry, not a missing ACL.
	calls.Store(0)
	loadingFor.Store(1 << 30)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	out.Reset()
	Print(&out, Run(ctx, &cfg))
	s := out.String()
	if !strings.Contains(s, "consumer group               RETRY") || strings.Contains(s, "grant Read and Describe on group") {
		t.Fatalf("a loading coordinator must be a retry, not a missing ACL:\n%s", s)
	}
}

// TestReverseMirrorIsSeenByItsOffsetMap: with the identity policy and no provenance header, a
// mirror target→source running (its offset map on the source written lately) fails the check,
// naming the fix; one that ran long ago (a failback) passes with a note; with the header, or the
// prefix policy, the check is not made. The cluster IDs are compared and shown.
func TestReverseMirrorIsSeenByItsOffsetMap(t *testing.T) {
	eu, us := startCluster(t, "europe", kfake.SeedTopics(1, "orders", "__kmirror.offset-map.us")), startCluster(t, "us")
	cfg := config.Default()
	cfg.Source.Bootstrap, cfg.Target.Bootstrap = eu.Addrs(), us.Addrs()
	write := func(at time.Time) {
		cl, err := kgo.NewClient(kgo.SeedBrokers(eu.Addrs()...))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		r := &kgo.Record{Topic: "__kmirror.offset-map.us", Key: []byte("k"), Value: []byte("v"), Timestamp: at}
		if err := cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	run := func() (bool, string) {
		var out bytes.Buffer
		ok := Print(&out, Run(context.Background(), &cfg))
		return ok, out.String()
	}

	write(time.Now().Add(-time.Hour))
	ok, out := run()
	if !ok || !strings.Contains(out, "no mirror back (identity)") || !strings.Contains(out, "not written in the last 10 minutes") {
		t.Fatalf("a reverse mirror that stopped an hour ago:\n%s", out)
	}
	if !strings.Contains(out, "distinct clusters") || !strings.Contains(out, "source cluster ID kmirror-europe, target kmirror-us") {
		t.Errorf("the cluster IDs are not compared:\n%s", out)
	}

	write(time.Now())
	ok, out = run()
	for _, want := range []string{"no mirror back (identity)", "FAILED", "a kmirror copies us→europe right now", "fix: set topics.provenance_header: true on both flows"} {
		if ok || !strings.Contains(out, want) {
			t.Fatalf("a reverse mirror running: output lacks %q:\n%s", want, out)
		}
	}

	for _, change := range []func(){
		func() { cfg.Topics.ProvenanceHeader = true },
		func() { cfg.Topics.ProvenanceHeader, cfg.Topics.ReplicationPolicy = false, config.PolicyPrefix },
	} {
		change()
		if ok, out = run(); !ok || strings.Contains(out, "no mirror back") {
			t.Fatalf("with provenance %v and policy %s:\n%s", cfg.Topics.ProvenanceHeader, cfg.Topics.ReplicationPolicy, out)
		}
	}
}
