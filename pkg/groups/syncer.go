package groups

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap"

	"github.com/kmirror/kmirror/pkg/offsetmap"
)

// Translator translates a source group's committed offset of topic/partition (source names) into
// the target offset where the group resumes. An error fails the group's plan; a translator that
// can give a partial answer returns it (NotYet or Unknown, with a Reason) and a nil error.
type Translator func(ctx context.Context, topic string, partition int32, committed int64) (offsetmap.Translation, error)

// Observer receives what Round does, for metrics. Plan and Apply called on their own (the CLI,
// an HTTP handler) report only through their return values.
type Observer interface {
	// Synced is called after each group a Round synced without error, with the number of
	// partitions it committed on the target (0 when nothing moved or the group is active there).
	Synced(group string, partitions int)
	// Round is called at the end of each Round with the number of groups it went through and the
	// number of partitions whose position could not be translated exactly (NotYet or Unknown).
	Round(at time.Time, groups int, untranslatable int)
	// Failed is called for each group a Round could not plan or apply.
	Failed(group string, err error)
	// CommittedByOthers is called when a Round finds that another client commits a target
	// group's offsets (ActionCommittedByOthers), once until the group is found otherwise.
	CommittedByOthers(group string)
}

// ErrOwnGroup is returned when asked to plan or apply kmirror's own consumer group.
var ErrOwnGroup = errors.New("kmirror's own consumer group is never synced")

// Config configures a Syncer.
type Config struct {
	// Source is an admin of the source cluster (ListConsumerGroups, ListConsumerGroupOffsets).
	// Required.
	Source sarama.ClusterAdmin
	// Target is not read: every request about a target group goes to its coordinator through
	// TargetClient, which looks the coordinator up again when it moved (an admin has a client
	// of its own, which would keep asking the broker it remembers). Optional; kept so that
	// callers that still pass it build.
	Target sarama.ClusterAdmin
	// TargetClient finds the target group's coordinator, to which the describes, offset fetches
	// and commits are sent; its Config().Version chooses the protocol versions. Required.
	TargetClient sarama.Client
	// Include and Exclude are regular expressions over group ids, anchored (each must match the
	// whole id, as topics.include does for topics). A group is synced by Round when it matches
	// an Include and no Exclude. Empty Include: no group is synced.
	Include, Exclude []string
	// Own is kmirror's own consumer group id on the source: never synced, whatever matches.
	Own string
	// Topics says whether a source topic is mirrored and what its target topic is called.
	// Required.
	Topics func(source string) (target string, mirrored bool)
	// Translate translates source positions into target positions. Required.
	Translate Translator
	// Owned, when set, restricts the sync to the source partitions it returns true for (the
	// daemon syncs only the partitions it owns). Nil: every partition.
	Owned func(topic string, partition int32) bool
	// Force allows moving a target group backwards (a committed offset ahead of the translated
	// one is replaced by it). Default false: such partitions are left alone and reported.
	Force bool
	// Observer receives Round's outcomes. Nil: none.
	Observer Observer
	// Log receives Run's lines. Nil: no logging.
	Log *zap.Logger
}

// Syncer syncs source consumer groups' positions onto the target.
type Syncer struct {
	cfg              Config
	include, exclude []*regexp.Regexp
	obs              Observer
	log              *zap.Logger
	written          *written
}

// New checks cfg and compiles its expressions; an error names the field or expression at fault.
func New(cfg Config) (*Syncer, error) {
	switch {
	case cfg.Source == nil:
		return nil, errors.New("groups: Config.Source (source cluster admin) is required")
	case cfg.TargetClient == nil:
		return nil, errors.New("groups: Config.TargetClient (target cluster client) is required")
	case cfg.Topics == nil:
		return nil, errors.New("groups: Config.Topics (which topics are mirrored) is required")
	case cfg.Translate == nil:
		return nil, errors.New("groups: Config.Translate is required")
	}
	s := &Syncer{cfg: cfg, obs: cfg.Observer, log: cfg.Log, written: newWritten()}
	var err error
	if s.include, err = compile("groups.include", cfg.Include); err != nil {
		return nil, err
	}
	if s.exclude, err = compile("groups.exclude", cfg.Exclude); err != nil {
		return nil, err
	}
	if s.obs == nil {
		s.obs = nopObserver{}
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	return s, nil
}

func compile(key string, exprs []string) ([]*regexp.Regexp, error) {
	out := make([]*regexp.Regexp, 0, len(exprs))
	for i, e := range exprs {
		r, err := regexp.Compile("^(?:" + e + ")$")
		if err != nil {
			return nil, fmt.Errorf("%s[%d] %q: %w", key, i, e, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// Match reports whether Round syncs group: it matches an Include, no Exclude, and is not Own.
func (s *Syncer) Match(group string) bool {
	if group == s.cfg.Own {
		return false
	}
	for _, r := range s.exclude {
		if r.MatchString(group) {
			return false
		}
	}
	for _, r := range s.include {
		if r.MatchString(group) {
			return true
		}
	}
	return false
}

// Matching lists the source's consumer groups that Round syncs, sorted. Groups of another
// protocol than consumer (Kafka Connect's workers, share groups) hold no consumer offsets and
// are left out.
func (s *Syncer) Matching(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list source consumer groups: %w", err)
	}
	all, err := s.cfg.Source.ListConsumerGroups()
	if err != nil {
		return nil, fmt.Errorf("list source consumer groups: %w", err)
	}
	var out []string
	for g, protocol := range all {
		// "": a group that only ever committed offsets (no member joined it).
		if (protocol == "consumer" || protocol == "") && s.Match(g) {
			out = append(out, g)
		}
	}
	slices.Sort(out)
	return out, nil
}

type nopObserver struct{}

func (nopObserver) Synced(string, int)        {}
func (nopObserver) Round(time.Time, int, int) {}
func (nopObserver) Failed(string, error)      {}
func (nopObserver) CommittedByOthers(string)  {}
