package mirror

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	zapobserver "go.uber.org/zap/zaptest/observer"

	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/embedded"
	"github.com/kmirror/kmirror/pkg/telemetry"
	"github.com/kmirror/kmirror/pkg/verify"
)

// startObserved runs a mirror with metrics on reg and its logs kept in the returned observer.
func startObserved(t *testing.T, cfg *config.Config, reg *prometheus.Registry) (*running, *zapobserver.ObservedLogs) {
	t.Helper()
	metrics, err := telemetry.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := zapobserver.New(zapcore.DebugLevel)
	m, err := New(cfg, Options{Log: zap.New(core), Metrics: metrics})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1), m: m}
	go func() { r.done <- m.Run(ctx) }()
	t.Cleanup(func() {
		r.stop(t)
		if t.Failed() {
			for _, e := range logs.All() {
				t.Logf("%s %s %v", e.Level, e.Message, e.ContextMap())
			}
		}
	})
	return r, logs
}

// counter sums the samples of a metric family gathered from reg (0 when it does not exist).
func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// deleteRecords moves the log start of topic's partitions to the given offsets on c.
func deleteRecords(t *testing.T, c *embedded.Cluster, topic string, to map[int32]int64) {
	t.Helper()
	offs := make(kadm.Offsets)
	for p, o := range to {
		offs.Add(kadm.Offset{Topic: topic, Partition: p, At: o})
	}
	resp, err := admin(t, c).DeleteRecords(context.Background(), offs)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("delete records of %s: %v", topic, err)
	}
}

// waitDone waits for a mirror's Run to return and returns its error.
func waitDone(t *testing.T, r *running, d time.Duration, why string) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done = nil
		return err
	case <-time.After(d):
		t.Fatalf("mirror still running after %s: %s", d, why)
		return nil
	}
}

// TestRetentionOvertakingAStoppedMirrorStopsItByDefault mirrors, stops, lets the source delete
// records the mirror never read (DeleteRecords, as retention does), and expects the restarted
// mirror to stop with an error naming the partition and the lost offsets, to count them, and to
// say so on /readyz, instead of silently resuming at the new log start.
func TestRetentionOvertakingAStoppedMirrorStopsItByDefault(t *testing.T) {
	p := newPair(t)
	createTopic(t, p.europe, "ret", 2, nil)
	produce(t, p.europe, numbered("ret", 2, 0, 1000)...) // 500 per partition
	cfg := p.config("ret")
	first := start(t, cfg)
	waitFor(t, "first batch mirrored", 30*time.Second, func() bool { return endOffsets(t, p.us, "ret") == 1000 })
	if err := first.stop(t); err != nil {
		t.Fatal(err)
	}
	produce(t, p.europe, numbered("ret", 2, 1000, 1000)...) // offsets 500..999 per partition
	deleteRecords(t, p.europe, "ret", map[int32]int64{0: 800})

	reg := prometheus.NewRegistry()
	second, logs := startObserved(t, cfg, reg)
	err := waitDone(t, second, 30*time.Second, "records 500..799 of ret/0 were deleted unread")
	if err == nil {
		t.Fatal("mirror stopped cleanly; want an error naming the lost records")
	}
	for _, want := range []string{"ret partition 0", "offsets 500 to 799", "300 records"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if r := second.m.Ready(); r == nil || !strings.Contains(r.Error(), "ret partition 0") {
		t.Errorf("readiness after the loss: %v", r)
	}
	if got := counter(t, reg, "kmirror_source_records_lost_total"); got != 300 {
		t.Errorf("kmirror_source_records_lost_total = %v, want 300", got)
	}
	if n := logs.FilterMessageSnippet("deleted before they were mirrored").Len(); n != 1 {
		t.Errorf("the loss was logged %d times, want once", n)
	}
	if got := endOffsets(t, p.us, "ret"); got != 1000 {
		t.Errorf("target holds %d records, want the 1000 of the first run (nothing mirrored past the gap)", got)
	}
}

// TestOffsetOutOfRangeWhileRunningIsNotSilent holds the target's produce answers so that the
// mirror falls behind, deletes source records past its fetch position, and expects the mirror to
// notice (the fetch answers OFFSET_OUT_OF_RANGE) and stop under the default policy.
func TestOffsetOutOfRangeWhileRunningIsNotSilent(t *testing.T) {
	p := newPair(t)
	createTopic(t, p.europe, "behind", 1, nil)
	produce(t, p.europe, numbered("behind", 1, 0, 20000)...)

	release := make(chan struct{})
	held := make(chan struct{}, 1)
	p.us.Fake().ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		p.us.Fake().KeepControl()
		select {
		case held <- struct{}{}:
		default:
		}
		p.us.Fake().SleepControl(func() { <-release })
		return nil, nil, false
	})
	cfg := p.config("behind")
	cfg.Ring.PartitionInFlight = 64
	cfg.Ring.InboxRecords = 64
	cfg.Consumer.FetchPartitionBytes = 1024 // a few dozen records per fetch: the fetch position stays close
	cfg.Consumer.FetchMinBytes = 1
	reg := prometheus.NewRegistry()
	m, logs := startObserved(t, cfg, reg)
	select {
	case <-held:
	case <-time.After(30 * time.Second):
		t.Fatal("the mirror never produced")
	}
	time.Sleep(time.Second) // let the claim fill its window and the fetches stop
	deleteRecords(t, p.europe, "behind", map[int32]int64{0: 19000})
	close(release)

	err := waitDone(t, m, 60*time.Second, "records below 19000 were deleted under the running mirror")
	if err == nil || !strings.Contains(err.Error(), "behind partition 0") {
		t.Fatalf("mirror returned %v; want the loss of behind/0 reported", err)
	}
	if got := counter(t, reg, "kmirror_source_records_lost_total"); got <= 0 || got >= 19000 {
		t.Errorf("kmirror_source_records_lost_total = %v, want between 1 and 18999", got)
	}
	if n := logs.FilterMessageSnippet("deleted before they were mirrored").Len(); n != 1 {
		t.Errorf("the loss was logged %d times, want once", n)
	}
}

