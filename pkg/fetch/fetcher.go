package fetch

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap"
)

// Config configures a Fetcher. Zero values take the default named on each field (Kafka's
// consumer defaults).
type Config struct {
	// Client gives metadata (leaders, leader epochs, broker addresses) and the connection
	// settings (Net, TLS, SASL, Version, RackID) the loops open their own connections with.
	// Required. The Fetcher never closes it.
	Client sarama.Client
	// MaxBytes bounds one fetch response (fetch.max.bytes; default 50 MiB).
	MaxBytes int32
	// PartitionMaxBytes bounds one partition's data in a response (max.partition.fetch.bytes;
	// default 1 MiB).
	PartitionMaxBytes int32
	// KeepMaxBytes is the most a partition's limit stays at once the batch it was raised for
	// arrived (see the package doc: a batch larger than the limit raises it); 0 keeps nothing,
	// every limit goes back to PartitionMaxBytes.
	KeepMaxBytes int32
	// MinBytes is what the broker waits for before answering (fetch.min.bytes; default 1).
	MinBytes int32
	// MaxWait is how long the broker may hold a fetch for MinBytes (fetch.max.wait.ms; default
	// 500 ms).
	MaxWait time.Duration
	// Lanes is how many loops fetch from each broker, each on a connection and in a fetch
	// session of its own, the broker's partitions divided among them by a hash of topic and
	// partition (default 1). One loop has one fetch in flight: across a long round trip, a
	// broker's partitions then move one response per round trip, however fast the link.
	Lanes int
	// SessionPartitions, above 0, is how many of a broker's partitions one loop holds before the
	// broker gets another loop (up to MaxLanes): each partition routed to a broker goes to the
	// loop of the broker that holds the fewest, among at least Lanes loops and as many more as
	// the broker's partitions need at SessionPartitions each. A broker slows down with the
	// partitions in one fetch session (config.FetchSessionPartitions says why), and the
	// partitions a broker leads grow after the start: topics created, partitions added,
	// leaders moved onto it. 0 keeps Lanes loops per broker, a partition's loop a hash of its
	// name.
	SessionPartitions int
	// MaxLanes bounds the loops per broker SessionPartitions opens (default 16).
	MaxLanes int
	// MaxHeldBytes, above 0, bounds what the sinks of each group hold back (a Sink that is
	// Grouped names its group; any other is in group 0): the bytes of the batches delivered to
	// partitions whose sink answered full and has not said Ready since (counted whole, as
	// delivered). While a group's reach it, none of its partitions is fetched (a fetch in flight
	// is still delivered), and they are fetched again once a Ready or Remove brings the group
	// under it; other groups' partitions go on. Without it a group whose sinks are all full (a
	// frozen target) keeps fetching every partition until each holds a batch or two: at 10,000
	// partitions with a backlog, up to 10,000 partition shares. 0: no bound.
	MaxHeldBytes int64
	// ReadCommitted fetches with isolation.level=read_committed.
	ReadCommitted bool
	// Rack is client.rack: with it, a leader's preferred read replica (KIP-392) is fetched from.
	// Default: Client.Config().RackID.
	Rack string
	// Backoff is the wait before a partition is fetched again after an error, and between
	// metadata refreshes (retry.backoff.ms; default 100 ms).
	Backoff time.Duration
	// ReplicaTTL is how long a preferred read replica is used before the leader is asked again
	// (metadata.max.age.ms; default 5 min).
	ReplicaTTL time.Duration
	// Logger receives one line per event a person would act on; default: none.
	Logger *zap.Logger
	// Events, each optional, are told of every fetch as it is answered or fails, for the
	// owner's metrics; they are called from the loops and must not block.
	Events Events
}

