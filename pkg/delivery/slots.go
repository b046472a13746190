package delivery

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/kmirror/kmirror/pkg/slots"
	"github.com/kmirror/kmirror/pkg/source"
)

// Config configures Slots.
type Config struct {
	// Slots is the slot count (delivery.slots); Prefix names the transactional ids
	// (slots.TransactionalID).
	Slots  int
	Prefix string
	// Group is the target group that holds the source positions (delivery.positions_group).
	Group string
	// Legacy, when set, is the positions group's name in earlier versions, read for the
	// partitions that have no position in Group (an upgrade resumes where the old version
	// stopped).
	Legacy string
	// Recover, when set, returns the source group's committed offsets of claims: a partition
	// with no position in Group nor Legacy resumes there (its positions expired, or the mirror
	// ran at-least-once until now) rather than at consumer.initial_offset.
	Recover func(claims map[string][]int32) (map[source.TopicPartition]source.Committed, error)
	// Recovered is told, once per session and source, how many positions were not found in
	// Group and where they came from: "legacy_positions_group", "source_group" or "none" (the
	// partition starts at consumer.initial_offset).
	Recovered func(from string, n int)
	// Refresh is how often positions without a transaction in that time are committed again
	// (delivery.positions_refresh; Keep).
	Refresh time.Duration
	// Open opens a slot's transactional producer.
	Open Open
	// Bound is the batch bound a slot's producer opens with; a worker rebounds it for the
	// records it carries.
	Bound  int
	Limits Limits
	// Target reads the positions back (OffsetFetch to Group's coordinator on the target).
	Target sarama.Client
	// Metadata is the metadata stored with a source topic's positions (its topic ID).
	Metadata func(sourceTopic string) string
	Observer Observer
	// Tracer, when set, gives every transaction a "kmirror.commit" span.
	Tracer trace.Tracer
	Log    *zap.Logger
}

// Slots holds the transactional producers of the slots this member owns in the current session
// of the source group.
type Slots struct {
	cfg  Config
	mu   sync.Mutex // Begin and Close
	txns atomic.Pointer[map[int]*Txn]
}

