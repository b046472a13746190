package produce

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"
	"github.com/cenkalti/backoff/v5"
	"go.uber.org/zap"
)

// ErrTxnFatal marks an error after which the transactional producer cannot be used any more:
// it was fenced by a newer producer of its transactional id (PRODUCER_FENCED,
// INVALID_PRODUCER_EPOCH), is not authorized for the id, or a commit's outcome is unknown. The
// caller stops; whoever takes the id next completes or aborts what was left open.
var ErrTxnFatal = errors.New("transactional producer failed for good")

// ErrTxnAborted marks a transaction that was aborted: none of its records or positions are
// visible read_committed. The caller sends again from its positions.
var ErrTxnAborted = errors.New("transaction aborted")

// txnClass is how an error of a transaction is handled, as Kafka's TransactionManager sorts it.
type txnClass int

const (
	txnRetry     txnClass = iota // send the request again after a pause
	txnAbortable                 // the transaction cannot commit: abort it, resend from positions
	txnFatal                     // the producer cannot go on
)

// classifyTxn sorts err from a coordinator request (coordinator) or from a produce answer. As
// Kafka's TransactionManager, an unexpected error of a coordinator request is fatal; a batch the
// target refused only makes the transaction abortable.
func classifyTxn(err error, coordinator bool) txnClass {
	var ke sarama.KError
	if !errors.As(err, &ke) {
		switch {
		case errors.Is(err, ErrAborted):
			return txnFatal
		case coordinator: // a broken connection, a coordinator not found: ask again
			return txnRetry
		default: // a delivery timeout
			return txnAbortable
		}
	}
	switch ke {
	case sarama.ErrProducerFenced, sarama.ErrInvalidProducerEpoch, sarama.ErrTransactionalIDAuthorizationFailed,
		sarama.ErrTransactionCoordinatorFenced, sarama.ErrInvalidTxnState, sarama.ErrUnsupportedVersion,
		sarama.ErrClusterAuthorizationFailed, sarama.ErrInvalidProducerIDMapping:
		return txnFatal
	case sarama.ErrConsumerCoordinatorNotAvailable, sarama.ErrNotCoordinatorForConsumer,
		sarama.ErrOffsetsLoadInProgress, sarama.ErrConcurrentTransactions, sarama.ErrRequestTimedOut,
		sarama.ErrUnknownTopicOrPartition, sarama.ErrNetworkException:
		if coordinator {
			return txnRetry
		}
		return txnAbortable
	case sarama.ErrTopicAuthorizationFailed, sarama.ErrGroupAuthorizationFailed, sarama.ErrOperationNotAttempted,
		sarama.ErrUnknownMemberId, sarama.ErrIllegalGeneration, sarama.ErrFencedInstancedId,
		sarama.ErrRebalanceInProgress, sarama.ErrOutOfOrderSequenceNumber, sarama.ErrUnknownProducerID:
		return txnAbortable
	}
	if coordinator {
		return txnFatal
	}
	return txnAbortable
}

// classify sorts a produce answer's error. A transactional producer does not bump its epoch
// in the middle of a transaction: a lost sequence fails the batch, which makes the transaction
// abortable, and the epoch is bumped after the abort (KIP-360); an epoch the broker no longer
// takes means a newer producer fenced this one.
func (p *Pipeline) classify(err sarama.KError) outcome {
	if p.txn != nil {
		switch err {
		case sarama.ErrOutOfOrderSequenceNumber, sarama.ErrUnknownProducerID, sarama.ErrInvalidProducerEpoch,
			sarama.ErrProducerFenced:
			return refused
		}
	}
	return classify(err)
}

// wrapTxn marks err with ErrTxnFatal or ErrTxnAborted by its class.
func wrapTxn(err error, class txnClass) error {
	if errors.Is(err, ErrTxnFatal) || errors.Is(err, ErrTxnAborted) {
		return err
	}
	if class == txnFatal {
		var ke sarama.KError
		if errors.As(err, &ke) && (ke == sarama.ErrProducerFenced || ke == sarama.ErrInvalidProducerEpoch) {
			return fmt.Errorf("%w: fenced by a newer producer of the transactional id: %w", ErrTxnFatal, err)
		}
		return fmt.Errorf("%w: %w", ErrTxnFatal, err)
	}
	return err
}