// Events are a Fetcher's fetches as they happen (Stats sums them).
type Events struct {
	// Answered: a fetch was answered; full says it opened a new session (or there was none),
	// named and forgotten are the partitions it named and dropped from the session.
	Answered func(full bool, named, forgotten int)
	// Refused: the broker refused a whole fetch (FETCH_SESSION_ID_NOT_FOUND, ...).
	Refused func()
	// Unanswered: a fetch got no answer (connection refused or lost, timeout).
	Unanswered func()
	// Held: the bytes the sinks hold back (Config.MaxHeldBytes) changed to bytes. It is called
	// under the Fetcher's lock, in the order of the changes.
	Held func(bytes int64)
}

// Sink receives one partition's batches. Its methods are called from the partition's fetch
// loop, one call at a time. They must not block (the loop fetches the broker's other partitions
// too), and must not call Remove or Pause (which wait for a delivery in progress, of this
// partition or, through another loop, of another); Ready, Resume and Add may be called.
type Sink interface {
	// Deliver hands over b; the Fetcher never touches it again. Deliver must take every batch
	// it is given. It returns full = true when the partition's inbox is full: the partition is
	// not fetched again until Fetcher.Ready is called for it (a Ready that races with Deliver
	// counts), while every other partition keeps being fetched. Each full partition leaves its
	// loop's fetch session (one forgotten entry) and joins it again when ready (one named entry),
	// so a sink should answer full with hysteresis: full at its bound, Ready once, say, half of
	// it drained.
	Deliver(b *Batch) (full bool)
	// Stopped says that the partition is no longer fetched because of err (an *OutOfRangeError,
	// or a refusal that retrying cannot fix, such as an authorization failure); the partition
	// has been removed, and the owner may Add it again at an offset of its choosing.
	Stopped(err error)
}

// Grouped is a Sink that shares MaxHeldBytes with the sinks of its group (the partitions that
// feed one inbox, say): Group is called once, when the partition is added.
type Grouped interface {
	Group() int
}

// TopicPartition names one source partition.
type TopicPartition struct {
	Topic     string
	Partition int32
}

// OutOfRangeError says that the offset to fetch is not in the partition's log: records before the
// log start were deleted (retention, DeleteRecords), or the log was truncated below it.
type OutOfRangeError struct {
	Topic     string
	Partition int32
	// Offset is the offset that was asked for; LogStart and LogEnd the log's bounds when the
	// broker answered (-1 when they could not be read).
	Offset, LogStart, LogEnd int64
}

func (e *OutOfRangeError) Error() string {
	return fmt.Sprintf("fetch %s partition %d at offset %d: offset out of range (log start %d, log end %d)",
		e.Topic, e.Partition, e.Offset, e.LogStart, e.LogEnd)
}

// Unwrap lets errors.Is(err, sarama.ErrOffsetOutOfRange) match.
func (e *OutOfRangeError) Unwrap() error { return sarama.ErrOffsetOutOfRange }

// ErrClosed is returned by Add after Close (or after the Fetcher's context ended).
var ErrClosed = errors.New("fetcher closed")

// partState is one fetched partition. Fields below mu are guarded by Fetcher.mu.
type partState struct {
	tp   TopicPartition
	sink Sink

	// dmu is held for the whole of a delivery (checks, Deliver, new position), and by Remove and
	// Pause: once they return, no delivery is in progress and none can begin.
	dmu sync.Mutex
	// ready counts Fetcher.Ready calls; a partition that said full at count n is fetchable again
	// once the count passes n.
	ready atomic.Uint64

	offset      int64 // next offset to fetch: moves only in deliver
	leaderEpoch int32 // from metadata; -1 when unknown
	loop        *loop // the loop fetching it; nil while the router looks for its leader
	stale       bool  // the router refreshes metadata before routing it
	replica     int32 // preferred read replica, -1 for none
	replicaTill time.Time
	paused      bool
	removed     bool
	full        bool
	fullAt      uint64
	held        int64     // bytes delivered since the sink answered full and not Ready since (Fetcher.held)
	group       int       // the sink's group (Grouped), for MaxHeldBytes
	retryAt     time.Time // not fetched before (after an error)
	failures    int       // errors since the last delivery: the backoff doubles with each
	maxBytes    int32     // this partition's limit: PartitionMaxBytes, raised for a large batch
	// end is where the partition's fetchable records ended at its last answer (last stable
	// offset under read_committed, high watermark otherwise): records past offset are there.
	end int64
}

