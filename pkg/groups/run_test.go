package groups_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/kmirror/kmirror/pkg/groups"
	"github.com/kmirror/kmirror/pkg/offsetmap"
)

// roundCounter is an Observer that signals each round's end.
type roundCounter struct {
	groups.Observer
	rounds chan struct{}
}

func (r roundCounter) Round(time.Time, int, int) {
	select {
	case r.rounds <- struct{}{}:
	default:
	}
}

func TestRunLogsAProblemOnceAndItsEnd(t *testing.T) {
	p := newPair(t, sarama.V3_6_0_0)
	commit(t, p.europe, "app-a", offsets{"orders/0": 10, "orders/1": 20})
	commit(t, p.europe, "app-c", offsets{"payments/0": 5})
	var broken atomic.Bool
	broken.Store(true)
	fine := plus1000(map[string]offsetmap.Status{"orders/1": offsetmap.Unknown})
	translate := func(ctx context.Context, topic string, partition int32, off int64) (offsetmap.Translation, error) {
		if topic == "payments" && broken.Load() {
			return offsetmap.Translation{}, errors.New("offset map unreadable")
		}
		return fine(ctx, topic, partition, off)
	}
	core, logs := observer.New(zap.InfoLevel)
	rounds := make(chan struct{})
	cfg := p.config(translate)
	cfg.Log = zap.New(core)
	cfg.Observer = roundCounter{newObserver(), rounds}
	s := p.syncer(cfg)

	if err := s.Run(context.Background(), 0); err == nil {
		t.Error("Run with interval 0 did not fail")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, 10*time.Millisecond) }()
	wait := func(n int) {
		t.Helper()
		for range n {
			select {
			case <-rounds:
			case <-time.After(10 * time.Second):
				t.Fatal("no round ended in 10 s")
			}
		}
	}
	wait(5)
	broken.Store(false)
	wait(5)
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run returned %v when its context ended, want nil", err)
	}

	for msg, want := range map[string]int{
		"group offset sync failed":                                                1, // app-c, five rounds in a row
		"group offset sync works again":                                           1,
		"group's target offsets advanced":                                         2, // app-a once, app-c once it works
		"the offset map cannot translate positions of group: they are not synced": 1, // app-a's orders/1
	} {
		if got := logs.FilterMessage(msg).Len(); got != want {
			t.Errorf("%q logged %d times, want %d; logs: %v", msg, got, want, logs.All())
		}
	}
	if got := logs.FilterMessage("group offset sync failed").All(); len(got) == 1 && got[0].ContextMap()["group"] != "app-c" {
		t.Errorf("failure logged for %v, want group app-c", got[0].ContextMap())
	}
	if got, want := committed(t, p.us, "app-c"), (offsets{"europe.payments/0": 1005}); !equal(got, want) {
		t.Errorf("target app-c = %v, want %v", got, want)
	}
}
