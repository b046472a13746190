package group

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/cenkalti/backoff/v5"
	"go.uber.org/zap"
)

// ErrSessionLost is wrapped when no heartbeat reached the coordinator for a session timeout: the
// coordinator has removed the member by then, so its partitions are lost.
var ErrSessionLost = errors.New("group session lost")

// ErrRunning is returned by Run when the member runs already or ran before (a member joins once;
// build a new one to join again).
var ErrRunning = errors.New("group member already started")

// Member is one member of a consumer group, on the cooperative slot protocol (see the package
// doc). Build it with New, run it with Run; Commit and Fetch may be called from any goroutine.
type Member struct {
	cfg     Config
	log     *zap.Logger
	version sarama.KafkaVersion
	coop    string // cooperative protocol name, offered first
	eager   string // the slot strategy's own name (sarama's ConsumerGroup), offered second
	// previous is Config.Previous, offered last; nil when there is none or it is named as
	// the slot strategy.
	previous sarama.BalanceStrategy

	resub chan struct{} // Subscribe asks the loop to rejoin; capacity 1
	jc    joinConn      // used by the loop's goroutine only

	mu      sync.Mutex
	gen     Generation // the latest generation synced; ID -1 before the first
	owned   Partitions // assigned and neither revoked nor lost
	topics  []string
	planned map[string]int // partition counts the leader planned with
	started bool
	cancel  context.CancelFunc
	done    chan struct{}
}

// New validates cfg and returns a member that has not joined yet.
func New(cfg Config) (*Member, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("new group member: %w", err)
	}
	m := &Member{
		cfg:     cfg,
		log:     cfg.Logger.With(zap.String("group", cfg.Group)),
		version: cfg.Client.Config().Version,
		coop:    CooperativeProtocol(cfg.Strategy),
		eager:   cfg.Strategy.Name(),
		resub:   make(chan struct{}, 1),
		gen:     Generation{ID: -1},
		owned:   Partitions{},
		topics:  slices.Clone(cfg.Topics),
	}
	if p := cfg.Previous; p != nil && p.Name() != m.eager && p.Name() != m.coop {
		m.previous = p
	}
	if cfg.InstanceID != "" {
		m.log = m.log.With(zap.String("instance", cfg.InstanceID))
	}
	// A JoinGroup waits for the whole rebalance: its connection's read timeout must outlast
	// the rebalance timeout, as Kafka's own consumer sets it.
	conf := *cfg.Client.Config()
	conf.Net.ReadTimeout = max(conf.Net.ReadTimeout, cfg.RebalanceTimeout+5*time.Second)
	m.jc.conf = &conf
	return m, nil
}

// Generation returns the latest generation the member synced (ID -1 before the first).
func (m *Member) Generation() Generation {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.gen
}

// Owned returns what the member owns now: assigned, and neither revoked nor lost.
func (m *Member) Owned() Partitions {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.owned.Clone()
}

// Subscribe replaces the subscribed topics and rejoins, so that the group plans with them.
func (m *Member) Subscribe(topics []string) error {
	if len(topics) == 0 || slices.Contains(topics, "") {
		return fmt.Errorf("subscribe group %q to %q: want at least one topic, none empty: %w", m.cfg.Group, topics, ErrConfig)
	}
	m.mu.Lock()
	m.topics = slices.Clone(topics)
	m.mu.Unlock()
	select {
	case m.resub <- struct{}{}:
	default:
	}
	return nil
}