// fetchable reports whether the partition may be named in a request now. f.mu held.
func (p *partState) fetchable(now time.Time) bool {
	if p.paused || p.removed || now.Before(p.retryAt) {
		return false
	}
	if p.full {
		if p.ready.Load() <= p.fullAt {
			return false
		}
		p.full = false
	}
	return true
}

// backoff is the wait after another error: base, doubled with each error since the last
// delivery, at most 16 times base (a dead broker that metadata still names as leader is retried
// a few times a second, not ten). f.mu held.
func (p *partState) backoff(base time.Duration) time.Duration {
	d := base << min(p.failures, 4)
	p.failures++
	return d
}

// Fetcher fetches the partitions added to it. Its methods are safe for concurrent use.
type Fetcher struct {
	cfg     Config
	log     *zap.Logger
	version int16
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	route   chan struct{} // wakes the router (capacity 1)
	stats   stats

	mu     sync.Mutex
	parts  map[TopicPartition]*partState
	loops  map[loopKey]*loop
	closed bool
	held   map[int]int64 // per group, the sum of its partitions' held (Config.MaxHeldBytes)
	total  int64         // the sum over the groups
}

// New starts a Fetcher (its router; loops start as brokers are needed). It stops when ctx ends or
// Close is called.
func New(ctx context.Context, cfg Config) (*Fetcher, error) {
	if cfg.Client == nil {
		return nil, errors.New("fetch: Config.Client is required")
	}
	sc := cfg.Client.Config()
	version, err := requestVersion(sc.Version)
	if err != nil {
		return nil, err
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = 50 << 20
	}
	if cfg.PartitionMaxBytes == 0 {
		cfg.PartitionMaxBytes = 1 << 20
	}
	if cfg.MinBytes == 0 {
		cfg.MinBytes = 1
	}
	if cfg.MaxWait == 0 {
		cfg.MaxWait = 500 * time.Millisecond
	}
	if cfg.Backoff == 0 {
		cfg.Backoff = 100 * time.Millisecond
	}
	if cfg.ReplicaTTL == 0 {
		cfg.ReplicaTTL = 5 * time.Minute
	}
	if cfg.Rack == "" {
		cfg.Rack = sc.RackID
	}
	if cfg.Lanes <= 0 {
		cfg.Lanes = 1
	}
	if cfg.MaxLanes <= 0 {
		cfg.MaxLanes = 16
	}
	cfg.MaxLanes = max(cfg.MaxLanes, cfg.Lanes)
	switch {
	case cfg.MaxBytes < 0 || cfg.PartitionMaxBytes < 0 || cfg.MinBytes < 0:
		return nil, fmt.Errorf("fetch: MaxBytes (%d), PartitionMaxBytes (%d) and MinBytes (%d) must not be negative",
			cfg.MaxBytes, cfg.PartitionMaxBytes, cfg.MinBytes)
	case sc.Net.ReadTimeout > 0 && cfg.MaxWait >= sc.Net.ReadTimeout:
		return nil, fmt.Errorf("fetch: MaxWait (%s) must be shorter than the client's Net.ReadTimeout (%s), or every idle fetch times out",
			cfg.MaxWait, sc.Net.ReadTimeout)
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	ctx, cancel := context.WithCancel(ctx)
	f := &Fetcher{
		cfg: cfg, log: log, version: version, ctx: ctx, cancel: cancel,
		route: make(chan struct{}, 1),
		parts: make(map[TopicPartition]*partState),
		loops: make(map[loopKey]*loop),
		held:  make(map[int]int64),
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		f.router()
	}()
	return f, nil
}

// requestVersion is the newest FetchRequest version both sarama v1.61.1 and the configured
// protocol version speak. Record batches (and isolation levels) need 0.11; sessions 1.1 (v7);
// leader epochs 2.1 (v9); rack 2.3 (v11).
func requestVersion(v sarama.KafkaVersion) (int16, error) {
	switch {
	case v.IsAtLeast(sarama.V2_7_0_0):
		return 12, nil
	case v.IsAtLeast(sarama.V2_3_0_0):
		return 11, nil
	case v.IsAtLeast(sarama.V2_1_0_0):
		return 10, nil
	case v.IsAtLeast(sarama.V2_0_0_0):
		return 8, nil
	case v.IsAtLeast(sarama.V1_1_0_0):
		return 7, nil
	case v.IsAtLeast(sarama.V1_0_0_0):
		return 6, nil
	case v.IsAtLeast(sarama.V0_11_0_0):
		return 5, nil
	}
	return 0, fmt.Errorf("fetch: Kafka protocol version %s is older than 0.11.0, the first with record batches and read_committed; set the cluster's version to 0.11.0 or later", v)
}

// Add starts fetching a partition at offset (an explicit offset: where to start is the owner's
// decision). Adding a partition that is already there is an error.
func (f *Fetcher) Add(topic string, partition int32, offset int64, sink Sink) error {
	if sink == nil || offset < 0 {
		return fmt.Errorf("fetch: add %s partition %d: a sink and an offset >= 0 are required (got offset %d)", topic, partition, offset)
	}
	tp := TopicPartition{topic, partition}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed || f.ctx.Err() != nil {
		return ErrClosed
	}
	if _, ok := f.parts[tp]; ok {
		return fmt.Errorf("fetch: add %s partition %d: already fetched (Remove it first)", topic, partition)
	}
	p := &partState{tp: tp, sink: sink, offset: offset, leaderEpoch: -1, replica: -1,
		maxBytes: f.cfg.PartitionMaxBytes}
	if g, ok := sink.(Grouped); ok {
		p.group = g.Group()
	}
	f.parts[tp] = p
	f.wakeRouter()
	return nil
}

// Remove stops fetching a partition and returns its position (the next offset it would have
// fetched). When Remove returns, no delivery for the partition is in progress and none will
// follow. It must not be called from a Sink.
func (f *Fetcher) Remove(topic string, partition int32) (offset int64, ok bool) {
	p := f.get(topic, partition)
	if p == nil {
		return 0, false
	}
	p.dmu.Lock()
	defer p.dmu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.parts[p.tp] != p {
		return 0, false // stopped (Sink.Stopped) or removed meanwhile
	}
	f.drop(p)
	return p.offset, true
}

// drop forgets p. f.mu held (and p.dmu, so that no delivery follows).
func (f *Fetcher) drop(p *partState) {
	f.release(p)
	p.removed = true
	delete(f.parts, p.tp)
	if l := p.loop; l != nil {
		delete(l.parts, p.tp)
		p.loop = nil
		l.wakeUp()
	}
}

// Pause stops fetching a partition until Resume; its position is kept. When Pause returns, no
// delivery for the partition is in progress and none will follow until Resume. It must not be
// called from a Sink.
func (f *Fetcher) Pause(topic string, partition int32) {
	p := f.get(topic, partition)
	if p == nil {
		return
	}
	p.dmu.Lock()
	defer p.dmu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	p.paused = true
	if p.loop != nil {
		p.loop.wakeUp()
	}
}

// Resume fetches a paused partition again from its position.
func (f *Fetcher) Resume(topic string, partition int32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p := f.parts[TopicPartition{topic, partition}]; p != nil && p.paused {
		p.paused = false
		if p.loop != nil {
			p.loop.wakeUp()
		}
	}
}

// Ready says that the partition's sink has room again after it answered full. It may be called
// at any time, from any goroutine, as often as the sink likes.
func (f *Fetcher) Ready(topic string, partition int32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p := f.parts[TopicPartition{topic, partition}]; p != nil {
		p.ready.Add(1)
		f.release(p)
		if p.loop != nil {
			p.loop.wakeUp()
		}
	}
}

// hold counts n bytes delivered to p, whose sink answered full, as held until its Ready. f.mu
// held.
func (f *Fetcher) hold(p *partState, n int64) {
	p.held += n
	f.held[p.group] += n
	f.total += n
	f.heldChanged()
}

// heldChanged reports the held bytes. f.mu held.
func (f *Fetcher) heldChanged() {
	f.stats.held.Store(f.total)
	if ev := f.cfg.Events.Held; ev != nil {
		ev(f.total)
	}
}

// release stops counting what p held (its sink is Ready, or it is gone) and, when that brings
// its group under Config.MaxHeldBytes, wakes every loop: they stopped fetching the group's
// partitions at it. f.mu held.
func (f *Fetcher) release(p *partState) {
	if p.held == 0 {
		return
	}
	was := f.holding(p.group)
	if f.held[p.group] -= p.held; f.held[p.group] == 0 {
		delete(f.held, p.group)
	}
	f.total -= p.held
	p.held = 0
	f.heldChanged()
	if was && !f.holding(p.group) {
		for _, l := range f.loops {
			l.wakeUp()
		}
	}
}

// holding reports whether the sinks of group hold Config.MaxHeldBytes or more: none of its
// partitions is fetched then. f.mu held.
func (f *Fetcher) holding(group int) bool {
	return f.cfg.MaxHeldBytes > 0 && f.held[group] >= f.cfg.MaxHeldBytes
}

// Position returns a partition's next offset to fetch.
func (f *Fetcher) Position(topic string, partition int32) (int64, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p := f.parts[TopicPartition{topic, partition}]; p != nil {
		return p.offset, true
	}
	return 0, false
}

// Loops returns the number of fetch loops running (Lanes per broker fetched from, or fewer when
// a broker leads fewer partitions; with SessionPartitions, more for a broker that leads more).
func (f *Fetcher) Loops() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.loops)
}

