package group

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/IBM/sarama"
)

// The group requests, one function each, at the versions sarama's own ConsumerGroup sends for the
// client's Kafka version. None retries: the member's loop decides what an error means.

// errKind says what an error from a group request asks the member to do.
type errKind int

const (
	// kindRetry: the coordinator moved or is loading, or the network failed: find the
	// coordinator again and retry after a backoff, keeping the member id and what is owned.
	kindRetry errKind = iota
	// kindRejoin: a rebalance is under way (REBALANCE_IN_PROGRESS): join again at once, keeping
	// what is owned (the cooperative protocol).
	kindRejoin
	// kindLost: the member is no longer in the generation (UNKNOWN_MEMBER_ID,
	// ILLEGAL_GENERATION): its partitions may be another member's already.
	kindLost
	// kindFatal: retrying cannot help (FENCED_INSTANCE_ID: another process runs with the same
	// instance id; INCONSISTENT_GROUP_PROTOCOL: another slot count; authorization; bad
	// timeouts; the group is full).
	kindFatal
)

func classify(err error) errKind {
	if errors.Is(err, ErrSessionLost) {
		return kindLost
	}
	var kerr sarama.KError
	if !errors.As(err, &kerr) {
		return kindRetry // network, closed broker, metadata: transient
	}
	switch kerr {
	case sarama.ErrRebalanceInProgress:
		return kindRejoin
	case sarama.ErrUnknownMemberId, sarama.ErrIllegalGeneration:
		return kindLost
	case sarama.ErrFencedInstancedId, sarama.ErrInconsistentGroupProtocol, sarama.ErrGroupAuthorizationFailed,
		sarama.ErrInvalidSessionTimeout, sarama.ErrGroupMaxSizeReached, sarama.ErrUnsupportedVersion,
		sarama.ErrInvalidGroupId:
		return kindFatal
	default:
		return kindRetry
	}
}

// coordinatorMoved reports an error after which the cached coordinator must be looked up again.
func coordinatorMoved(err error) bool {
	var kerr sarama.KError
	if !errors.As(err, &kerr) {
		return true
	}
	return kerr == sarama.ErrNotCoordinatorForConsumer || kerr == sarama.ErrConsumerCoordinatorNotAvailable
}

func ms(d time.Duration) int32 { return int32(d / time.Millisecond) }

func (m *Member) instanceID() *string {
	if m.cfg.InstanceID == "" {
		return nil
	}
	id := m.cfg.InstanceID
	return &id
}

// joinGroup sends one JoinGroup offering the cooperative protocol first and, unless the member
// owns partitions in a cooperative generation, the eager one second and the previous release's
// (Config.Previous) last.
func (m *Member) joinGroup(b *sarama.Broker, memberID string, topics []string, owned Partitions, gen int32, prevProtocol string) (*sarama.JoinGroupResponse, error) {
	req := sarama.NewJoinGroupRequest(m.version)
	req.GroupId = m.cfg.Group
	req.MemberId = memberID
	req.SessionTimeout = ms(m.cfg.SessionTimeout)
	req.RebalanceTimeout = ms(m.cfg.RebalanceTimeout)
	req.ProtocolType = "consumer"
	if req.Version >= 5 {
		req.GroupInstanceId = m.instanceID()
	}
	// The eager protocols are offered as further choices only by a member that owns nothing or
	// runs eager already: a member owning partitions in a cooperative generation must never let
	// the group go eager, where a leader would hand out what it still owns (see the package doc).
	offers := []sarama.BalanceStrategy{m.cfg.Strategy}
	names := []string{m.coop}
	if owned.Len() == 0 || prevProtocol != m.coop {
		offers, names = append(offers, m.cfg.Strategy), append(names, m.eager)
		if m.previous != nil {
			offers, names = append(offers, m.previous), append(names, m.previous.Name())
		}
	}
	for i, name := range names {
		meta, err := subscription(offers[i], memberID, topics, owned, gen)
		if err != nil {
			return nil, err
		}
		if err := req.AddGroupProtocolMetadata(name, meta); err != nil {
			return nil, fmt.Errorf("encode subscription for %s: %w", name, err)
		}
	}
	resp, err := b.JoinGroup(req)
	if err != nil {
		return nil, fmt.Errorf("join group %q: %w", m.cfg.Group, err)
	}
	if errors.Is(resp.Err, sarama.ErrInconsistentGroupProtocol) {
		return resp, fmt.Errorf("join group %q offering the protocols %q: the group's members run none of them "+
			"(another delivery.slots, or an earlier release with another consumer.rebalance_strategy): "+
			"give every member the same delivery.slots and consumer.rebalance_strategy: %w", m.cfg.Group, names, resp.Err)
	}
	if !errors.Is(resp.Err, sarama.ErrNoError) {
		return resp, fmt.Errorf("join group %q: %w", m.cfg.Group, resp.Err)
	}
	return resp, nil
}

