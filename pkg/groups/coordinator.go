package groups

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"
	"github.com/cenkalti/backoff/v5"
)

// coordinatorWait bounds how long a request to a target group's coordinator waits for the
// coordinator: right after it moved (a broker restarted or was lost, a leader election of
// __consumer_offsets) the broker a client remembers answers NOT_COORDINATOR, or is gone, and the
// new one answers COORDINATOR_LOAD_IN_PROGRESS while it loads the groups, for seconds.
const coordinatorWait = 30 * time.Second

// movingCoordinator reports whether err says that the group's coordinator is elsewhere, not
// known yet, loading, or could not be reached: the same request goes again to the coordinator
// looked up afresh. Any other answer is the coordinator's and final.
func movingCoordinator(err error) bool {
	var kerr sarama.KError
	if errors.Is(err, sarama.ErrIncompleteResponse) {
		return false
	}
	if !errors.As(err, &kerr) {
		return true // a broken connection, a broker gone, a timeout
	}
	switch kerr {
	case sarama.ErrNotCoordinatorForConsumer, sarama.ErrConsumerCoordinatorNotAvailable, sarama.ErrOffsetsLoadInProgress:
		return true
	}
	return false
}

// toCoordinator calls req with the target group's coordinator as Config.TargetClient knows it.
// While req (or the look-up) fails with a moving coordinator, the same client looks the
// coordinator up again and req goes again, with a growing pause, for up to coordinatorWait or
// until ctx ends; req's last error is returned then. The client that sends is the client that
// looks up: an admin of its own would keep asking the broker it remembers.
func (s *Syncer) toCoordinator(ctx context.Context, group string, req func(*sarama.Broker) error) error {
	client := s.cfg.TargetClient
	pause := backoff.NewExponentialBackOff()
	pause.InitialInterval = 100 * time.Millisecond
	pause.MaxInterval = 2 * time.Second
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		b, err := client.Coordinator(group)
		if err == nil {
			err = req(b)
		}
		if err == nil {
			return struct{}{}, nil
		}
		if !movingCoordinator(err) {
			return struct{}{}, backoff.Permanent(err)
		}
		_ = client.RefreshCoordinator(group) // its failure shows in the next try's look-up
		return struct{}{}, err
	}, backoff.WithBackOff(pause), backoff.WithMaxElapsedTime(coordinatorWait))
	return err
}

// describeTarget describes group on its target coordinator (DescribeGroups, at the version the
// target's admin would use).
func (s *Syncer) describeTarget(ctx context.Context, group string) (*sarama.GroupDescription, error) {
	v := s.cfg.TargetClient.Config().Version
	req := &sarama.DescribeGroupsRequest{Groups: []string{group}}
	switch {
	case v.IsAtLeast(sarama.V2_4_0_0):
		req.Version = 5
	case v.IsAtLeast(sarama.V2_3_0_0):
		req.Version = 3
	case v.IsAtLeast(sarama.V2_0_0_0):
		req.Version = 2
	case v.IsAtLeast(sarama.V1_1_0_0):
		req.Version = 1
	}
	var d *sarama.GroupDescription
	err := s.toCoordinator(ctx, group, func(b *sarama.Broker) error {
		resp, err := b.DescribeGroups(req)
		if err != nil {
			return fmt.Errorf("broker %d: %w", b.ID(), err)
		}
		for _, g := range resp.Groups {
			if g.GroupId == group {
				if movingCoordinator(g.Err) {
					return g.Err
				}
				d = g
				return nil
			}
		}
		return sarama.ErrIncompleteResponse
	})
	return d, err
}

// fetchTargetOffsets reads group's committed offsets on the target (want: topic → partitions;
// nil: all), from its coordinator. A group-level error other than a moving coordinator is
// returned as is (GROUP_ID_NOT_FOUND: no such group).
func (s *Syncer) fetchTargetOffsets(ctx context.Context, group string, want map[string][]int32) (*sarama.OffsetFetchResponse, error) {
	req := sarama.NewOffsetFetchRequest(s.cfg.TargetClient.Config().Version, group, want)
	var resp *sarama.OffsetFetchResponse
	err := s.toCoordinator(ctx, group, func(b *sarama.Broker) error {
		r, err := b.FetchOffset(req)
		if err != nil {
			return fmt.Errorf("broker %d: %w", b.ID(), err)
		}
		if gerr := r.GroupError(); gerr != sarama.ErrNoError {
			return gerr
		}
		resp = r
		return nil
	})
	return resp, err
}
