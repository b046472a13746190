package cluster

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap"
)

type closer struct{ closed chan struct{} }

func (c *closer) Close() error { close(c.closed); return nil }

// TestOpenClosesWhatConnectsAfterTheCallerGaveUp: open returns at once when ctx ends, and what
// the dial opens afterwards is closed, not leaked.
func TestOpenClosesWhatConnectsAfterTheCallerGaveUp(t *testing.T) {
	release := make(chan struct{})
	c := &closer{closed: make(chan struct{})}
	ctx, cancel := context.WithCancelCause(context.Background())
	stopped := errors.New("stopping")
	go func() { time.Sleep(20 * time.Millisecond); cancel(stopped) }()
	_, err := open(ctx, func() (*closer, error) { <-release; return c, nil })
	if !errors.Is(err, stopped) {
		t.Fatalf("open = %v, want the cause of ctx's end", err)
	}
	close(release)
	select {
	case <-c.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the client opened after the caller gave up was not closed")
	}
}

// TestConnectAdminGivesUpWhenCtxEnds: against a cluster that refuses connections ConnectAdmin
// retries until ctx ends, then says which cluster it could not reach and why it stopped.
func TestConnectAdminGivesUpWhenCtxEnds(t *testing.T) {
	cc := base()
	cc.Bootstrap = []string{"127.0.0.1:1"}
	cc.DialTimeout = 100 * time.Millisecond
	cl, err := New("target", cc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	var seen []string
	start := time.Now()
	a, err := cl.ConnectAdmin(ctx, zap.NewNop(), func(name string, _ *sarama.Config) { seen = append(seen, name) })
	if a != nil || err == nil {
		t.Fatalf("ConnectAdmin = %v, %v; want an error", a, err)
	}
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "target cluster") {
		t.Fatalf("error %q: want the target named and the deadline as cause", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("ConnectAdmin returned %s after it started, ctx ended after 1.5 s", took)
	}
	if len(seen) == 0 || seen[0] != "target-admin" {
		t.Fatalf("admin configurations seen: %q, want target-admin", seen)
	}
}
