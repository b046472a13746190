package group

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestStopDuringAJoinCommitsWhatItRevokes: a member stopped while its JoinGroup waits for the
// coordinator is, once that JoinGroup is answered, in the new generation; the commit of what
// it revokes on the way out must be accepted there (a commit under the generation it left is
// refused ILLEGAL_GENERATION, and the records acknowledged since the last commit would be
// mirrored again after a clean stop).
func TestStopDuringAJoinCommitsWhatItRevokes(t *testing.T) {
	c := startCluster(t, 4)
	l := newLedger(t)
	var a *running
	commits := make(chan error, 4)
	l.onRevoke = func(_ string, ps Partitions) {
		var offs []Offset
		for x := range ps.set() {
			offs = append(offs, Offset{Topic: x.topic, Partition: x.partition, Offset: 5})
		}
		commits <- a.m.Commit(context.Background(), offs)
	}
	a = startMember(t, c.Addrs(), "g-stop-join", "a", l.handler("a"), memberOpts{})
	waitSettled(t, l, []*running{a}, 4)

	kc := c.Fake()
	inJoin, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	kc.ControlKey(kmsg.JoinGroup.Int16(), func(kmsg.Request) (kmsg.Response, error, bool) {
		once.Do(func() {
			close(inJoin)
			kc.SleepControl(func() { <-release })
		})
		return nil, nil, false
	})
	if err := a.m.Subscribe([]string{topic}); err != nil { // rejoins
		t.Fatal(err)
	}
	select {
	case <-inJoin:
	case <-time.After(10 * time.Second):
		t.Fatal("the member did not rejoin")
	}
	closed := make(chan struct{})
	go func() { a.m.Close(); close(closed) }()
	time.Sleep(200 * time.Millisecond) // the member's context is cancelled while its JoinGroup waits
	close(release)
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("the member did not stop")
	}
	select {
	case err := <-commits:
		if err != nil {
			t.Fatalf("commit of the revoked partitions at stop: %v", err)
		}
	default:
		t.Fatalf("nothing revoked at stop: %s", describe(l, "a"))
	}
}
