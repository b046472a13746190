package fetch

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// seenFetch is one fetch request as the broker received it.
type seenFetch struct {
	node          int32
	sessionID     int32
	epoch         int32
	named         []int32 // partitions named, sorted
	forgotten     []int32 // partitions in the forgotten list, sorted
	leaderEpochs  []int32 // CurrentLeaderEpoch of each partition named (KIP-320)
	maxWait       int32   // MaxWaitMillis
	errorInjected bool
}

// fetchLog records every fetch request a kfake cluster receives (and, when inject returns an
// error code for a request, answers it with that code instead).
type fetchLog struct {
	mu     sync.Mutex
	seen   []seenFetch
	inject func(req *kmsg.FetchRequest, node int32) int16
}

func watchFetches(c *kfake.Cluster) *fetchLog {
	l := &fetchLog{}
	c.ControlKey(int16(kmsg.Fetch), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := kreq.(*kmsg.FetchRequest)
		s := seenFetch{node: c.CurrentNode(), sessionID: req.SessionID, epoch: req.SessionEpoch, maxWait: req.MaxWaitMillis}
		for _, t := range req.Topics {
			for _, p := range t.Partitions {
				s.named = append(s.named, p.Partition)
				s.leaderEpochs = append(s.leaderEpochs, p.CurrentLeaderEpoch)
			}
		}
		for _, t := range req.ForgottenTopics {
			s.forgotten = append(s.forgotten, t.Partitions...)
		}
		slices.Sort(s.named)
		slices.Sort(s.forgotten)
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.inject != nil {
			if code := l.inject(req, s.node); code != 0 {
				s.errorInjected = true
				l.seen = append(l.seen, s)
				resp := req.ResponseKind().(*kmsg.FetchResponse)
				resp.ErrorCode = code
				return resp, nil, true
			}
		}
		l.seen = append(l.seen, s)
		return nil, nil, false
	})
	return l
}

func (l *fetchLog) since(i int) []seenFetch {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]seenFetch(nil), l.seen[min(i, len(l.seen)):]...)
}

func (l *fetchLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.seen)
}