// Close stops every loop and the router and waits for them. A fetch in flight is waited for (at
// most MaxWait and the answer's transfer: sarama cannot abort a request) and its answer dropped.
// Nothing is delivered after Close returns.
func (f *Fetcher) Close() {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	f.cancel()
	f.wg.Wait()
}

func (f *Fetcher) get(topic string, part int32) *partState {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.parts[TopicPartition{topic, part}]
}

func (f *Fetcher) wakeRouter() {
	select {
	case f.route <- struct{}{}:
	default:
	}
}

// unroute takes p from its loop and gives it to the router (after backoff when the partition
// failed). stale asks the router to refresh metadata first. f.mu held.
func (f *Fetcher) unroute(p *partState, stale bool, backoff time.Duration) {
	if l := p.loop; l != nil {
		delete(l.parts, p.tp)
		p.loop = nil
	}
	p.stale = p.stale || stale
	if backoff > 0 {
		p.retryAt = time.Now().Add(backoff)
	}
	f.wakeRouter()
}

// router finds the broker to fetch each unrouted partition from: the preferred read replica while
// it is valid, else the leader from the client's metadata, refreshed first for partitions that
// failed (at most once per Backoff). Partitions whose leader is not known yet are retried.
func (f *Fetcher) router() {
	var lastRefresh time.Time
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-f.ctx.Done():
			return
		case <-f.route:
		case <-timer.C:
		}
		var stale []string
		seen := map[string]bool{}
		f.mu.Lock()
		for _, p := range f.parts {
			if p.loop == nil && p.stale && !seen[p.tp.Topic] {
				seen[p.tp.Topic] = true
				stale = append(stale, p.tp.Topic)
			}
		}
		f.mu.Unlock()
		if len(stale) > 0 {
			if wait := f.cfg.Backoff - time.Since(lastRefresh); wait > 0 {
				if !sleep(f.ctx, wait) {
					return
				}
			}
			lastRefresh = time.Now()
			if err := f.cfg.Client.RefreshMetadata(stale...); err != nil {
				f.log.Warn("fetch: metadata refresh failed; retrying", zap.Strings("topics", stale), zap.Error(err))
			}
		}
		if pending := f.routeAll(); pending {
			timer.Reset(f.cfg.Backoff)
		}
	}
}

