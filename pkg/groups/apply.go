package groups

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/IBM/sarama"
)

// Commit retries: a coordinator that moved or is loading is looked up again this many times.
const (
	commitAttempts = 3
	commitBackoff  = 200 * time.Millisecond
)

// Apply commits r's exact translations to the group on the target and returns r with each
// partition's Action. It reads the target group's state and committed offsets again first (r may
// be an old plan), then, in one OffsetCommit request, commits every partition whose translation
// is Exact and whose target committed offset is below it (or differs from it, with Force). An
// active target group gets no commit at all. The returned error names the partitions the
// coordinator refused; the report is returned with it.
func (s *Syncer) Apply(ctx context.Context, r Report) (Report, error) {
	if r.Group == s.cfg.Own {
		return r, fmt.Errorf("apply group %q: %w", r.Group, ErrOwnGroup)
	}
	r.Partitions = slices.Clone(r.Partitions)
	if slices.ContainsFunc(r.Partitions, exact) {
		others := r.CommittedByOthers // seen by the plan: reading the same offsets again does not clear it
		if err := s.readTarget(ctx, &r); err != nil {
			return r, fmt.Errorf("apply group %q: %w", r.Group, err)
		}
		r.CommittedByOthers = r.CommittedByOthers || others
	}
	var todo []int
	for i := range r.Partitions {
		p := &r.Partitions[i]
		switch {
		case !exact(*p):
			p.Action = ActionNotTranslatable
		case p.TargetCommitted == p.Target:
			p.Action = ActionUnchanged
		case p.TargetCommitted > p.Target && !s.cfg.Force:
			p.Action = ActionTargetAhead
		case r.Active:
			p.Action = ActionGroupActive
		case r.CommittedByOthers && !s.cfg.Force:
			p.Action = ActionCommittedByOthers
		default:
			todo = append(todo, i)
		}
	}
	if len(todo) == 0 {
		return r, nil
	}

	codes, err := s.commit(ctx, r.Group, r.Partitions, todo)
	if err != nil {
		for _, i := range todo {
			r.Partitions[i].Action = ActionFailed
		}
		return r, fmt.Errorf("apply group %q: %w", r.Group, err)
	}
	var errs []error
	for _, i := range todo {
		p := &r.Partitions[i]
		switch code := codes[i]; {
		case code == sarama.ErrNoError:
			p.Action, p.TargetCommitted = ActionCommitted, p.Target
			s.written.wrote(r.Group, p.TargetTopic, p.Partition, p.Target)
		case memberError(code):
			// A consumer joined since the state was read: the coordinator accepts no admin
			// commit while the group has members.
			p.Action, r.Active = ActionGroupActive, true
		default:
			p.Action = ActionFailed
			errs = append(errs, fmt.Errorf("commit offset %d of target group %q on %s/%d: %w", p.Target, r.Group, p.TargetTopic, p.Partition, code))
		}
	}
	return r, errors.Join(errs...)
}

// memberError reports whether a commit was refused because the group has members. A KIP-848
// group with members may also answer UNSUPPORTED_VERSION per partition (an OffsetCommit below v9
// taken for a member's: kfake does so, where Kafka answers UNKNOWN_MEMBER_ID first); a version the
// broker does not know at all never gets that far (sarama refuses it from the ApiVersions answer).
func memberError(code sarama.KError) bool {
	switch code {
	case sarama.ErrUnknownMemberId, sarama.ErrIllegalGeneration, sarama.ErrRebalanceInProgress,
		sarama.ErrFencedInstancedId, sarama.ErrUnsupportedVersion:
		return true
	}
	return false
}

// coordinatorError reports whether a commit should go again to a coordinator looked up afresh.
func coordinatorError(code sarama.KError) bool {
	switch code {
	case sarama.ErrNotCoordinatorForConsumer, sarama.ErrConsumerCoordinatorNotAvailable, sarama.ErrOffsetsLoadInProgress:
		return true
	}
	return false
}

// commit sends the translated offsets of parts[todo…] to group's coordinator on the target, as an
// admin commit (generation -1, no member id), in one request, and returns each partition's error
// code by index. An error means the request got no usable answer.
func (s *Syncer) commit(ctx context.Context, group string, parts []PartitionReport, todo []int) (map[int]sarama.KError, error) {
	conf := s.cfg.TargetClient.Config()
	build := func() *sarama.OffsetCommitRequest {
		// The version follows the configured Kafka version, as the source committer's does.
		req := sarama.NewOffsetCommitRequest(conf, group)
		req.ConsumerGroupGeneration = sarama.GroupGenerationUndefined
		req.ConsumerID = ""
		for _, i := range todo {
			p := parts[i]
			// Leader epoch -1: the source's epochs mean nothing on the target.
			req.AddBlockWithLeaderEpoch(p.TargetTopic, p.Partition, p.Target, -1, sarama.ReceiveTime,
				commitMetadata+strconv.FormatInt(p.Source, 10))
		}
		return req
	}
	var resp *sarama.OffsetCommitResponse
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("commit offsets of target group %q: %w", group, err)
		}
		var err error
		resp, err = s.send(group, build())
		if err == nil && !retry(resp) {
			break
		}
		_ = s.cfg.TargetClient.RefreshCoordinator(group)
		if attempt == commitAttempts {
			if err != nil {
				return nil, err
			}
			break // report the partitions' errors
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("commit offsets of target group %q: %w", group, ctx.Err())
		case <-time.After(time.Duration(attempt) * commitBackoff):
		}
	}
	codes := make(map[int]sarama.KError, len(todo))
	for _, i := range todo {
		p := parts[i]
		code, ok := resp.Errors[p.TargetTopic][p.Partition]
		if !ok {
			return nil, fmt.Errorf("commit offsets of target group %q: no answer for %s/%d: %w", group, p.TargetTopic, p.Partition, sarama.ErrIncompleteResponse)
		}
		codes[i] = code
	}
	return codes, nil
}

func (s *Syncer) send(group string, req *sarama.OffsetCommitRequest) (*sarama.OffsetCommitResponse, error) {
	b, err := s.cfg.TargetClient.Coordinator(group)
	if err != nil {
		return nil, fmt.Errorf("find coordinator of target group %q: %w", group, err)
	}
	resp, err := b.CommitOffset(req)
	if err != nil {
		return nil, fmt.Errorf("send offset commit of target group %q to broker %d: %w", group, b.ID(), err)
	}
	return resp, nil
}

// retry reports whether any partition says the coordinator was the wrong one, or not ready.
func retry(resp *sarama.OffsetCommitResponse) bool {
	for _, parts := range resp.Errors {
		for _, code := range parts {
			if coordinatorError(code) {
				return true
			}
		}
	}
	return false
}
