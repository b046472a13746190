package offsetmap

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/cenkalti/backoff/v5"
	"go.uber.org/zap"
	"golang.org/x/time/rate"
)

// TopicPrefix starts the map topic's name, which ends with the source alias. Names starting with
// "__" are never mirrored.
const TopicPrefix = "__kmirror.offset-map."

// DefaultTopic returns the map topic of a source cluster: "__kmirror.offset-map.<alias>".
func DefaultTopic(sourceAlias string) string { return TopicPrefix + sourceAlias }

// Store reads and writes the map topic on the target cluster. The topic is compacted and has one
// partition: every chunk has a key of its own, rewritten as the chunk grows, so the topic holds
// one record per chunk once compacted, and reading it back is one pass over a small log.
//
// Every write takes a context and returns by its deadline whatever the target does. sarama's
// producer has no context, so a write runs on a goroutine of its own, which goes on after the
// deadline until the producer gives up (its timeouts and retries) or is closed; until then the
// next write waits for it (busy), so that a chunk's versions reach the topic in the order they
// were written; once a write has outlived its deadline, the next ones give up at once until it
// returns (the target is known not to answer: each would only wait its whole deadline).
type Store struct {
	cfg   StoreConfig
	busy  chan struct{} // holds a token while a write is with the producer
	stuck atomic.Bool   // the write with the producer outlived its deadline
}

// StoreConfig configures a Store.
type StoreConfig struct {
	Topic string
	// Admin creates the topic; Client reads it; Producer writes it (all on the target).
	Admin    sarama.ClusterAdmin
	Client   sarama.Client
	Producer sarama.SyncProducer
	// ReplicationFactor of the topic when kmirror creates it (at most the number of brokers).
	ReplicationFactor int16
	Log               *zap.Logger
	// FollowPause is how long FollowAlways waits before it reads the topic again after a
	// failed read (DefaultFollowPause when zero).
	FollowPause time.Duration
}

// DefaultFollowPause is StoreConfig.FollowPause when it is not set.
const DefaultFollowPause = 5 * time.Second

// NewStore returns a store; nothing is read or written until it is used.
func NewStore(cfg StoreConfig) (*Store, error) {
	if cfg.Topic == "" {
		return nil, errors.New("offset map: a topic name is required")
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if cfg.FollowPause <= 0 {
		cfg.FollowPause = DefaultFollowPause
	}
	cfg.Log = cfg.Log.With(zap.String("offset_map_topic", cfg.Topic))
	return &Store{cfg: cfg, busy: make(chan struct{}, 1)}, nil
}

// Topic returns the map topic's name.
func (s *Store) Topic() string { return s.cfg.Topic }

// Ensure creates the map topic (compacted, one partition) unless it exists.
func (s *Store) Ensure() error {
	rf := max(s.cfg.ReplicationFactor, 1)
	brokers, _, err := s.cfg.Admin.DescribeCluster()
	if err != nil {
		return fmt.Errorf("describe target cluster for offset-map topic %q: %w", s.cfg.Topic, err)
	}
	if n := len(brokers); n > 0 && int(rf) > n {
		rf = int16(n)
	}
	str := func(v string) *string { return &v }
	cfgs := map[string]*string{
		"cleanup.policy":            str("compact"),
		"min.cleanable.dirty.ratio": str("0.1"),
		"segment.bytes":             str(fmt.Sprint(16 << 20)),
		"message.timestamp.type":    str("CreateTime"),
	}
	if rf > 1 {
		cfgs["min.insync.replicas"] = str(fmt.Sprint(min(rf-1, 2)))
	}
	err = s.cfg.Admin.CreateTopic(s.cfg.Topic, &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: rf, ConfigEntries: cfgs}, false)
	switch {
	case errors.Is(err, sarama.ErrTopicAlreadyExists):
	case err != nil:
		return fmt.Errorf("create offset-map topic %q (compacted, replication factor %d) on the target: %w", s.cfg.Topic, rf, err)
	default:
		s.cfg.Log.Info("created the offset-map topic", zap.Int16("replication_factor", rf))
	}
	return nil
}