// coordinatorCall runs call on the coordinator coord finds, again after a growing pause
// (cenkalti/backoff) while its error is retriable, refreshing the coordinator after
// NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE or a broken connection. It gives up at
// Config.DeliveryTimeout or when ctx ends. A non-retriable error comes back marked by its class.
func (p *Pipeline) coordinatorCall(ctx context.Context, what string, coord func() (*sarama.Broker, error),
	refresh func() error, call func(*sarama.Broker) error) error {
	wait := backoff.NewExponentialBackOff()
	// Short first pauses: CONCURRENT_TRANSACTIONS answers AddPartitionsToTxn for as long as the
	// last commit's markers are being written, a few milliseconds (Kafka's producer retries it
	// after 20 ms too).
	wait.InitialInterval = 20 * time.Millisecond
	wait.MaxInterval = time.Second
	tries := 0
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		tries++
		b, err := coord()
		if err != nil {
			_ = refresh()
			return struct{}{}, fmt.Errorf("find the coordinator: %w", err)
		}
		err = call(b)
		if err == nil {
			return struct{}{}, nil
		}
		var ke sarama.KError
		if !errors.As(err, &ke) {
			_ = b.Close() // a broken connection: dial again
		}
		if !errors.As(err, &ke) || ke == sarama.ErrNotCoordinatorForConsumer || ke == sarama.ErrConsumerCoordinatorNotAvailable {
			_ = refresh()
		}
		switch class := classifyTxn(err, true); class {
		case txnRetry:
			if tries%10 == 0 {
				p.cfg.Log.Warn("transaction request still retrying", zap.String("request", what),
					zap.Int("attempt", tries), zap.Error(err))
			}
			return struct{}{}, err
		default:
			return struct{}{}, backoff.Permanent(wrapTxn(err, class))
		}
	}, backoff.WithBackOff(wait), backoff.WithMaxElapsedTime(p.cfg.DeliveryTimeout))
	if err != nil {
		return fmt.Errorf("%s (transactional id %q): %w", what, p.txn.id, err)
	}
	return nil
}

func (p *Pipeline) txnCoordinator() (*sarama.Broker, error) {
	return p.client.TransactionCoordinator(p.txn.id)
}

func (p *Pipeline) refreshTxnCoordinator() error {
	return p.client.RefreshTransactionCoordinator(p.txn.id)
}

// txnVersion is the version of AddPartitionsToTxn, AddOffsetsToTxn and EndTxn for the
// configured Kafka version (as sarama's transaction manager picks it).
func txnVersion(v sarama.KafkaVersion) int16 {
	switch {
	case v.IsAtLeast(sarama.V2_8_0_0):
		return 3
	case v.IsAtLeast(sarama.V2_7_0_0):
		return 2 // PRODUCER_FENCED
	case v.IsAtLeast(sarama.V2_0_0_0):
		return 1
	}
	return 0
}

// initTxnProducerID takes the transactional id's producer id and a new epoch, which fences
// every older producer of the id and completes or aborts the transaction one left open. With a
// producer id already held and a target of 2.5 or later, it asks for that id's epoch to be
// bumped (KIP-360) instead.
func (p *Pipeline) initTxnProducerID() error {
	id := p.txn.id
	req, had := p.initProducerIDRequest(&id, p.txn.timeout)
	ctx := p.ctx
	if ctx == nil { // New: the pipeline's context does not exist yet
		ctx = context.Background()
	}
	var res *sarama.InitProducerIDResponse
	err := p.coordinatorCall(ctx, "InitProducerId", p.txnCoordinator, p.refreshTxnCoordinator, func(b *sarama.Broker) error {
		r, err := b.InitProducerID(req)
		if err != nil {
			return err
		}
		if r.Err != sarama.ErrNoError {
			return r.Err
		}
		res = r
		return nil
	})
	if err != nil {
		return err
	}
	p.mu.Lock()
	if had {
		p.stats.EpochBumps++
	}
	p.pid, p.epoch = res.ProducerID, res.ProducerEpoch
	p.mu.Unlock()
	return nil
}