// Run joins the group and keeps the member in it until ctx is cancelled or an error no retry
// can mend (FENCED_INSTANCE_ID, INCONSISTENT_GROUP_PROTOCOL, an authorization error, ...), which
// it returns. On the way out it revokes everything the member still owns (Handler.Revoked, with
// heartbeats going on meanwhile) and then leaves the group, unless the member is static: a
// static member's partitions wait for it for the session timeout. Run returns nil when ctx was
// cancelled, after every goroutine it started has ended.
func (m *Member) Run(ctx context.Context) error {
	m.mu.Lock()
	if m.started {
		m.mu.Unlock()
		return fmt.Errorf("run group member of %q: %w", m.cfg.Group, ErrRunning)
	}
	ctx, cancel := context.WithCancel(ctx)
	m.started, m.cancel, m.done = true, cancel, make(chan struct{})
	m.mu.Unlock()
	defer close(m.done)
	defer cancel()

	err := m.loop(ctx)
	m.jc.close()
	m.stop(ctx)
	if err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

// Close stops a Run in progress (as cancelling its context does) and waits for it to return.
func (m *Member) Close() {
	m.mu.Lock()
	cancel, done := m.cancel, m.done
	m.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

// loop is the member's life: join, sync, apply the assignment, wait for the next rebalance.
func (m *Member) loop(ctx context.Context) error {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval, bo.MaxInterval = m.cfg.RetryBackoff, m.cfg.RetryBackoffMax
	bo.Reset()
	for ctx.Err() == nil {
		// The eager protocols (a group with an eager member in it) want every member to give up
		// everything before it joins.
		if g := m.Generation(); m.isEager(g.Protocol) {
			m.revoke(ctx, g, m.Owned())
		}
		gen, assigned, err := m.join(ctx)
		if err == nil {
			bo.Reset()
			err = m.member(ctx, gen, assigned)
		}
		if err == nil || ctx.Err() != nil {
			continue
		}
		switch classify(err) {
		case kindFatal:
			m.lose(ctx, err)
			return err
		case kindLost:
			m.lose(ctx, err)
			// After ErrSessionLost the member id is kept: a coordinator that failed over may
			// still know it (it restarts session timers when it loads the group), and one that
			// removed it answers UNKNOWN_MEMBER_ID. Joining under a new id would leave the old
			// one for the rebalance to wait for.
			if errors.Is(err, sarama.ErrUnknownMemberId) {
				m.setMemberID("")
			}
			// Rejoin soon, but not in a tight loop should the coordinator keep saying so.
			m.sleep(ctx, bo.NextBackOff())
		case kindRejoin:
			m.log.Info("rejoining group", zap.Error(err))
		case kindRetry:
			m.jc.close() // a network error leaves the connection in doubt; a moved coordinator makes it useless
			if coordinatorMoved(err) {
				if rerr := m.cfg.Client.RefreshCoordinator(m.cfg.Group); rerr != nil {
					m.log.Debug("refresh group coordinator", zap.Error(rerr))
				}
			}
			wait := bo.NextBackOff()
			m.log.Warn("group request failed; retrying", zap.Duration("backoff", wait), zap.Error(err))
			m.sleep(ctx, wait)
		}
	}
	return nil
}

// isEager reports whether protocol is one of the eager ones the member offers: the slot
// strategy's, or the previous release's.
func (m *Member) isEager(protocol string) bool {
	return protocol == m.eager || (m.previous != nil && protocol == m.previous.Name())
}

// strategyOf returns the strategy whose user data the protocol's assignments carry.
func (m *Member) strategyOf(protocol string) sarama.BalanceStrategy {
	if m.previous != nil && protocol == m.previous.Name() {
		return m.previous
	}
	return m.cfg.Strategy
}

// sleep waits for d or until ctx is done.
func (m *Member) sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// member applies one generation's assignment and stays in the generation until it must rejoin.
// It returns nil to rejoin at once, or the heartbeat's error.
func (m *Member) member(ctx context.Context, gen Generation, assigned Partitions) error {
	hb := m.startHeartbeat(ctx, gen)
	defer hb.stop()

	owned := m.Owned()
	revoked, added := diff(owned, assigned), diff(assigned, owned)
	m.mu.Lock()
	m.gen = gen
	m.mu.Unlock()
	if ctx.Err() != nil {
		// Stopping (join): stop revokes and commits what is owned under gen; nothing is added.
		return nil
	}
	m.log.Info("group generation synced", zap.Int32("generation", gen.ID), zap.String("member", gen.MemberID),
		zap.String("protocol", gen.Protocol), zap.Bool("leader", gen.Leader), zap.Int("assigned", assigned.Len()),
		zap.Int("revoked", revoked.Len()), zap.Int("added", added.Len()))
	if revoked.Len() > 0 {
		m.revoke(ctx, gen, revoked)
	}
	if added.Len() > 0 {
		m.mu.Lock()
		m.owned = union(m.owned, added)
		m.mu.Unlock()
		m.cfg.Handler.Assigned(ctx, gen, added)
	}
	if s, ok := m.cfg.Handler.(Syncer); ok {
		s.Synced(ctx, gen, m.Owned())
	}
	if revoked.Len() > 0 && gen.Protocol == m.coop {
		// Announce at once that the revoked partitions are free: the generation withheld
		// them from their new owners until then.
		return nil
	}

	var tick <-chan time.Time
	if gen.Leader && m.cfg.MetadataInterval > 0 {
		t := time.NewTicker(m.cfg.MetadataInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-hb.events:
			return err
		case <-m.resub:
			m.log.Info("subscription changed; rejoining")
			return nil
		case <-tick:
			if m.partitionsChanged() {
				m.log.Info("partitions of subscribed topics changed; rejoining")
				return nil
			}
		}
	}
}

// revoke hands partitions back through Handler.Revoked, and only then stops owning them.
func (m *Member) revoke(ctx context.Context, gen Generation, ps Partitions) {
	if ps.Len() == 0 {
		return
	}
	m.log.Info("revoking partitions", zap.Int32("generation", gen.ID), zap.Int("partitions", ps.Len()))
	m.cfg.Handler.Revoked(ctx, gen, ps)
	m.mu.Lock()
	m.owned = diff(m.owned, ps)
	m.mu.Unlock()
}

// lose drops everything owned and tells the handler: the member is out of the generation.
func (m *Member) lose(ctx context.Context, cause error) {
	m.mu.Lock()
	lost := m.owned
	m.owned = Partitions{}
	m.gen.ID = -1
	m.mu.Unlock()
	if lost.Len() == 0 {
		return
	}
	m.log.Warn("partitions lost", zap.Int("partitions", lost.Len()), zap.Error(cause))
	m.cfg.Handler.Lost(ctx, lost)
}

func (m *Member) setMemberID(id string) {
	m.mu.Lock()
	m.gen.MemberID = id
	m.mu.Unlock()
}

// join finds the coordinator, joins (twice when the coordinator wants a member id first,
// KIP-394), plans as the leader, and syncs. It returns the generation and this member's
// assignment.
func (m *Member) join(ctx context.Context) (Generation, Partitions, error) {
	coord, err := m.cfg.Client.Coordinator(m.cfg.Group)
	if err != nil {
		return Generation{}, nil, fmt.Errorf("find coordinator of group %q: %w", m.cfg.Group, err)
	}
	b, err := m.jc.to(coord)
	if err != nil {
		return Generation{}, nil, fmt.Errorf("connect to coordinator %s of group %q: %w", coord.Addr(), m.cfg.Group, err)
	}
	m.mu.Lock()
	prev, owned, topics := m.gen, m.owned.Clone(), slices.Clone(m.topics)
	m.mu.Unlock()

	memberID := prev.MemberID
	var resp *sarama.JoinGroupResponse
	for range 2 {
		resp, err = m.joinGroup(b, memberID, topics, owned, prev.ID, prev.Protocol)
		if errors.Is(err, sarama.ErrMemberIdRequired) {
			memberID = resp.MemberId
			m.setMemberID(memberID)
			continue
		}
		break
	}
	if err != nil {
		return Generation{}, nil, err
	}
	// A JoinGroup answered has moved the group to the new generation, even when ctx ended while
	// it waited: the member takes the generation at once, as Kafka's consumer does, so that the
	// commit of what it revokes on the way out is made under it, whether the SyncGroup that
	// follows succeeds or is refused (REBALANCE_IN_PROGRESS: another member joined, and the
	// group prepares its next rebalance in this generation). Under the generation it left the
	// coordinator refuses it (ILLEGAL_GENERATION). A SyncGroup refused because the member is
	// out of the group (UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION) loses its partitions (Run).
	m.setMemberID(resp.MemberId)
	gen := Generation{MemberID: resp.MemberId, ID: resp.GenerationId, Protocol: resp.GroupProtocol, Leader: resp.LeaderId == resp.MemberId}
	if gen.Protocol != m.coop && !m.isEager(gen.Protocol) {
		return Generation{}, nil, fmt.Errorf("join group %q: coordinator selected protocol %q, not one this member offered: %w",
			m.cfg.Group, gen.Protocol, sarama.ErrInconsistentGroupProtocol)
	}
	m.mu.Lock()
	m.gen = gen
	m.mu.Unlock()

	var p sarama.BalanceStrategyPlan
	if gen.Leader {
		if p, err = m.lead(resp, gen); err != nil {
			return Generation{}, nil, fmt.Errorf("lead generation %d of group %q: %w", gen.ID, m.cfg.Group, err)
		}
	}
	assigned, err := m.syncGroup(b, gen, p)
	if err != nil {
		return Generation{}, nil, err
	}
	return gen, assigned, nil
}

// lead computes the generation's assignment from the members' subscriptions and fresh metadata.
func (m *Member) lead(resp *sarama.JoinGroupResponse, gen Generation) (sarama.BalanceStrategyPlan, error) {
	members, err := resp.GetMembers()
	if err != nil {
		return nil, fmt.Errorf("decode member subscriptions: %w", err)
	}
	var topics []string
	for _, meta := range members {
		for _, t := range meta.Topics {
			if !slices.Contains(topics, t) {
				topics = append(topics, t)
			}
		}
	}
	parts, err := m.partitions(topics)
	if err != nil {
		return nil, err
	}
	var p sarama.BalanceStrategyPlan
	if m.previous != nil && gen.Protocol == m.previous.Name() {
		p, err = planPrevious(m.previous, members, parts)
	} else {
		p, err = plan(m.cfg.Strategy, gen.Protocol == m.coop, members, parts)
	}
	if err != nil {
		return nil, err
	}
	counts := make(map[string]int, len(parts))
	for t, ps := range parts {
		counts[t] = len(ps)
	}
	m.mu.Lock()
	m.planned = counts
	m.mu.Unlock()
	return p, nil
}

// partitions returns the partitions of the topics that exist, from refreshed metadata. A topic
// that does not exist (yet) has nothing to assign.
func (m *Member) partitions(topics []string) (map[string][]int32, error) {
	if err := m.cfg.Client.RefreshMetadata(topics...); err != nil && !errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
		return nil, fmt.Errorf("refresh metadata of %d topics: %w", len(topics), err)
	}
	out := make(map[string][]int32, len(topics))
	for _, t := range topics {
		ps, err := m.cfg.Client.Partitions(t)
		if errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
			m.log.Debug("subscribed topic does not exist", zap.String("topic", t))
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("partitions of topic %q: %w", t, err)
		}
		out[t] = ps
	}
	return out, nil
}