// TestNewestSkipsNothingAcrossARestart starts a mirror with initial_offset newest on an idle
// topic, stops it, produces, starts it again and expects every record produced in between on
// the target: the first run committed where each partition started.
func TestNewestSkipsNothingAcrossARestart(t *testing.T) {
	p := newPair(t)
	createTopic(t, p.europe, "idle", 3, nil)
	produce(t, p.europe, numbered("idle", 3, 0, 30)...) // before the first start: skipped by design
	cfg := p.config("idle")
	cfg.Consumer.InitialOffset = "newest"

	first := start(t, cfg)
	waitFor(t, "the first mirror to join", 30*time.Second, func() bool { return first.m.Ready() == nil })
	time.Sleep(500 * time.Millisecond)
	if err := first.stop(t); err != nil {
		t.Fatal(err)
	}
	produce(t, p.europe, numbered("idle", 3, 30, 300)...)

	second := start(t, cfg)
	waitFor(t, "the second mirror to join", 30*time.Second, func() bool { return second.m.Ready() == nil })
	time.Sleep(2 * time.Second)
	if err := second.stop(t); err != nil {
		t.Fatal(err)
	}
	if got := endOffsets(t, p.us, "idle"); got != 300 {
		t.Fatalf("target holds %d records, want the 300 produced while the mirror was stopped", got)
	}
	if c := committed(t, p.europe, "kmirror", "idle"); len(c) != 3 || c[0]+c[1]+c[2] != 330 {
		t.Fatalf("committed %v, want every partition at its end (330 in all)", c)
	}
}

