package group

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap"

	"github.com/kmirror/kmirror/pkg/slots"
)

// CooperativeSuffix ends the name of the cooperative protocol a member offers first:
// "kmirror-slots-v1/8" (the eager slot strategy, slots.Strategy.Name) becomes
// "kmirror-slots-v1/8/cooperative". It keeps the slot count in the name, so the coordinator
// still refuses a member configured with another one (INCONSISTENT_GROUP_PROTOCOL).
const CooperativeSuffix = "/cooperative"

// Partitions are topic partitions, by topic; each topic's partitions ascending and unique.
type Partitions map[string][]int32

// Generation is one generation of the group as this member sees it.
type Generation struct {
	// MemberID is the id the coordinator gave the member.
	MemberID string
	// ID is the generation id; commits carry it.
	ID int32
	// Protocol is the protocol the coordinator selected: CooperativeProtocol or the eager one.
	Protocol string
	// Leader is true when this member computed the generation's assignment.
	Leader bool
}

// Handler is told what the member owns. Its methods are called one at a time, from the member's
// goroutine, never concurrently; while one runs, the member keeps heartbeating.
type Handler interface {
	// Assigned hands partitions to the member in generation gen: no other member owns them
	// (see the package invariant). ctx is cancelled when the member stops.
	Assigned(ctx context.Context, gen Generation, added Partitions)
	// Revoked takes partitions back in generation gen. It must return only once nothing more
	// of them will be written and their positions are committed (commits under gen are
	// accepted: Member.Commit), because the member then tells the group it no longer owns them
	// and another member may get them. At shutdown it is called with a context that is not
	// cancelled, for everything the member owns; the owner bounds its own drain.
	Revoked(ctx context.Context, gen Generation, revoked Partitions)
	// Lost says the member is no longer in the group (its session expired, its generation is
	// stale, or its instance id was taken over): another member may already own the
	// partitions. Stop writing them at once and do not commit them.
	Lost(ctx context.Context, lost Partitions)
}

// Syncer is a Handler that is also told each generation the member synced, after the
// generation's revocations and additions, with everything it owns then (even when nothing
// changed for it: another member joined or left). Optional.
type Syncer interface {
	Synced(ctx context.Context, gen Generation, owned Partitions)
}

// Config configures a Member.
type Config struct {
	// Client is the source cluster's sarama client: the coordinator, metadata and request
	// versions (Client.Config().Version) come from it. Required; the member does not close it.
	Client sarama.Client
	// Group is the consumer group id (group.id). Required.
	Group string
	// Topics the member subscribes to. Required (at least one); see Member.Subscribe.
	Topics []string
	// Strategy is the slot strategy that plans the assignment. Required.
	Strategy *slots.Strategy
	// Handler is told what the member owns. Required.
	Handler Handler
	// Previous is the assignment of the members of an earlier release, that joined with
	// sarama's ConsumerGroup (sarama's sticky, range or roundrobin strategy): offered last, so
	// that a rolling upgrade can add this member to a group of them (see Upgrades in the
	// package doc). nil, or one named as Strategy is, offers nothing more.
	Previous sarama.BalanceStrategy
	// InstanceID makes the member static (group.instance.id, KIP-345): it does not leave the
	// group when it stops, and a restart within SessionTimeout gets its partitions back
	// without a rebalance. Needs Kafka 2.3 (Client.Config().Version). Default: dynamic.
	InstanceID string
	// SessionTimeout is how long the coordinator keeps the member without a heartbeat
	// (session.timeout.ms). Default: Client.Config().Consumer.Group.Session.Timeout.
	SessionTimeout time.Duration
	// HeartbeatInterval is the time between heartbeats (heartbeat.interval.ms); less than
	// SessionTimeout. Default: Client.Config().Consumer.Group.Heartbeat.Interval.
	HeartbeatInterval time.Duration
	// RebalanceTimeout is how long the coordinator waits for members to rejoin, so how long
	// Handler.Revoked may take (max.poll.interval.ms). Default:
	// Client.Config().Consumer.Group.Rebalance.Timeout.
	RebalanceTimeout time.Duration
	// MetadataInterval is how often the leader checks the subscribed topics' partition
	// counts, and starts a rebalance when one changed. Default: 10s.
	MetadataInterval time.Duration
	// RetryBackoff and RetryBackoffMax bound the exponential backoff between attempts after a
	// coordinator or network error. Defaults: 100ms and 5s.
	RetryBackoff    time.Duration
	RetryBackoffMax time.Duration
	// Logger logs joins, assignments and errors. Default: no logs.
	Logger *zap.Logger
}

