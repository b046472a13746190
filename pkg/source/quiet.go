package source

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"
)

// Quiet is what the watcher asks the source about a partition that has records left by its log
// end but nothing in flight: a transaction's commit marker (or aborted records) at the end of a
// log is never handed to a reader of committed records, so the mirrored position stays below the
// log end with nothing left to mirror. Without asking, such a partition would count a backlog for
// ever and be reported stalled. A Cluster that also implements Quiet is asked.
type Quiet interface {
	// FirstRecord returns the offset of the first record a reader of committed records is given at
	// or after from; found is false when none arrives within wait.
	FirstRecord(ctx context.Context, topic string, partition int32, from int64, wait time.Duration) (off int64, found bool, err error)
	// StableEnds returns each partition's last stable offset: the records below it are decided
	// (committed or aborted), those from it on belong to a transaction still open.
	StableEnds(claims map[string][]int32) (map[TopicPartition]int64, error)
}

// quietWait bounds how long one probe waits for a record.
const quietWait = time.Second

// FirstRecord implements Quiet with a consumer on the client (its isolation level).
func (c ClientCluster) FirstRecord(ctx context.Context, topic string, partition int32, from int64, wait time.Duration) (int64, bool, error) {
	consumer, err := sarama.NewConsumerFromClient(c.Client)
	if err != nil {
		return 0, false, err
	}
	defer consumer.Close()
	pc, err := consumer.ConsumePartition(topic, partition, from)
	if err != nil {
		return 0, false, err
	}
	defer pc.Close()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case m := <-pc.Messages():
		return m.Offset, true, nil
	case err := <-pc.Errors():
		return 0, false, err
	case <-t.C:
		return 0, false, nil
	case <-ctx.Done():
		return 0, false, ctx.Err()
	}
}

// StableEnds implements Quiet with ListOffsets requests for committed reads.
func (c ClientCluster) StableEnds(claims map[string][]int32) (map[TopicPartition]int64, error) {
	version := c.Client.Config().Version
	byLeader := make(map[*sarama.Broker]*sarama.OffsetRequest)
	for topic, parts := range claims {
		for _, p := range parts {
			leader, err := c.Client.Leader(topic, p)
			if err != nil {
				return nil, fmt.Errorf("find leader of %s/%d: %w", topic, p, err)
			}
			r, ok := byLeader[leader]
			if !ok {
				r = sarama.NewOffsetRequest(version)
				if r.Version < 2 {
					return nil, errors.New("last stable offsets need ListOffsets version 2 (Kafka 0.11) or later")
				}
				r.IsolationLevel = sarama.ReadCommitted
				byLeader[leader] = r
			}
			r.AddBlock(topic, p, sarama.OffsetNewest, 1)
		}
	}
	out := make(map[TopicPartition]int64)
	for leader, r := range byLeader {
		ends, err := listOffsets(leader, r, claims)
		if err != nil {
			return nil, fmt.Errorf("list last stable offsets on broker %d: %w", leader.ID(), err)
		}
		for tp, o := range ends {
			out[tp] = o
		}
	}
	return out, nil
}

// probeQuiet asks the source, for each partition that waits at its mirrored position with nothing
// in flight and records left by the log end, where its next record is; the answer holds until
// the position moves. It runs on a goroutine of its own (one at a time): a probe waits up to a second.
func (h *Handler) probeQuiet(ctx context.Context, states map[TopicPartition]*claimState) {
	q, ok := h.cfg.Source.(Quiet)
	if !ok || !h.probing.CompareAndSwap(false, true) {
		return
	}
	todo := map[TopicPartition]int64{}
	claims := map[string][]int32{}
	for tp, st := range states {
		committed := st.track.Committed()
		if committed < 0 || st.track.InFlight() > 0 || committed >= st.logEnd.Load() || st.quietFrom.Load() == committed {
			st.behindAt = -1
			continue
		}
		// Behind the log end with nothing in flight is also where a partition written to all
		// the time (the heartbeats) is at most listings, its next record not fetched yet. It is
		// probed once its fetches have seen the log end, or when a listing later finds it at the
		// same position.
		if st.hwm() < st.logEnd.Load() && st.behindAt != committed {
			st.behindAt = committed
			continue
		}
		todo[tp] = committed
		claims[tp.Topic] = append(claims[tp.Topic], tp.Partition)
	}
	if len(todo) == 0 {
		h.probing.Store(false)
		return
	}
	go func() {
		defer h.probing.Store(false)
		stable, err := q.StableEnds(claims)
		if err != nil {
			return
		}
		for tp, committed := range todo {
			if ctx.Err() != nil {
				return
			}
			off, found, err := q.FirstRecord(ctx, tp.Topic, tp.Partition, committed, quietWait)
			if err != nil {
				continue
			}
			next := committed // no record in [committed, next)
			switch {
			case found:
				next = off
			case stable[tp] > committed:
				next = stable[tp] // nothing decided is left to read below the last stable offset
			}
			st := states[tp]
			st.quiet.Store(next)
			st.quietFrom.Store(committed)
		}
	}()
}