// routeAll routes every partition without a loop; it reports whether some are left.
func (f *Fetcher) routeAll() (pending bool) {
	f.mu.Lock()
	var todo []*partState
	for _, p := range f.parts {
		if p.loop == nil {
			todo = append(todo, p)
		}
	}
	f.mu.Unlock()
	now := time.Now()
	for _, p := range todo {
		// Metadata is read without f.mu: the client may go to the network.
		b, epoch, err := f.cfg.Client.LeaderAndEpoch(p.tp.Topic, p.tp.Partition)
		f.mu.Lock()
		if f.parts[p.tp] != p || p.loop != nil || f.closed {
			f.mu.Unlock()
			continue
		}
		if err != nil {
			p.stale = true
			pending = true
			f.mu.Unlock()
			f.log.Debug("fetch: no leader yet", zap.String("topic", p.tp.Topic), zap.Int32("partition", p.tp.Partition), zap.Error(err))
			continue
		}
		id := b.ID()
		if p.replica >= 0 && now.Before(p.replicaTill) {
			id = p.replica
		} else {
			p.replica = -1
		}
		p.stale = false
		p.leaderEpoch = epoch
		l := f.loopFor(loopKey{id, f.laneFor(id, p.tp)})
		p.loop = l
		l.parts[p.tp] = p
		l.wakeUp()
		f.mu.Unlock()
	}
	return pending
}