// New returns the slots of a mirror; Begin opens them for a session.
func New(cfg Config) (*Slots, error) {
	if err := (slots.Config{Slots: cfg.Slots}).Validate(); err != nil {
		return nil, err
	}
	if cfg.Open == nil || cfg.Target == nil || cfg.Group == "" || cfg.Prefix == "" {
		return nil, errors.New("delivery: a producer opener, a target client, the positions group and an id prefix are required")
	}
	if cfg.Metadata == nil {
		cfg.Metadata = func(string) string { return "" }
	}
	if cfg.Observer == nil {
		cfg.Observer = NopObserver{}
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if cfg.Recovered == nil {
		cfg.Recovered = func(string, int) {}
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = time.Hour
	}
	s := &Slots{cfg: cfg}
	empty := map[int]*Txn{}
	s.txns.Store(&empty)
	return s, nil
}

// Of returns the slot of a source partition.
func (s *Slots) Of(topic string, partition int32) int { return slots.Of(topic, partition, s.cfg.Slots) }

// Txn returns the transactional producer of slot in the current session, or nil when this member
// does not own the slot.
func (s *Slots) Txn(slot int) *Txn { return (*s.txns.Load())[slot] }

// Begin starts a session that claims the partitions of claims (source topics): it closes the
// previous session's producers and opens one for every slot the claims fall in. Opening one
// initialises its transactional id, which completes or aborts the transaction its previous
// holder left open and fences that holder; only after Begin may the slots' positions be read.
// Every claim of the previous session has drained, so none of its producers holds a record.
func (s *Slots) Begin(ctx context.Context, claims map[string][]int32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeLocked()
	owned := make(map[int]bool)
	for topic, parts := range claims {
		for _, p := range parts {
			owned[s.Of(topic, p)] = true
		}
	}
	ids := slices.Sorted(maps.Keys(owned))
	start := time.Now()
	txns, err := s.open(ids)
	s.txns.Store(&txns)
	if err != nil {
		return fmt.Errorf("open the transactional producers of this member's slots: %w", err)
	}
	s.cfg.Log.Info("opened the transactional producers of this member's slots (earlier holders fenced)",
		zap.Ints("slots", ids), zap.Duration("took", time.Since(start)))
	return nil
}

// Open is Begin for a member whose partitions are added while others stay (the cooperative
// protocol, pkg/group): it opens a producer for every slot of claims that has none, fencing
// its previous holder, and keeps the producers of the slots already open, whose transactions
// go on. A slot moves between members whole, so a slot this member has open was never given
// to another meanwhile.
func (s *Slots) Open(ctx context.Context, claims map[string][]int32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := *s.txns.Load()
	want := make(map[int]bool)
	for topic, parts := range claims {
		for _, p := range parts {
			if sl := s.Of(topic, p); cur[sl] == nil {
				want[sl] = true
			}
		}
	}
	if len(want) == 0 {
		return nil
	}
	ids := slices.Sorted(maps.Keys(want))
	start := time.Now()
	txns, err := s.open(ids)
	maps.Copy(txns, cur)
	s.txns.Store(&txns)
	if err != nil {
		return fmt.Errorf("open the transactional producers of this member's slots: %w", err)
	}
	s.cfg.Log.Info("opened the transactional producers of the slots added to this member (earlier holders fenced)",
		zap.Ints("slots", ids), zap.Duration("took", time.Since(start)))
	return nil
}

// open opens the transactional producers of the slots ids, up to eight at a time, each fencing
// the slot's previous holder. It returns those it opened, also when others failed (err), so
// that the caller keeps them to close.
func (s *Slots) open(ids []int) (map[int]*Txn, error) {
	opened := make([]*Txn, len(ids))
	var g errgroup.Group
	g.SetLimit(8)
	for i, sl := range ids {
		g.Go(func() error {
			t, err := newTxn(sl, slots.TransactionalID(s.cfg.Prefix, sl), s.cfg.Bound, &s.cfg)
			if err != nil {
				return fmt.Errorf("slot %d: %w", sl, err)
			}
			opened[i] = t
			return nil
		})
	}
	err := g.Wait()
	txns := make(map[int]*Txn, len(ids))
	for i, t := range opened {
		if t != nil {
			txns[ids[i]] = t
		}
	}
	return txns, err
}

// Release closes the producers of the slots of released that no partition of owned (what the
// member still claims) falls in; their partitions have drained, so they hold no record.
func (s *Slots) Release(released, owned map[string][]int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keep := make(map[int]bool)
	for topic, parts := range owned {
		for _, p := range parts {
			keep[s.Of(topic, p)] = true
		}
	}
	cur := *s.txns.Load()
	txns := maps.Clone(cur)
	var closing []*Txn
	for topic, parts := range released {
		for _, p := range parts {
			sl := s.Of(topic, p)
			if t := txns[sl]; t != nil && !keep[sl] {
				closing = append(closing, t)
				delete(txns, sl)
			}
		}
	}
	s.txns.Store(&txns)
	var wg sync.WaitGroup
	for _, t := range closing {
		wg.Go(func() {
			if left := t.Close(); len(left) > 0 {
				s.cfg.Log.Warn("closed a transactional producer with a transaction open; its records were not committed "+
					"and will be mirrored again", zap.String("transactional_id", t.ID()), zap.Int("records", len(left)))
			}
		})
	}
	wg.Wait()
}

// Close shuts every producer down; records of transactions still open (none, after a drain)
// were not committed.
func (s *Slots) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeLocked()
}

func (s *Slots) closeLocked() {
	old := *s.txns.Load()
	empty := map[int]*Txn{}
	s.txns.Store(&empty)
	var wg sync.WaitGroup
	for _, t := range old {
		wg.Go(func() {
			if left := t.Close(); len(left) > 0 {
				s.cfg.Log.Warn("closed a transactional producer with a transaction open; its records were not committed "+
					"and will be mirrored again", zap.String("transactional_id", t.ID()), zap.Int("records", len(left)))
			}
		})
	}
	wg.Wait()
}

// All returns the producers of the current session.
func (s *Slots) All() []*Txn {
	m := *s.txns.Load()
	out := make([]*Txn, 0, len(m))
	for _, t := range m {
		out = append(out, t)
	}
	return out
}