// Write writes chunks to the map topic, in one request, by ctx's deadline.
func (s *Store) Write(ctx context.Context, chunks []*Chunk) error {
	if len(chunks) == 0 {
		return nil
	}
	msgs := make([]*sarama.ProducerMessage, len(chunks))
	for i, c := range chunks {
		msgs[i] = &sarama.ProducerMessage{Topic: s.cfg.Topic, Partition: 0, Key: sarama.ByteEncoder(c.Key()), Value: sarama.ByteEncoder(c.Encode())}
	}
	if err := s.send(ctx, msgs); err != nil {
		return fmt.Errorf("write %d chunks to offset-map topic %q: %w", len(chunks), s.cfg.Topic, err)
	}
	return nil
}

// Delete writes a tombstone for each chunk, in one request, by ctx's deadline.
func (s *Store) Delete(ctx context.Context, chunks []*Chunk) error {
	if len(chunks) == 0 {
		return nil
	}
	msgs := make([]*sarama.ProducerMessage, len(chunks))
	for i, c := range chunks {
		msgs[i] = &sarama.ProducerMessage{Topic: s.cfg.Topic, Partition: 0, Key: sarama.ByteEncoder(c.Key())}
	}
	if err := s.send(ctx, msgs); err != nil {
		return fmt.Errorf("delete %d expired chunks from offset-map topic %q: %w", len(chunks), s.cfg.Topic, err)
	}
	return nil
}

// errEarlierWrite is why a write did not start: the one before it is still with the producer.
var errEarlierWrite = errors.New("an earlier write to the offset-map topic is still waiting for the target")

// send hands msgs to the producer and waits for the outcome until ctx ends.
func (s *Store) send(ctx context.Context, msgs []*sarama.ProducerMessage) error {
	if err := ctx.Err(); err != nil {
		return err // never start a write that cannot be waited for
	}
	if s.stuck.Load() {
		return errEarlierWrite
	}
	select {
	case s.busy <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", errEarlierWrite, ctx.Err())
	}
	done := make(chan error, 1)
	go func() {
		defer func() { s.stuck.Store(false); <-s.busy }()
		done <- s.cfg.Producer.SendMessages(msgs)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		s.stuck.Store(true)
		return fmt.Errorf("no answer from the target in time (the write goes on; its outcome is not awaited): %w", ctx.Err())
	}
}

// LeaderWait bounds how long Load waits for the map partition's leader: right after the broker
// that led it was lost, the target names it for seconds (until the controller fences it, 9 s by
// default) and then elects another replica. A map topic with one replica on a lost broker stays
// unreadable: Load says so after this long.
const LeaderWait = time.Minute

// Load reads the map topic from its start to its end as of the call into x. While the map
// partition has no leader that answers (it moves, or the broker is gone), the whole read starts
// again with a growing pause, for up to LeaderWait; reading a record again into x is harmless (a
// chunk's last version wins).
func (s *Store) Load(ctx context.Context, x *Index) error {
	pause := backoff.NewExponentialBackOff()
	pause.InitialInterval = 200 * time.Millisecond
	pause.MaxInterval = 3 * time.Second
	start := time.Now()
	tries := 0
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		tries++
		err := s.read(ctx, x, true, nil)
		switch {
		case err == nil:
			return struct{}{}, nil
		case ctx.Err() != nil || !leaderMoving(err):
			return struct{}{}, backoff.Permanent(err)
		}
		s.cfg.Log.Info("the offset-map topic's leader does not answer; reading it again", zap.Int("try", tries), zap.Error(err))
		_ = s.cfg.Client.RefreshMetadata(s.cfg.Topic) // its failure shows in the next try
		return struct{}{}, err
	}, backoff.WithBackOff(pause), backoff.WithMaxElapsedTime(LeaderWait))
	if err != nil && tries > 1 {
		return fmt.Errorf("%w (tried %d times in %s: the partition has no leader that answers; bring back a broker that holds a replica of it)",
			err, tries, time.Since(start).Round(time.Second))
	}
	return err
}

// leaderMoving reports whether err says that the map partition's leader is elsewhere, not
// elected yet, or could not be reached: a read looked up afresh may succeed. Any other answer
// (no such topic, not authorized, a bad request) is final.
func leaderMoving(err error) bool {
	var kerr sarama.KError
	if errors.Is(err, sarama.ErrIncompleteResponse) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if !errors.As(err, &kerr) {
		return true // a refused or broken connection, no broker left to ask, a timeout
	}
	switch kerr {
	case sarama.ErrNotLeaderForPartition, sarama.ErrLeaderNotAvailable, sarama.ErrReplicaNotAvailable,
		sarama.ErrFencedLeaderEpoch, sarama.ErrUnknownLeaderEpoch, sarama.ErrKafkaStorageError,
		sarama.ErrOffsetNotAvailable, sarama.ErrRequestTimedOut, sarama.ErrNetworkException, sarama.ErrBrokerNotAvailable:
		return true
	}
	return false
}

