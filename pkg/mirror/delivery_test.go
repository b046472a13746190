package mirror

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestHungTargetFailsThePartitionAfterTheDeliveryTimeout freezes the target's produce handling
// (requests are taken and never answered) and expects the mirror to give up after
// producer.delivery_timeout, naming the partition and the first offset not on the target,
// without committing anything it did not see acknowledged, and to stop within a bounded time.
func TestHungTargetFailsThePartitionAfterTheDeliveryTimeout(t *testing.T) {
	p := newPair(t)
	createTopic(t, p.europe, "orders", 1, nil)
	produce(t, p.europe, numbered("orders", 1, 0, 50)...)

	release := make(chan struct{})
	var once sync.Once
	unfreeze := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unfreeze)
	fake := p.us.Fake()
	fake.KeepControl()
	fake.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		fake.SleepControl(func() { <-release }) // a frozen broker: the request sits unanswered
		return nil, nil, false
	})

	cfg := p.config("orders")
	cfg.Producer.DeliveryTimeout = 3 * time.Second
	cfg.Target.ReadTimeout = time.Minute // sarama alone would wait this long for one attempt
	m := start(t, cfg)
	began := time.Now()
	var runErr error
	select {
	case runErr = <-m.done:
		m.done = nil
	case <-time.After(45 * time.Second):
		t.Fatal("the mirror kept waiting on a hung target past producer.delivery_timeout")
	}
	took := time.Since(began)
	unfreeze()
	if runErr == nil || !strings.Contains(runErr.Error(), "orders/0") || !strings.Contains(runErr.Error(), "producer.delivery_timeout") {
		t.Fatalf("Run = %v, want an error naming orders/0 and producer.delivery_timeout", runErr)
	}
	if took > 30*time.Second {
		t.Fatalf("stopping took %s with delivery_timeout 3s", took)
	}
	if got := committed(t, p.europe, "kmirror", "orders")[0]; got > 0 {
		t.Fatalf("committed %d although the target acknowledged nothing", got)
	}
}

// TestStopWithAHungTargetIsBoundedAndHonest stops the mirror while the target takes produce
// requests and never answers them: the whole stop (drain, final commit, producers, leaving the
// group, admin clients) must end within shutdown.timeout plus a little, report that it was not
// clean, and commit nothing the target did not acknowledge.
func TestStopWithAHungTargetIsBoundedAndHonest(t *testing.T) {
	p := newPair(t)
	createTopic(t, p.europe, "orders", 2, nil)
	produce(t, p.europe, numbered("orders", 2, 0, 40)...)

	release := make(chan struct{})
	var once sync.Once
	unfreeze := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unfreeze)
	fake := p.us.Fake()
	fake.KeepControl()
	fake.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		fake.SleepControl(func() { <-release })
		return nil, nil, false
	})

	cfg := p.config("orders")
	cfg.Shutdown.Timeout = 3 * time.Second
	cfg.Target.ReadTimeout = time.Minute
	m := start(t, cfg)
	waitFor(t, "the mirror in its group session", 30*time.Second, func() bool { return m.m.Ready() == nil })
	time.Sleep(time.Second) // let the producers send into the hung target
	began := time.Now()
	err := m.stop(t)
	took := time.Since(began)
	if took > cfg.Shutdown.Timeout+2*time.Second {
		t.Fatalf("stop took %s with shutdown.timeout %s", took, cfg.Shutdown.Timeout)
	}
	if err == nil || !strings.Contains(err.Error(), "not clean") {
		t.Fatalf("Run = %v after a stop that could not drain, want it to say the stop was not clean", err)
	}
	for part, off := range committed(t, p.europe, "kmirror", "orders") {
		if off > 0 {
			t.Fatalf("partition %d committed %d although the target acknowledged nothing", part, off)
		}
	}
}