// AbortAll makes sure no producer writes anything more (see Txn.Abort). It does not block.
func (s *Slots) AbortAll() {
	for _, t := range *s.txns.Load() {
		t.Abort()
	}
}

// Positions reads the stored source position of every partition of claims (source topics,
// named target(topic) on the target) from the positions group, waiting while a transaction
// holding one is still pending (RequireStable). A partition without one there is read from the
// legacy group, then from the source group (Recover), logged and counted (Recovered); one
// known nowhere is -1. Every position found is then committed again in the slot's producer
// (Refresh): a recovered one is stored in the positions group from now on, and every one is
// fresh for offsets.retention.minutes.
func (s *Slots) Positions(ctx context.Context, claims map[string][]int32, target func(string) string) (map[source.TopicPartition]source.Committed, error) {
	out, err := s.read(ctx, s.cfg.Group, claims, target)
	if err != nil {
		return nil, err
	}
	if s.cfg.Legacy != "" && s.cfg.Legacy != s.cfg.Group {
		if err := s.recover(out, "legacy_positions_group", func(missing map[string][]int32) (map[source.TopicPartition]source.Committed, error) {
			got, err := s.read(ctx, s.cfg.Legacy, missing, target)
			if errors.Is(err, sarama.ErrGroupAuthorizationFailed) {
				// A deployment whose ACLs name only the current group never ran under the old
				// name: nothing to recover there.
				return nil, nil
			}
			return got, err
		}); err != nil {
			return nil, err
		}
	}
	if s.cfg.Recover != nil {
		if err := s.recover(out, "source_group", s.cfg.Recover); err != nil {
			return nil, err
		}
	}
	if none := missing(out); len(none) > 0 {
		n := count(none)
		s.cfg.Recovered("none", n)
		s.cfg.Log.Info("no position is known for these partitions (not in the positions group, its former name, nor the "+
			"source group): they start at consumer.initial_offset", zap.Int("partitions", n), zap.Any("claims", none))
	}
	for tp, c := range out {
		if c.Offset < 0 {
			continue
		}
		if t := s.Txn(s.Of(tp.Topic, tp.Partition)); t != nil {
			t.Keep(target(tp.Topic), tp.Partition, c.Offset, c.Metadata)
		}
	}
	if err := s.refresh(ctx, 0); err != nil {
		return nil, fmt.Errorf("store the positions of the claims in group %q on the target: %w", s.cfg.Group, err)
	}
	return out, nil
}

// recover fills the partitions of out without a position from read, logging and counting
// them under from.
func (s *Slots) recover(out map[source.TopicPartition]source.Committed, from string,
	read func(map[string][]int32) (map[source.TopicPartition]source.Committed, error)) error {
	want := missing(out)
	if len(want) == 0 {
		return nil
	}
	got, err := read(want)
	if err != nil {
		return fmt.Errorf("recover the positions missing from group %q (%s): %w", s.cfg.Group, from, err)
	}
	found := make(map[string][]int32)
	for tp, c := range got {
		if cur, ok := out[tp]; ok && cur.Offset < 0 && c.Offset >= 0 {
			out[tp] = c
			found[tp.Topic] = append(found[tp.Topic], tp.Partition)
		}
	}
	if n := count(found); n > 0 {
		s.cfg.Recovered(from, n)
		s.cfg.Log.Warn("positions missing from the positions group on the target (expired, or never written there) were "+
			"recovered; the partitions resume there", zap.String("from", from), zap.String("positions_group", s.cfg.Group),
			zap.Int("partitions", n), zap.Any("claims", found))
	}
	return nil
}

// missing returns the partitions of out without a position.
func missing(out map[source.TopicPartition]source.Committed) map[string][]int32 {
	m := make(map[string][]int32)
	for tp, c := range out {
		if c.Offset < 0 {
			m[tp.Topic] = append(m[tp.Topic], tp.Partition)
		}
	}
	for _, parts := range m {
		slices.Sort(parts)
	}
	return m
}

func count(m map[string][]int32) int {
	n := 0
	for _, parts := range m {
		n += len(parts)
	}
	return n
}