// ErrConfig is wrapped by every error New returns for a bad Config.
var ErrConfig = errors.New("invalid group member configuration")

func (c *Config) setDefaults() {
	if c.Client == nil {
		return
	}
	sc := c.Client.Config()
	if c.SessionTimeout == 0 {
		c.SessionTimeout = sc.Consumer.Group.Session.Timeout
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = sc.Consumer.Group.Heartbeat.Interval
	}
	if c.RebalanceTimeout == 0 {
		c.RebalanceTimeout = sc.Consumer.Group.Rebalance.Timeout
	}
	if c.MetadataInterval == 0 {
		c.MetadataInterval = 10 * time.Second
	}
	if c.RetryBackoff == 0 {
		c.RetryBackoff = 100 * time.Millisecond
	}
	if c.RetryBackoffMax == 0 {
		c.RetryBackoffMax = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
}

func (c *Config) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrConfig)
	}
	switch {
	case c.Client == nil:
		return bad("Client is nil: the member needs the source cluster's sarama client")
	case c.Group == "":
		return bad("Group is empty: set the consumer group id")
	case len(c.Topics) == 0:
		return bad("Topics is empty: subscribe to at least one topic")
	case c.Strategy == nil:
		return bad("Strategy is nil: build one with slots.NewStrategy")
	case c.Handler == nil:
		return bad("Handler is nil")
	case c.SessionTimeout <= 0:
		return bad("SessionTimeout = %v, want > 0", c.SessionTimeout)
	case c.HeartbeatInterval <= 0 || c.HeartbeatInterval >= c.SessionTimeout:
		return bad("HeartbeatInterval = %v, want > 0 and below SessionTimeout (%v); a third of it is usual",
			c.HeartbeatInterval, c.SessionTimeout)
	case c.RebalanceTimeout <= 0:
		return bad("RebalanceTimeout = %v, want > 0", c.RebalanceTimeout)
	case c.MetadataInterval < 0 || c.RetryBackoff < 0 || c.RetryBackoffMax < c.RetryBackoff:
		return bad("MetadataInterval = %v, RetryBackoff = %v, RetryBackoffMax = %v: want ≥ 0 and RetryBackoffMax ≥ RetryBackoff",
			c.MetadataInterval, c.RetryBackoff, c.RetryBackoffMax)
	case c.InstanceID != "" && !c.Client.Config().Version.IsAtLeast(sarama.V2_3_0_0):
		return bad("InstanceID %q needs Kafka ≥ 2.3 (static membership, JoinGroup v5); the client speaks %v",
			c.InstanceID, c.Client.Config().Version)
	}
	for i, t := range c.Topics {
		if t == "" {
			return bad("Topics[%d] is empty", i)
		}
	}
	const maxMs = int64(^uint32(0) >> 1) // the protocol's int32 milliseconds
	if c.SessionTimeout.Milliseconds() > maxMs || c.RebalanceTimeout.Milliseconds() > maxMs {
		return bad("SessionTimeout = %v, RebalanceTimeout = %v: want at most %v (the protocol's int32 milliseconds)",
			c.SessionTimeout, c.RebalanceTimeout, time.Duration(maxMs)*time.Millisecond)
	}
	return nil
}

// CooperativeProtocol returns the name of the cooperative protocol for a slot strategy.
func CooperativeProtocol(s *slots.Strategy) string {
	return slots.StrategyName + "/" + strconv.Itoa(s.Slots()) + CooperativeSuffix
}