// Follow reads the map topic into x until ctx ends: first to its end (then caughtUp is called),
// then every record as it is written. It returns ctx's error, or the error that stopped it.
func (s *Store) Follow(ctx context.Context, x *Index, caughtUp func()) error {
	return s.read(ctx, x, false, caughtUp)
}

// FollowAlways is Follow until ctx ends: a read that fails (the map partition's leader lost, the
// target unreachable) is logged and started again after a pause. caughtUp is called each time a
// read reaches the end.
func (s *Store) FollowAlways(ctx context.Context, x *Index, caughtUp func()) {
	for ctx.Err() == nil {
		err := s.Follow(ctx, x, caughtUp)
		if ctx.Err() != nil {
			return
		}
		s.cfg.Log.Warn("reading the offset-map topic failed; reading it again", zap.Error(err))
		select {
		case <-ctx.Done():
		case <-time.After(s.cfg.FollowPause):
		}
	}
}

func (s *Store) read(ctx context.Context, x *Index, stopAtEnd bool, caughtUp func()) error {
	end, err := s.cfg.Client.GetOffset(s.cfg.Topic, 0, sarama.OffsetNewest)
	if err != nil {
		return fmt.Errorf("read the end of offset-map topic %q: %w", s.cfg.Topic, err)
	}
	if end == 0 && stopAtEnd {
		return nil // nothing was ever written
	}
	consumer, err := sarama.NewConsumerFromClient(s.cfg.Client)
	if err != nil {
		return fmt.Errorf("read offset-map topic %q: %w", s.cfg.Topic, err)
	}
	pc, err := consumer.ConsumePartition(s.cfg.Topic, 0, sarama.OffsetOldest)
	if err != nil {
		_ = consumer.Close()
		return fmt.Errorf("read offset-map topic %q: %w", s.cfg.Topic, err)
	}
	defer func() {
		closeAll := func() { _ = pc.Close(); _ = consumer.Close() }
		if ctx.Err() != nil {
			// A fetch from a map partition leader that does not answer holds the close until the
			// client's read timeout: the stop does not wait for it. Closing the client, which the
			// owner of Client does next, ends it.
			go closeAll()
			return
		}
		closeAll()
	}()
	at := int64(-1) // offset of the last record read
	quiet := 0      // idle ticks since the last record
	done := end == 0
	if done {
		if caughtUp != nil {
			caughtUp()
		}
		if stopAtEnd {
			return nil
		}
	}
	badLog := rate.Sometimes{First: 1, Interval: time.Minute}
	idle := time.NewTicker(time.Second)
	defer idle.Stop()
	for {
		select {
		case m := <-pc.Messages():
			at, quiet = m.Offset, 0
			if err := x.Apply(m.Key, m.Value); err != nil {
				badLog.Do(func() {
					s.cfg.Log.Warn("ignoring a record of the offset-map topic", zap.Int64("offset", m.Offset), zap.Error(err))
				})
			}
		case err := <-pc.Errors():
			return fmt.Errorf("read offset-map topic %q: %w", s.cfg.Topic, err)
		case <-idle.C:
			// The topic is compacted: its last offsets may hold no record any more, so the end is
			// also reached when fetches up to it brought nothing for two seconds.
			if quiet++; !done && quiet >= 2 && pc.HighWaterMarkOffset() >= end {
				at = max(at, end-1)
			}
		case <-ctx.Done():
			return ctx.Err()
		}
		if !done && at+1 >= end {
			done = true
			if caughtUp != nil {
				caughtUp()
			}
			if stopAtEnd {
				return nil
			}
		}
	}
}

// Flusher writes the chunks of the recorders it holds to the map topic every interval, and those
// of a claim that ends at once, so that the next owner of the partition finds them. Each write
// returns within WriteTimeout (or its caller's deadline), so that neither a commit of source
// offsets nor the end of a claim waits longer for a map partition whose leader does not answer.
type Flusher struct {
	cfg FlusherConfig
	log *zap.Logger

	mu        sync.Mutex
	recorders map[*Recorder]struct{}
	// dirty holds the recorders that had chunks pending since a flush of every recorder last
	// took them: that flush asks them alone (at 10,000 idle partitions, asking every recorder
	// each interval was a tenth of an idle mirror's CPU). Under mu.
	dirty map[*Recorder]struct{}
	// waiting holds the recorders of the flushes waiting for writeMu, with how many flushes
	// wait for each: the write under way when they came is followed by one write that takes
	// them all (a group commit), not by one write each. Under mu.
	waiting map[*Recorder]int
	writeMu sync.Mutex // one flush at a time: a chunk's versions reach the topic in order
	errLog  rate.Sometimes
}