// Keep commits the positions of the session's slots again every Refresh, until ctx ends (see
// keep.go).
func (s *Slots) Keep(ctx context.Context) {
	tick := time.NewTicker(s.cfg.Refresh)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if err := s.refresh(ctx, s.cfg.Refresh); err != nil {
			s.cfg.Log.Warn("committing the positions of idle partitions again failed; trying again at the next refresh",
				zap.Duration("positions_refresh", s.cfg.Refresh), zap.Error(err))
		}
	}
}

// refresh commits again, in every producer of the session, the positions not committed for
// stale.
func (s *Slots) refresh(ctx context.Context, stale time.Duration) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	now := time.Now()
	for _, t := range s.All() {
		g.Go(func() error {
			n, err := t.Refresh(gctx, now, stale)
			if err != nil {
				return fmt.Errorf("slot %d: %w", t.slot, err)
			}
			if n > 0 {
				s.cfg.Log.Debug("committed positions again", zap.String("transactional_id", t.ID()), zap.Int("positions", n))
			}
			return nil
		})
	}
	return g.Wait()
}

// read reads the positions of claims from group, waiting while one is pending.
func (s *Slots) read(ctx context.Context, group string, claims map[string][]int32, target func(string) string) (map[source.TopicPartition]source.Committed, error) {
	byTarget := make(map[string][]int32, len(claims))
	for topic, parts := range claims {
		byTarget[target(topic)] = parts
	}
	for attempt := 0; ; attempt++ {
		out, err := s.fetch(group, claims, byTarget, target)
		if err == nil {
			return out, nil
		}
		if !errors.Is(err, sarama.ErrUnstableOffsetCommit) && !retriable(err) || attempt == 100 {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (%w)", ctx.Err(), err)
		case <-time.After(min(time.Duration(attempt+1)*50*time.Millisecond, time.Second)):
		}
	}
}

func (s *Slots) fetch(group string, claims, byTarget map[string][]int32, target func(string) string) (map[source.TopicPartition]source.Committed, error) {
	client := s.cfg.Target
	coord, err := client.Coordinator(group)
	if err != nil {
		return nil, fmt.Errorf("find the coordinator of positions group %q on the target: %w", group, err)
	}
	req := sarama.NewOffsetFetchRequest(client.Config().Version, group, byTarget)
	if req.Version < 7 {
		return nil, fmt.Errorf("read the source positions from group %q: the target's Kafka version (target.version %s) must be 2.5 "+
			"or newer for exactly_once (OffsetFetch with require_stable)", group, client.Config().Version)
	}
	req.RequireStable = true
	resp, err := coord.FetchOffset(req)
	if err != nil {
		_ = client.RefreshCoordinator(group)
		return nil, fmt.Errorf("read the source positions from group %q on the target: %w", group, err)
	}
	out := make(map[source.TopicPartition]source.Committed)
	if kerr := resp.GroupError(); errors.Is(kerr, sarama.ErrGroupIDNotFound) {
		// No transaction has committed a position yet (some brokers answer so for a group
		// that holds no offsets).
		for topic, parts := range claims {
			for _, p := range parts {
				out[source.TopicPartition{Topic: topic, Partition: p}] = source.Committed{Offset: -1}
			}
		}
		return out, nil
	} else if !errors.Is(kerr, sarama.ErrNoError) {
		_ = client.RefreshCoordinator(group)
		return nil, fmt.Errorf("read the source positions from group %q on the target: %w", group, kerr)
	}
	for topic, parts := range claims {
		for _, p := range parts {
			cm := source.Committed{Offset: -1}
			if b := resp.GetBlock(target(topic), p); b != nil {
				if !errors.Is(b.Err, sarama.ErrNoError) {
					return nil, fmt.Errorf("read the source position of %s/%d from group %q on the target: %w", topic, p, group, b.Err)
				}
				cm = source.Committed{Offset: b.Offset, Metadata: b.Metadata}
			}
			out[source.TopicPartition{Topic: topic, Partition: p}] = cm
		}
	}
	return out, nil
}

// retriable reports errors of a coordinator that is moving or loading.
func retriable(err error) bool {
	return errors.Is(err, sarama.ErrNotCoordinatorForConsumer) || errors.Is(err, sarama.ErrOffsetsLoadInProgress) ||
		errors.Is(err, sarama.ErrConsumerCoordinatorNotAvailable) || errors.Is(err, sarama.ErrRequestTimedOut)
}