// partitionsChanged reports whether a subscribed topic's partition count differs from the one
// the leader planned with.
func (m *Member) partitionsChanged() bool {
	m.mu.Lock()
	topics, planned := slices.Clone(m.topics), m.planned
	m.mu.Unlock()
	parts, err := m.partitions(topics)
	if err != nil {
		m.log.Warn("check partitions of subscribed topics", zap.Error(err))
		return false
	}
	if len(parts) != len(planned) {
		return true
	}
	for t, ps := range parts {
		if n, ok := planned[t]; !ok || n != len(ps) {
			return true
		}
	}
	return false
}

// stop revokes what is still owned (heartbeating meanwhile, with a context that is not
// cancelled) and leaves the group unless the member is static.
func (m *Member) stop(ctx context.Context) {
	ctx = context.WithoutCancel(ctx)
	gen := m.Generation()
	if owned := m.Owned(); owned.Len() > 0 {
		hb := m.startHeartbeat(ctx, gen)
		m.revoke(ctx, gen, owned)
		hb.stop()
	}
	if m.cfg.InstanceID != "" || gen.MemberID == "" {
		return
	}
	b, err := m.cfg.Client.Coordinator(m.cfg.Group)
	if err == nil {
		err = m.leaveGroup(b, gen.MemberID)
	}
	if err != nil {
		m.log.Warn("leave group (the coordinator removes the member after the session timeout)", zap.Error(err))
		return
	}
	m.log.Info("left group", zap.String("member", gen.MemberID))
}

