package produce

import (
	"errors"
	"sync"

	"github.com/IBM/sarama"
)

// Async is a Pipeline behind sarama.AsyncProducer's channels, for callers written against it:
// messages go in on Input, come back on Successes (Offset set to the target offset) or Errors
// (with the broker's error, a sarama.KError, when the target refused them). Records of one
// partition come back in the order they went in. It is not transactional.
type Async struct {
	p         *Pipeline
	input     chan *sarama.ProducerMessage
	successes chan *sarama.ProducerMessage
	errors    chan *sarama.ProducerError
	stop      chan struct{}
	closed    chan struct{} // Successes and Errors are closed
	once      sync.Once
}

var _ sarama.AsyncProducer = (*Async)(nil)

// inputBuffer is the room on Input (and on Successes and Errors): records there are held
// besides Config.MaxBufferedBytes, so it is small (as config.ProducerChannelRecords for the
// memory bound).
const inputBuffer = 16

// NewAsync opens a pipeline with cfg behind channels.
func NewAsync(cfg Config) (*Async, error) {
	a := &Async{
		input:     make(chan *sarama.ProducerMessage, inputBuffer),
		successes: make(chan *sarama.ProducerMessage, inputBuffer),
		errors:    make(chan *sarama.ProducerError, inputBuffer),
		stop:      make(chan struct{}),
		closed:    make(chan struct{}),
	}
	p, err := New(cfg, a.settled)
	if err != nil {
		return nil, err
	}
	a.p = p
	intake := make(chan struct{})
	go func() { defer close(intake); a.intake() }()
	go func() {
		<-intake
		p.Close()
		close(a.successes)
		close(a.errors)
		close(a.closed)
	}()
	return a, nil
}

func (a *Async) intake() {
	for {
		select {
		case m := <-a.input:
			a.p.Produce(m)
		case <-a.stop:
			for { // what was put on Input before AsyncClose
				select {
				case m := <-a.input:
					a.p.Produce(m)
				default:
					return
				}
			}
		}
	}
}

func (a *Async) settled(msgs []*sarama.ProducerMessage, err error) {
	for _, m := range msgs {
		if err == nil {
			a.successes <- m
		} else {
			a.errors <- &sarama.ProducerError{Msg: m, Err: err}
		}
	}
}

// Pipeline is the pipeline under the channels.
func (a *Async) Pipeline() *Pipeline { return a.p }

// Abort fails every message the pipeline holds (they come back on Errors with ErrAborted) and
// closes its connections; nothing more is sent. It does not block.
func (a *Async) Abort() { a.p.Abort() }

// AsyncClose stops taking messages once those on Input are queued; Successes and Errors close
// once every message has come back.
func (a *Async) AsyncClose() { a.once.Do(func() { close(a.stop) }) }

// Close is AsyncClose, waiting for every message to come back; it returns the errors.
func (a *Async) Close() error {
	a.AsyncClose()
	var errs sarama.ProducerErrors
	succ, fails := a.successes, a.errors
	for succ != nil || fails != nil {
		select {
		case _, ok := <-succ:
			if !ok {
				succ = nil
			}
		case e, ok := <-fails:
			if !ok {
				fails = nil
				continue
			}
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// Done is closed once Successes and Errors are.
func (a *Async) Done() <-chan struct{} { return a.closed }

func (a *Async) Input() chan<- *sarama.ProducerMessage     { return a.input }
func (a *Async) Successes() <-chan *sarama.ProducerMessage { return a.successes }
func (a *Async) Errors() <-chan *sarama.ProducerError      { return a.errors }

var errNotTransactional = errors.New("the produce pipeline is not transactional")

func (a *Async) IsTransactional() bool                   { return false }
func (a *Async) TxnStatus() sarama.ProducerTxnStatusFlag { return sarama.ProducerTxnFlagReady }
func (a *Async) BeginTxn() error                         { return errNotTransactional }
func (a *Async) CommitTxn() error                        { return errNotTransactional }
func (a *Async) AbortTxn() error                         { return errNotTransactional }
func (a *Async) AddOffsetsToTxn(map[string][]*sarama.PartitionOffsetMetadata, string) error {
	return errNotTransactional
}
func (a *Async) AddOffsetsToTxnWithGroupMetadata(map[string][]*sarama.PartitionOffsetMetadata, *sarama.ConsumerGroupMetadata) error {
	return errNotTransactional
}
func (a *Async) AddMessageToTxn(*sarama.ConsumerMessage, string, *string) error {
	return errNotTransactional
}
func (a *Async) AddMessageToTxnWithGroupMetadata(*sarama.ConsumerMessage, *sarama.ConsumerGroupMetadata, *string) error {
	return errNotTransactional
}