// syncGroup sends the generation's SyncGroup: the leader's carries every member's assignment
// with the protocol's user data, a follower's none. It returns this member's assignment.
func (m *Member) syncGroup(b *sarama.Broker, gen Generation, p sarama.BalanceStrategyPlan) (Partitions, error) {
	req := &sarama.SyncGroupRequest{GroupId: m.cfg.Group, MemberId: gen.MemberID, GenerationId: gen.ID}
	switch v := m.version; {
	case v.IsAtLeast(sarama.V2_5_0_0):
		req.Version = 5
	case v.IsAtLeast(sarama.V2_4_0_0):
		req.Version = 4
	case v.IsAtLeast(sarama.V2_3_0_0):
		req.Version = 3
	case v.IsAtLeast(sarama.V2_0_0_0):
		req.Version = 2
	case v.IsAtLeast(sarama.V0_11_0_0):
		req.Version = 1
	}
	if req.Version >= 3 {
		req.GroupInstanceId = m.instanceID()
	}
	if req.Version >= 5 {
		typ, name := "consumer", gen.Protocol
		req.ProtocolType, req.ProtocolName = &typ, &name
	}
	s := m.strategyOf(gen.Protocol)
	for _, id := range slices.Sorted(maps.Keys(p)) {
		ud, err := s.AssignmentData(id, p[id], gen.ID)
		if err != nil {
			return nil, fmt.Errorf("%s user data for member %s: %w", s.Name(), id, err)
		}
		if err := req.AddGroupAssignmentMember(id, &sarama.ConsumerGroupMemberAssignment{Topics: p[id], UserData: ud}); err != nil {
			return nil, fmt.Errorf("encode assignment of member %s: %w", id, err)
		}
	}
	resp, err := b.SyncGroup(req)
	if err != nil {
		return nil, fmt.Errorf("sync group %q generation %d: %w", m.cfg.Group, gen.ID, err)
	}
	if !errors.Is(resp.Err, sarama.ErrNoError) {
		return nil, fmt.Errorf("sync group %q generation %d: %w", m.cfg.Group, gen.ID, resp.Err)
	}
	a, err := resp.GetMemberAssignment()
	if err != nil {
		return nil, fmt.Errorf("decode assignment of generation %d: %w", gen.ID, err)
	}
	out := make(Partitions, len(a.Topics))
	for t, parts := range a.Topics {
		if len(parts) == 0 {
			continue
		}
		ps := slices.Clone(parts)
		slices.Sort(ps)
		out[t] = slices.Compact(ps)
	}
	return out, nil
}

func (m *Member) heartbeatOnce(b *sarama.Broker, gen Generation) error {
	req := &sarama.HeartbeatRequest{GroupId: m.cfg.Group, MemberId: gen.MemberID, GenerationId: gen.ID}
	switch v := m.version; {
	case v.IsAtLeast(sarama.V2_4_0_0):
		req.Version = 4
	case v.IsAtLeast(sarama.V2_3_0_0):
		req.Version = 3
	case v.IsAtLeast(sarama.V2_0_0_0):
		req.Version = 2
	case v.IsAtLeast(sarama.V0_11_0_0):
		req.Version = 1
	}
	if req.Version >= 3 {
		req.GroupInstanceId = m.instanceID()
	}
	resp, err := b.Heartbeat(req)
	if err != nil {
		return fmt.Errorf("heartbeat group %q generation %d: %w", m.cfg.Group, gen.ID, err)
	}
	if !errors.Is(resp.Err, sarama.ErrNoError) {
		return fmt.Errorf("heartbeat group %q generation %d: %w", m.cfg.Group, gen.ID, resp.Err)
	}
	return nil
}

func (m *Member) leaveGroup(b *sarama.Broker, memberID string) error {
	req := &sarama.LeaveGroupRequest{GroupId: m.cfg.Group, MemberId: memberID}
	switch v := m.version; {
	case v.IsAtLeast(sarama.V3_2_0_0):
		req.Version = 5
	case v.IsAtLeast(sarama.V2_4_0_0):
		req.Version = 4
	case v.IsAtLeast(sarama.V2_0_0_0):
		req.Version = 2
	case v.IsAtLeast(sarama.V0_11_0_0):
		req.Version = 1
	}
	if req.Version >= 3 {
		member := sarama.MemberIdentity{MemberId: memberID}
		if req.Version >= 5 {
			reason := "kmirror member stopping"
			member.Reason = &reason
		}
		req.Members = []sarama.MemberIdentity{member}
	}
	resp, err := b.LeaveGroup(req)
	if err != nil {
		return fmt.Errorf("leave group %q: %w", m.cfg.Group, err)
	}
	if !errors.Is(resp.Err, sarama.ErrNoError) {
		return fmt.Errorf("leave group %q: %w", m.cfg.Group, resp.Err)
	}
	for _, mr := range resp.Members {
		if !errors.Is(mr.Err, sarama.ErrNoError) && !errors.Is(mr.Err, sarama.ErrUnknownMemberId) {
			return fmt.Errorf("leave group %q as %s: %w", m.cfg.Group, memberID, mr.Err)
		}
	}
	return nil
}