// DefaultWriteTimeout bounds a write of the map when FlusherConfig.WriteTimeout is not set.
const DefaultWriteTimeout = 5 * time.Second

// FlusherConfig configures a Flusher.
type FlusherConfig struct {
	Store    *Store
	Interval time.Duration
	// WriteTimeout bounds each write (DefaultWriteTimeout when zero). The mirror sets it to
	// commit.interval: a commit waits at most that long for the map before it goes on.
	WriteTimeout time.Duration
	// Index, when set, gets every chunk written.
	Index *Index
	// Written, when set, is told how many chunks each successful write held; Failed of each
	// write that failed (its chunks are written again).
	Written func(chunks int)
	Failed  func(error)
}

// NewFlusher returns a flusher; Run starts its periodic writes.
func NewFlusher(cfg FlusherConfig) *Flusher {
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	return &Flusher{cfg: cfg, log: cfg.Store.cfg.Log, recorders: make(map[*Recorder]struct{}),
		dirty: make(map[*Recorder]struct{}), waiting: make(map[*Recorder]int),
		errLog: rate.Sometimes{First: 1, Interval: time.Minute}}
}

// Add starts flushing r.
func (f *Flusher) Add(r *Recorder) {
	f.mu.Lock()
	f.recorders[r] = struct{}{}
	f.mu.Unlock()
	r.notify(f.dirtied)
}

// dirtied is told by r that it has chunks pending.
func (f *Flusher) dirtied(r *Recorder) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.recorders[r]; ok {
		f.dirty[r] = struct{}{}
	}
}

// Done writes what r holds and stops flushing it; it tries until ctx ends.
func (f *Flusher) Done(ctx context.Context, r *Recorder) error {
	f.mu.Lock()
	delete(f.recorders, r)
	delete(f.dirty, r)
	f.mu.Unlock()
	for {
		err := f.flush(ctx, []*Recorder{r}, false)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("offset map of %s/%d not written: %w", r.Topic(), r.Partition(), err)
		case <-time.After(f.cfg.Interval):
		}
	}
}

// Run flushes every interval until ctx ends, then once more (within WriteTimeout).
func (f *Flusher) Run(ctx context.Context) {
	t := time.NewTicker(f.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			_ = f.flush(context.Background(), nil, true)
			return
		case <-t.C:
			_ = f.flush(ctx, nil, true)
		}
	}
}

// Flush writes what every recorder holds now, by ctx's deadline or within WriteTimeout,
// whichever comes first. The mirror calls it before each commit of source offsets, so that a
// position committed on the source is in the map: a claim that starts there later continues the
// map without a hole.
func (f *Flusher) Flush(ctx context.Context) error { return f.flush(ctx, nil, true) }

// Write writes what rs hold now, in one write, by ctx's deadline or within WriteTimeout: when it
// returns nil, every copy they recorded before the call is in the map topic (a write another
// flush had taken is done, or handed back and written here). Exactly-once calls it before each
// transaction commits.
func (f *Flusher) Write(ctx context.Context, rs ...*Recorder) error { return f.flush(ctx, rs, false) }