// addPartitions adds parts to the open transaction with one AddPartitionsToTxn (again for those
// not yet added while the errors are retriable). It returns the error that made it give up.
func (p *Pipeline) addPartitions(ctx context.Context, parts []topicPartition, pid int64, epoch int16) error {
	left := map[topicPartition]bool{}
	for _, tp := range parts {
		left[tp] = true
	}
	return p.coordinatorCall(ctx, "AddPartitionsToTxn", p.txnCoordinator, p.refreshTxnCoordinator, func(b *sarama.Broker) error {
		req := &sarama.AddPartitionsToTxnRequest{Version: txnVersion(p.cfg.Net.Version), TransactionalID: p.txn.id,
			ProducerID: pid, ProducerEpoch: epoch, TopicPartitions: map[string][]int32{}}
		for tp := range left {
			req.TopicPartitions[tp.topic] = append(req.TopicPartitions[tp.topic], tp.id)
		}
		res, err := b.AddPartitionsToTxn(req)
		if err != nil {
			return err
		}
		var first error
		p.mu.Lock()
		for topic, errs := range res.Errors {
			for _, pe := range errs {
				tp := topicPartition{topic, pe.Partition}
				if pe.Err == sarama.ErrNoError && left[tp] {
					delete(left, tp)
					p.txn.added[tp] = true
				} else if pe.Err != sarama.ErrNoError && (first == nil || first == sarama.ErrOperationNotAttempted) {
					first = fmt.Errorf("%s/%d: %w", topic, pe.Partition, pe.Err)
				}
			}
		}
		p.mu.Unlock()
		if first == nil && len(left) > 0 {
			first = fmt.Errorf("the coordinator did not answer for %d partitions: %w", len(left), sarama.ErrRequestTimedOut)
		}
		return first
	})
}

// commitPositions adds pos's group to the transaction (AddOffsetsToTxn, to the transaction
// coordinator) and commits its offsets in it (TxnOffsetCommit, to the group's coordinator).
func (p *Pipeline) commitPositions(ctx context.Context, pos *Positions, pid int64, epoch int16) error {
	err := p.coordinatorCall(ctx, "AddOffsetsToTxn", p.txnCoordinator, p.refreshTxnCoordinator, func(b *sarama.Broker) error {
		res, err := b.AddOffsetsToTxn(&sarama.AddOffsetsToTxnRequest{Version: txnVersion(p.cfg.Net.Version),
			TransactionalID: p.txn.id, ProducerID: pid, ProducerEpoch: epoch, GroupID: pos.Group})
		if err != nil {
			return err
		}
		if res.Err != sarama.ErrNoError {
			return res.Err
		}
		return nil
	})
	if err != nil {
		return err
	}
	req := &sarama.TxnOffsetCommitRequest{TransactionalID: p.txn.id, GroupID: pos.Group, ProducerID: pid,
		ProducerEpoch: epoch, Topics: pos.Offsets}
	v := p.cfg.Net.Version
	switch {
	case v.IsAtLeast(sarama.V2_5_0_0):
		// The generation and member let the group coordinator fence a stale member; none
		// (generation -1, no member) asks it not to.
		req.Version, req.GenerationID, req.MemberID, req.GroupInstanceID = 3, pos.Generation, pos.MemberID, pos.InstanceID
		if pos.MemberID == "" {
			req.GenerationID = -1
		}
	case v.IsAtLeast(sarama.V2_1_0_0):
		req.Version = 2
	case v.IsAtLeast(sarama.V2_0_0_0):
		req.Version = 1
	}
	return p.coordinatorCall(ctx, "TxnOffsetCommit",
		func() (*sarama.Broker, error) { return p.client.Coordinator(pos.Group) },
		func() error { return p.client.RefreshCoordinator(pos.Group) },
		func(b *sarama.Broker) error {
			res, err := b.TxnOffsetCommit(req)
			if err != nil {
				return err
			}
			for topic, errs := range res.Topics {
				for _, pe := range errs {
					if pe.Err != sarama.ErrNoError {
						return fmt.Errorf("%s/%d: %w", topic, pe.Partition, pe.Err)
					}
				}
			}
			return nil
		})
}

// endTxn commits or aborts the open transaction.
func (p *Pipeline) endTxn(ctx context.Context, commit bool, pid int64, epoch int16) error {
	what := "EndTxn(abort)"
	if commit {
		what = "EndTxn(commit)"
	}
	return p.coordinatorCall(ctx, what, p.txnCoordinator, p.refreshTxnCoordinator, func(b *sarama.Broker) error {
		res, err := b.EndTxn(&sarama.EndTxnRequest{Version: txnVersion(p.cfg.Net.Version), TransactionalID: p.txn.id,
			ProducerID: pid, ProducerEpoch: epoch, TransactionResult: commit})
		if err != nil {
			return err
		}
		if res.Err != sarama.ErrNoError {
			return res.Err
		}
		return nil
	})
}