// heartbeat keeps one generation alive while the loop applies it and waits in it.
type heartbeat struct {
	cancel context.CancelFunc
	done   chan struct{}
	events chan error // one event, then the goroutine ends
}

func (h *heartbeat) stop() {
	h.cancel()
	<-h.done
}

// startHeartbeat heartbeats every HeartbeatInterval until stopped or until the coordinator
// answers something other than success; a coordinator it cannot reach is retried at the next
// beat, and ErrSessionLost is reported once none got through for a session timeout.
func (m *Member) startHeartbeat(ctx context.Context, gen Generation) *heartbeat {
	ctx, cancel := context.WithCancel(ctx)
	h := &heartbeat{cancel: cancel, done: make(chan struct{}), events: make(chan error, 1)}
	go func() {
		defer close(h.done)
		t := time.NewTicker(m.cfg.HeartbeatInterval)
		defer t.Stop()
		lastOK := time.Now()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			b, err := m.cfg.Client.Coordinator(m.cfg.Group)
			if err == nil {
				err = m.heartbeatOnce(b, gen)
			}
			if err == nil {
				lastOK = time.Now()
				continue
			}
			if classify(err) != kindRetry {
				h.events <- err
				return
			}
			if since := time.Since(lastOK); since >= m.cfg.SessionTimeout {
				h.events <- fmt.Errorf("no heartbeat of generation %d reached the coordinator for %v (session timeout %v; last error: %w): %w",
					gen.ID, since.Round(time.Millisecond), m.cfg.SessionTimeout, err, ErrSessionLost)
				return
			}
			if coordinatorMoved(err) {
				_ = m.cfg.Client.RefreshCoordinator(m.cfg.Group)
			}
			m.log.Warn("heartbeat failed; retrying", zap.Error(err))
		}
	}()
	return h
}

// joinConn is a connection of the member's own to the coordinator, for JoinGroup and SyncGroup
// only. Kafka answers a connection's requests one at a time, in order, and a JoinGroup is
// answered only when the rebalance completes: on the client's shared connection it would hold
// back every heartbeat, commit and fetch to that broker for the whole rebalance, which is what
// a cooperative rebalance must not do to the partitions that keep flowing.
type joinConn struct {
	conf *sarama.Config
	b    *sarama.Broker
}

// to returns the connection to coord, opening it when there is none to that address.
func (j *joinConn) to(coord *sarama.Broker) (*sarama.Broker, error) {
	if j.b != nil && j.b.Addr() == coord.Addr() {
		if ok, _ := j.b.Connected(); ok {
			return j.b, nil
		}
	}
	j.close()
	b := sarama.NewBroker(coord.Addr())
	if err := b.Open(j.conf); err != nil {
		return nil, err
	}
	if _, err := b.Connected(); err != nil { // waits for the dial
		_ = b.Close()
		return nil, err
	}
	j.b = b
	return b, nil
}

func (j *joinConn) close() {
	if j.b != nil {
		_ = j.b.Close()
		j.b = nil
	}
}
