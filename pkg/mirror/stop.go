package mirror

import (
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"
)

// closeReserve is the part of shutdown.timeout kept for the steps after the drain (the final
// commit, leaving the group, closing producers and admin clients): at most 10 s, at most a third.
func closeReserve(total time.Duration) time.Duration { return min(10*time.Second, total/3) }

// stopper bounds every step of a stop by one deadline, shutdown.timeout after the stop began,
// whatever the clusters do: a step still running at the deadline is left behind (logged), and
// the stop is then not clean. sarama's Close of a client whose broker hangs can block for many
// minutes; the process exits without waiting for it.
type stopper struct {
	log      *zap.Logger
	total    time.Duration
	deadline time.Time
	unclean  []string
}

// begin starts the clock, once.
func (s *stopper) begin() {
	if s.deadline.IsZero() {
		s.deadline = time.Now().Add(s.total)
	}
}

// do runs fn, waiting for it until the deadline (begun now if it was not).
func (s *stopper) do(what string, fn func() error) {
	s.begin()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	t := time.NewTimer(max(time.Until(s.deadline), 0))
	defer t.Stop()
	select {
	case err := <-done:
		if err != nil {
			s.log.Warn(what, zap.Error(err))
		}
	case <-t.C:
		s.fail(what + " did not finish within shutdown.timeout; going on without it")
	}
}

// wait waits for done until the deadline.
func (s *stopper) wait(what string, done <-chan struct{}) {
	s.do(what, func() error { <-done; return nil })
}

// fail notes a step that did not complete cleanly.
func (s *stopper) fail(what string) {
	s.unclean = append(s.unclean, what)
	s.log.Warn(what)
}

// verdict is what a stop returns once every step is done: nil when each finished in time, an
// error naming those that did not otherwise (what they left unacknowledged is not committed, and
// is mirrored again by whoever reads the partitions next).
func (s *stopper) verdict() error {
	if len(s.unclean) > 0 {
		s.log.Warn("stopped, not cleanly: records not acknowledged were not committed and will be mirrored again",
			zap.Strings("unfinished", s.unclean))
		return fmt.Errorf("stop was not clean: %s", strings.Join(s.unclean, "; "))
	}
	s.log.Info("stopped cleanly")
	return nil
}

// spawn runs fn on a goroutine of its own and returns a channel closed once fn has returned, for
// its owner to wait on (stopper.wait) after ending it.
func spawn(fn func()) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	return done
}

// waitAtMost waits for done, or d.
func waitAtMost(done <-chan struct{}, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}