// laneFor returns the lane of broker that is to fetch tp, a partition being routed to it: the
// hash of tp among Lanes, or with SessionPartitions the lane that holds the fewest of the broker's
// partitions among those its partitions need (at least Lanes, one per SessionPartitions counting
// tp, at most MaxLanes; lowest first on a tie). A partition already routed never moves for
// another: lanes are added, never re-divided. f.mu held.
func (f *Fetcher) laneFor(broker int32, tp TopicPartition) int {
	sp := f.cfg.SessionPartitions
	if sp <= 0 {
		return lane(tp, f.cfg.Lanes)
	}
	held := make([]int, f.cfg.MaxLanes)
	total := 0
	for key, l := range f.loops {
		if key.broker == broker && key.lane < len(held) {
			held[key.lane] = len(l.parts)
			total += len(l.parts)
		}
	}
	want := min(max(f.cfg.Lanes, (total+sp)/sp), f.cfg.MaxLanes)
	best := 0
	for i := 1; i < want; i++ {
		if held[i] < held[best] {
			best = i
		}
	}
	if best >= f.cfg.Lanes && f.loops[loopKey{broker, best}] == nil {
		f.log.Info("fetch: a broker leads more partitions than one fetch session holds well; another fetch loop reads it",
			zap.Int32("broker", broker), zap.Int("partitions", total+1), zap.Int("fetch_lanes", best+1),
			zap.Int("session_partitions", sp))
	}
	return best
}

// loopKey names a loop: its broker and its lane.
type loopKey struct {
	broker int32
	lane   int
}

// lane is the lane of lanes that fetches tp (FNV-1a of topic and partition). It runs when a
// partition is routed, not per fetch.
func lane(tp TopicPartition, lanes int) int {
	if lanes <= 1 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(tp.Topic))
	_, _ = h.Write(binary.BigEndian.AppendUint32(nil, uint32(tp.Partition)))
	return int(h.Sum32() % uint32(lanes))
}

// loopFor returns the loop of key, starting it if needed. f.mu held.
func (f *Fetcher) loopFor(key loopKey) *loop {
	if l := f.loops[key]; l != nil {
		return l
	}
	l := &loop{f: f, id: key.broker, wake: make(chan struct{}, 1), parts: make(map[TopicPartition]*partState)}
	f.loops[key] = l
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		l.run()
	}()
	return l
}

// sleep waits d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