// TestRecreatedTopicIsMirroredFromItsStart mirrors a topic, stops, deletes it and creates it
// again with more partitions and new records, with the old incarnation's committed offsets
// still in the group (as a broker that kept them, or a mirror committing through the
// re-creation, leaves them), and expects every record of the new incarnation on the target
// after the old incarnation's records.
func TestRecreatedTopicIsMirroredFromItsStart(t *testing.T) {
	p := newPair(t)
	createTopic(t, p.europe, "re", 2, nil)
	produce(t, p.europe, numbered("re", 2, 0, 3000)...) // 1500 per partition
	cfg := p.config("re")
	first := start(t, cfg)
	waitFor(t, "first incarnation mirrored", 30*time.Second, func() bool { return endOffsets(t, p.us, "re") == 3000 })
	if err := first.stop(t); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	adm := admin(t, p.europe)
	old, err := adm.FetchOffsets(ctx, "kmirror")
	if err != nil {
		t.Fatal(err)
	}
	if c := committed(t, p.europe, "kmirror", "re"); c[0] != 1500 || c[1] != 1500 {
		t.Fatalf("committed %v before the re-creation, want 1500 each", c)
	}
	keep := make(kadm.Offsets)
	old.Each(func(o kadm.OffsetResponse) {
		if o.Topic == "re" && o.Err == nil {
			keep.Add(o.Offset)
		}
	})
	ends, err := admin(t, p.us).ListEndOffsets(ctx, "re")
	if err != nil {
		t.Fatal(err)
	}
	before := map[int32]int64{} // where the target's old-incarnation records end
	ends.Each(func(o kadm.ListedOffset) { before[o.Partition] = o.Offset })
	if _, err := adm.DeleteTopics(ctx, "re"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the topic to be gone", 10*time.Second, func() bool {
		td, err := adm.ListTopics(ctx, "re")
		return err == nil && !td.Has("re")
	})
	createTopic(t, p.europe, "re", 4, nil)
	produce(t, p.europe, numbered("re", 4, 10000, 8000)...) // 2000 per partition
	// The broker dropped the deleted topic's offsets; put the old incarnation's back.
	resp, err := admin(t, p.europe).CommitOffsets(ctx, "kmirror", keep) // a fresh client: the old one knows the old topic ID
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatal(err)
	}

	second := start(t, cfg)
	waitFor(t, "the new incarnation mirrored", 30*time.Second, func() bool { return endOffsets(t, p.us, "re") >= 3000+8000 })
	time.Sleep(500 * time.Millisecond)
	if err := second.stop(t); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	rep, err := verify.CompareSince(cctx, p.europe.Addrs(), p.us.Addrs(), map[string]string{"re": "re"}, map[string]map[int32]int64{"re": before})
	if err != nil {
		t.Fatal(err)
	}
	s, d, lost, dups, _ := rep.Totals()
	t.Logf("new incarnation: source %d, target (after the old records) %d, lost %d, duplicates %d", s, d, lost, dups)
	if !rep.Complete() || s != 8000 {
		t.Fatalf("new incarnation not fully mirrored: %s", rep)
	}
}

// TestFailedCommitsAreCountedAndTheFinalOneLogged makes the source refuse every offset commit and
// expects kmirror_commit_errors_total to count them and the session's final commit to be logged
// as an error naming the partitions.
func TestFailedCommitsAreCountedAndTheFinalOneLogged(t *testing.T) {
	p := newPair(t)
	createTopic(t, p.europe, "nocommit", 2, nil)
	produce(t, p.europe, numbered("nocommit", 2, 0, 200)...)
	p.europe.Fake().ControlKey(int16(kmsg.OffsetCommit), func(r kmsg.Request) (kmsg.Response, error, bool) {
		p.europe.Fake().KeepControl()
		req := r.(*kmsg.OffsetCommitRequest)
		resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewOffsetCommitResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewOffsetCommitResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.GroupAuthorizationFailed.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	reg := prometheus.NewRegistry()
	m, logs := startObserved(t, p.config("nocommit"), reg)
	waitFor(t, "records mirrored", 30*time.Second, func() bool { return endOffsets(t, p.us, "nocommit") == 200 })
	waitFor(t, "a failed commit counted", 30*time.Second, func() bool {
		return counter(t, reg, "kmirror_commit_errors_total") >= 1
	})
	if err := m.stop(t); err != nil {
		t.Fatal(err)
	}
	final := logs.FilterMessageSnippet("final commit").FilterLevelExact(zapcore.ErrorLevel).All()
	if len(final) != 1 {
		t.Fatalf("%d error lines about the final commit, want 1", len(final))
	}
	parts, _ := final[0].ContextMap()["partitions"].([]any)
	if len(parts) != 2 {
		t.Fatalf("final commit failure names partitions %v, want both of nocommit", final[0].ContextMap()["partitions"])
	}
	if c := committed(t, p.europe, "kmirror", "nocommit"); len(c) != 0 {
		t.Fatalf("committed %v although every commit was refused", c)
	}
}
