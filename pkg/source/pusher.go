package source

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kmirror/kmirror/pkg/record"
	"github.com/kmirror/kmirror/pkg/ring"
)

// pusher hands on, for one worker's inbox, what claims could not hand on when it was delivered
// (the inbox or the partition's in-flight window was full), and calls Fetcher.Ready for each
// claim it empties. There is one per worker, so the source's goroutines grow with workers and
// brokers, never with partitions.
//
// It sleeps until something may have changed: a claim added (Deliver), a pop from the inbox
// (ring.Queue.WaitRoom), a partition's window half empty again (offsets.Partition.OnRoom), or a
// safety tick. Claims are tried oldest first; once the inbox refuses one, the others waiting for
// the inbox are not tried in that round (they would be refused too), and Deliver does not push
// past them (ringFull) until a round gets through, so a waiting claim is never starved.
type pusher struct {
	inbox *ring.Queue[*record.Batch]
	ready func(c *claim)
	wake  chan struct{}

	mu      sync.Mutex
	waiting []*claim // in the order they began waiting

	// ringFull is set while a claim waits for room in the inbox.
	ringFull atomic.Bool
}

// pusherTick bounds a sleep, should a wake-up be taken by someone else (a Push waiting in the
// same inbox).
const pusherTick = 20 * time.Millisecond

func newPusher(inbox *ring.Queue[*record.Batch], ready func(c *claim)) *pusher {
	return &pusher{inbox: inbox, ready: ready, wake: make(chan struct{}, 1)}
}

// add makes c wait in the pusher (c.mu is held; c.waiting was false).
func (p *pusher) add(c *claim) {
	p.mu.Lock()
	p.waiting = append(p.waiting, c)
	p.mu.Unlock()
	p.poke()
}

// poke wakes the pusher; it never blocks.
func (p *pusher) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// run hands on until ctx ends. With no claim waiting it sleeps until one is added: an idle
// pusher costs nothing, and pops do not pay for waking it.
func (p *pusher) run(ctx context.Context) {
	t := time.NewTimer(pusherTick)
	defer t.Stop()
	for {
		room, done := p.inbox.WaitRoom()
		if !p.round() {
			done()
			select {
			case <-ctx.Done():
				return
			case <-p.wake:
			}
			continue
		}
		t.Reset(pusherTick)
		select {
		case <-ctx.Done():
			done()
			return
		case <-p.wake:
		case <-room:
		case <-t.C:
		}
		done()
	}
}

// round tries every waiting claim once, oldest first, and reports whether some still wait.
func (p *pusher) round() bool {
	p.mu.Lock()
	cs := p.waiting
	p.waiting = nil
	p.mu.Unlock()
	if len(cs) == 0 {
		p.ringFull.Store(false)
		return false
	}
	ringFull := false
	kept := cs[:0]
	for _, c := range cs {
		c.mu.Lock()
		if c.stopped {
			c.waiting = false
			c.mu.Unlock()
			continue
		}
		if ringFull && c.onRing {
			c.mu.Unlock()
			kept = append(kept, c)
			continue
		}
		if !c.step() {
			if c.onRing {
				ringFull = true
			}
			c.mu.Unlock()
			kept = append(kept, c)
			continue
		}
		c.waiting = false
		ready := c.full
		c.full = false
		c.mu.Unlock()
		if ready {
			p.ready(c)
		}
	}
	p.ringFull.Store(ringFull)
	p.mu.Lock()
	p.waiting = append(kept, p.waiting...)
	waiting := len(p.waiting) > 0
	p.mu.Unlock()
	return waiting
}