// waitFetches waits until at least n more requests than mark were seen.
func (l *fetchLog) waitFetches(t *testing.T, mark, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for l.len() < mark+n {
		if time.Now().After(deadline) {
			t.Fatalf("%d fetch requests seen, want %d", l.len()-mark, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestIdleFetchesNameNoPartition: with 20 partitions fetched and nothing written, one full fetch
// opens the session and every later (incremental) fetch names no partition at all; a partition
// that receives data is named in the next fetch only (its new position), pausing one partition
// forgets it in the same session (no new full fetch), and resuming it adds it back
// incrementally.
func TestIdleFetchesNameNoPartition(t *testing.T) {
	c := startCluster(t, 1)
	kc := kclient(t, c, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	createTopic(t, kc, "idle", 20, nil)
	log := watchFetches(c.Fake())
	var ev struct {
		sync.Mutex
		full, fetches, named, forgotten int
	}
	events := Events{Answered: func(full bool, named, forgotten int) {
		ev.Lock()
		defer ev.Unlock()
		ev.fetches++
		if full {
			ev.full++
		}
		ev.named += named
		ev.forgotten += forgotten
	}}
	f := newFetcher(t, Config{Client: client(t, c), MaxWait: 50 * time.Millisecond, Events: events})
	sinks := addCollectors(t, f, "idle", 20)
	log.waitFetches(t, 0, 12)
	seen := log.since(0)
	full, names := 0, 0
	for i, s := range seen {
		if s.epoch == 0 {
			full++
			continue
		}
		if i == 0 || s.sessionID == 0 {
			t.Fatalf("request %d: session %d epoch %d before any full fetch", i, s.sessionID, s.epoch)
		}
		names += len(s.named)
	}
	// The partitions are routed as the router finds them: the first full fetch may hold only
	// some, and the rest join incrementally (naming each once).
	if full != 1 || names > 20 {
		t.Fatalf("%d requests: %d full, %d partitions named in incremental ones; want 1 full and no partition named twice", len(seen), full, names)
	}
	for _, e := range seen[0].leaderEpochs {
		if e < 0 {
			t.Fatalf("full fetch sent leader epochs %v, want the partitions' current epochs (KIP-320)", seen[0].leaderEpochs)
		}
	}
	last := seen[len(seen)-1]
	if len(last.named) != 0 || last.epoch < 2 {
		t.Fatalf("idle fetch names %v (epoch %d), want none", last.named, last.epoch)
	}

	if st := f.Stats(); st.FullFetches != 1 || st.PartitionsNamed != 20 || st.Fetches < 11 {
		t.Fatalf("stats %+v: want 1 full fetch, 20 partitions named in all, at least 11 fetches answered", st)
	}

	// Data on partition 7: the next fetches name it (its new position) and nothing else.
	mark := log.len()
	produce(t, kc, &kgo.Record{Topic: "idle", Partition: 7, Value: []byte("p7-0")})
	checkSequence(t, 7, sinks[7].waitRecords(t, 1, 5*time.Second), 1, 0)
	log.waitFetches(t, mark, 3)
	for _, s := range log.since(mark) {
		if s.epoch == 0 || (len(s.named) > 0 && !slices.Equal(s.named, []int32{7})) {
			t.Fatalf("after data on partition 7: request epoch %d names %v", s.epoch, s.named)
		}
	}

	// Pausing partition 3 shrinks the set: the next request forgets it (KIP-227), in the same
	// session; the ones after name and forget nothing.
	f.Pause("idle", 3)
	mark = log.len()
	log.waitFetches(t, mark, 3)
	after := log.since(mark)
	if after[0].epoch == 0 || len(after[0].named) != 0 || !slices.Equal(after[0].forgotten, []int32{3}) {
		t.Fatalf("after Pause: first request epoch %d names %v forgets %v, want an incremental fetch forgetting [3]", after[0].epoch, after[0].named, after[0].forgotten)
	}
	for _, s := range after[1:] {
		if s.epoch == 0 || len(s.named) != 0 || len(s.forgotten) != 0 {
			t.Fatalf("after Pause: later request epoch %d names %v forgets %v", s.epoch, s.named, s.forgotten)
		}
	}
	if st := f.Stats(); st.FullFetches != 1 || st.PartitionsForgotten != 1 {
		t.Fatalf("stats after Pause %+v: want still 1 full fetch and 1 partition forgotten", st)
	}
	// The owner's events (its metrics) add up to the same counts.
	st := f.Stats()
	ev.Lock()
	if ev.full != 1 || ev.forgotten != 1 || int64(ev.fetches) < st.Fetches-1 || int64(ev.named) != st.PartitionsNamed {
		t.Errorf("events: %d fetches (%d full), %d named, %d forgotten; stats %+v", ev.fetches, ev.full, ev.named, ev.forgotten, st)
	}
	ev.Unlock()
	// Resuming adds it to the session incrementally.
	f.Resume("idle", 3)
	mark = log.len()
	log.waitFetches(t, mark, 3)
	after = log.since(mark)
	if after[0].epoch == 0 || !slices.Equal(after[0].named, []int32{3}) {
		t.Fatalf("after Resume: request epoch %d names %v, want partition 3 added incrementally", after[0].epoch, after[0].named)
	}
}

// TestLostSessionOpensNewFullSession: FETCH_SESSION_ID_NOT_FOUND and INVALID_FETCH_SESSION_EPOCH
// (a broker restarted, a session evicted) are answered by a new full session at once, and the
// records written around them arrive once each, in order.
func TestLostSessionOpensNewFullSession(t *testing.T) {
	for _, code := range []int16{70, 71} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			c := startCluster(t, 1)
			kc := kclient(t, c, kgo.RecordPartitioner(kgo.ManualPartitioner()))
			createTopic(t, kc, "lost", 2, nil)
			log := watchFetches(c.Fake())
			f := newFetcher(t, Config{Client: client(t, c), MaxWait: 50 * time.Millisecond})
			s0, s1 := newCollector(), newCollector()
			_ = f.Add("lost", 0, 0, s0)
			_ = f.Add("lost", 1, 0, s1)
			const n = 400
			injected := 0
			for i := range n {
				produce(t, kc, &kgo.Record{Topic: "lost", Partition: 0, Value: []byte(fmt.Sprintf("p0-%d", i))},
					&kgo.Record{Topic: "lost", Partition: 1, Value: []byte(fmt.Sprintf("p1-%d", i))})
				if i%100 == 50 {
					log.mu.Lock()
					log.inject = func(req *kmsg.FetchRequest, _ int32) int16 {
						if req.SessionEpoch > 0 {
							log.inject = nil
							return code
						}
						return 0
					}
					log.mu.Unlock()
					injected++
				}
			}
			checkSequence(t, 0, s0.waitRecords(t, n, 10*time.Second), n, 0)
			checkSequence(t, 1, s1.waitRecords(t, n, 10*time.Second), n, 0)
			seen := log.since(0)
			errs, recovered := 0, 0
			for i, s := range seen {
				if s.errorInjected {
					errs++
					if i+1 < len(seen) && seen[i+1].epoch == 0 && seen[i+1].sessionID == 0 && len(seen[i+1].named) == 2 {
						recovered++
					}
				}
			}
			if errs == 0 || recovered != errs {
				t.Fatalf("%d errors injected, %d followed at once by a new full session", errs, recovered)
			}
		})
	}
}

// TestLargeSessionGrowsInSteps: a loop given 2,500 partitions opens its session with at most
// maxNewPerFetch of them and adds the rest in incremental fetches of at most as many, so that no
// request asks the broker for thousands of partitions at once; every partition's record arrives,
// and pausing partitions while the session grows forgets them without a new session.
func TestLargeSessionGrowsInSteps(t *testing.T) {
	const n = 2500
	c := startCluster(t, 1)
	kc := kclient(t, c, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	createTopic(t, kc, "wide", n, nil)
	var rs []*kgo.Record
	for p := range int32(n) {
		rs = append(rs, &kgo.Record{Topic: "wide", Partition: p, Value: fmt.Appendf(nil, "p%d-0", p)})
	}
	produce(t, kc, rs...)
	log := watchFetches(c.Fake())
	f := newFetcher(t, Config{Client: client(t, c), MaxWait: 50 * time.Millisecond})
	sinks := addCollectors(t, f, "wide", n)
	for p := range int32(10) {
		f.Pause("wide", p*100) // while it grows: each is forgotten once it was in
	}
	for p, s := range sinks {
		if p%100 == 0 && p < 1000 {
			continue
		}
		checkSequence(t, int32(p), s.waitRecords(t, 1, 30*time.Second), 1, 0)
	}
	// A request also names each partition whose position moved: count those it adds.
	full, most := 0, 0
	in := map[int32]bool{}
	for _, s := range log.since(0) {
		if s.epoch == 0 {
			full++
			clear(in)
		}
		added := 0
		for _, p := range s.named {
			if !in[p] {
				in[p] = true
				added++
			}
		}
		for _, p := range s.forgotten {
			delete(in, p)
		}
		most = max(most, added)
	}
	if full != 1 || most > maxNewPerFetch {
		t.Fatalf("%d full fetches, at most %d partitions added by one request; want 1 and at most %d", full, most, maxNewPerFetch)
	}
	st := f.Stats()
	t.Logf("2,500 partitions: %d requests, 1 full, at most %d added by one, %d named in all, %d forgotten", st.Fetches, most, st.PartitionsNamed, st.PartitionsForgotten)
	if st.PartitionsForgotten > 10 {
		t.Fatalf("%d partitions forgotten, want at most the 10 paused", st.PartitionsForgotten)
	}
}

// TestAGrowingSessionDoesNotWait: 2,500 idle partitions (nothing to fetch) with a long fetch wait,
// as at 10,000 partitions, reach the loop a few hundred at a time: no request waits the fetch
// wait while the session grows, so it holds every partition within a fraction of one wait
// (before, each request built between two arrivals waited it whole); once it does, the waits
// lengthen back to the fetch wait within a few requests.
func TestAGrowingSessionDoesNotWait(t *testing.T) {
	const n, wait = 2500, 2 * time.Second
	c := startCluster(t, 1)
	kc := kclient(t, c)
	createTopic(t, kc, "idle", n, nil)
	log := watchFetches(c.Fake())
	start := time.Now()
	f := newFetcher(t, Config{Client: client(t, c), MaxWait: wait})
	addCollectors(t, f, "idle", n)
	in := map[int32]bool{}
	seen := 0
	for len(in) < n {
		if time.Since(start) > 3*wait {
			t.Fatalf("the session holds %d of %d partitions after %s", len(in), n, time.Since(start))
		}
		for _, s := range log.since(seen) {
			seen++
			if s.maxWait >= int32(wait/time.Millisecond)/2 {
				t.Fatalf("request %d, with %d of %d partitions in the session, asks the broker to wait %d ms",
					seen, len(in), n, s.maxWait)
			}
			for _, p := range s.named {
				in[p] = true
			}
		}
		time.Sleep(time.Millisecond)
	}
	took, grown := time.Since(start), seen
	t.Logf("%d idle partitions in the session after %s and %d requests", n, took.Round(time.Millisecond), seen)
	if took > wait/2 {
		t.Fatalf("the session took %s to hold every partition, against a fetch wait of %s", took, wait)
	}
	for deadline := time.Now().Add(3 * wait); ; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no request waits the fetch wait of %s within %s of the session's last growth", wait, 3*wait)
		}
		if ss := log.since(seen); len(ss) > 0 {
			seen += len(ss)
			if last := ss[len(ss)-1]; last.maxWait == int32(wait/time.Millisecond) && len(last.named) == 0 {
				break
			}
		}
	}
	t.Logf("%d requests until an idle one waited %s", seen-grown, wait)
	if seen-grown > 20 {
		t.Fatalf("%d requests after the session stopped growing before one waited %s, want at most 20", seen-grown, wait)
	}
}