// flush writes the pending chunks of rs, with those of every flush waiting behind it, and when
// every is set those of every recorder that had chunks pending; on failure each recorder gets
// its chunks back.
//
// Flushes come in bursts: under exactly-once each slot writes its recorders before each commit,
// and across a WAN a write takes a round trip. One write at a time, each for its own caller, made
// the last of a burst of 12 wait 12 round trips (a median of 490 ms at 80 ms RTT, the largest
// part of the commit). So a flush that gets the turn writes the chunks of those waiting too; each
// of them, when its turn comes, finds its chunks written (or handed back, and writes them).
// A flush of every recorder takes the dirty ones once it has the turn: a write before it that
// failed has handed its chunks back, and made their recorders dirty again, by then.
func (f *Flusher) flush(ctx context.Context, rs []*Recorder, every bool) error {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.WriteTimeout)
	defer cancel()
	f.wait(rs, 1)
	f.writeMu.Lock()
	defer f.writeMu.Unlock()
	f.wait(rs, -1)
	if !every && !slices.ContainsFunc(rs, (*Recorder).hasPending) {
		// A write before this one took them all and succeeded (one that failed handed them
		// back): the waiting ones are taken by whichever of them still has something to write.
		// Collecting them here made each of 10,000 claims ending at once scan all the others.
		return nil
	}
	rs = f.withWaiting(rs, every)
	var all []*Chunk
	pending := make([][]*Chunk, len(rs))
	for i, r := range rs {
		pending[i] = r.Pending()
		all = append(all, pending[i]...)
	}
	err := f.cfg.Store.Write(ctx, all)
	if err != nil {
		for i, r := range rs {
			r.Retry(pending[i])
		}
		if f.cfg.Failed != nil {
			f.cfg.Failed(err)
		}
		f.errLog.Do(func() {
			f.log.Warn("offset map not written; retrying (group offsets are translated from what was written)", zap.Error(err))
		})
		return err
	}
	if f.cfg.Index != nil {
		for _, c := range all {
			f.cfg.Index.Put(c)
		}
	}
	if f.cfg.Written != nil && len(all) > 0 {
		f.cfg.Written(len(all))
	}
	return nil
}

// wait counts rs as waiting for a write (by 1) or no longer (by -1).
func (f *Flusher) wait(rs []*Recorder, by int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range rs {
		if f.waiting[r] += by; f.waiting[r] <= 0 {
			delete(f.waiting, r)
		}
	}
}

// withWaiting returns rs and the recorders other flushes wait to write, each once, and with
// dirty those that had chunks pending (taking them out of the dirty set).
func (f *Flusher) withWaiting(rs []*Recorder, dirty bool) []*Recorder {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.waiting) == 0 && (!dirty || len(f.dirty) == 0) {
		return rs
	}
	seen := make(map[*Recorder]bool, len(rs))
	for _, r := range rs {
		seen[r] = true
	}
	out := slices.Clone(rs)
	add := func(r *Recorder) {
		if !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	for r := range f.waiting {
		add(r)
	}
	if dirty {
		for r := range f.dirty {
			add(r)
		}
		clear(f.dirty)
	}
	return out
}

// SourceProber asks the source whether offsets hold records, by reading from the first one. It
// remembers, per partition and start, how far the source was seen to hold no record, so that
// many groups at the same position cost one read.
type SourceProber struct {
	// Consumer reads the source with the mirror's isolation level.
	Consumer sarama.Consumer
	// Wait bounds how long one probe waits for a record (several fetches' max wait).
	Wait time.Duration

	mu    sync.Mutex // a sarama consumer reads a partition once at a time
	empty map[probeKey]int64
}

type probeKey struct {
	topic     string
	partition int32
	from      int64
}

// NoRecords implements Prober.
func (p *SourceProber) NoRecords(ctx context.Context, topic string, partition int32, from, to int64) (bool, error) {
	if from >= to {
		return true, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	k := probeKey{topic, partition, from}
	if until, ok := p.empty[k]; ok && to <= until {
		return true, nil
	}
	until, err := p.emptyUntil(ctx, topic, partition, from)
	if err != nil {
		return false, err
	}
	if until < 0 {
		// Nothing arrived: nothing to read below the high watermark the fetches saw. Records of
		// a transaction still open there may yet commit, so only [from, to) is taken as settled:
		// a group reading committed records cannot be past an undecided one.
		if hw := -until; to > hw {
			return false, nil
		}
		until = to
	}
	if p.empty == nil || len(p.empty) > 100000 {
		p.empty = make(map[probeKey]int64)
	}
	p.empty[k] = until
	return to <= until, nil
}

// emptyUntil returns the offset of the first record at or after from: [from, that) holds no
// record. When none arrives within Wait it returns minus the high watermark the fetches saw.
func (p *SourceProber) emptyUntil(ctx context.Context, topic string, partition int32, from int64) (int64, error) {
	pc, err := p.Consumer.ConsumePartition(topic, partition, from)
	if err != nil {
		return from, err
	}
	defer pc.Close()
	t := time.NewTimer(p.Wait)
	defer t.Stop()
	select {
	case m := <-pc.Messages():
		return m.Offset, nil
	case err := <-pc.Errors():
		return from, err
	case <-t.C:
		return -max(from, pc.HighWaterMarkOffset()), nil
	case <-ctx.Done():
		return from, ctx.Err()
	}
}
