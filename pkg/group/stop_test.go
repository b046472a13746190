package group

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kmirror/kmirror/pkg/embedded"
)

// TestStopDuringAJoinCommitsWhatItRevokes: a member stopped while its JoinGroup waits for the
// coordinator is, once that JoinGroup is answered, in the new generation; the commit of what
// it revokes on the way out must be accepted there (a commit under the generation it left is
// refused ILLEGAL_GENERATION, and the records acknowledged since the last commit would be
// mirrored again after a clean stop).
func TestStopDuringAJoinCommitsWhatItRevokes(t *testing.T) {
	if err := stopDuringAJoin(t, "g-stop-join", nil); err != nil {
		t.Fatalf("commit of the revoked partitions at stop: %v", err)
	}
}

// TestStopWhoseSyncFailsCommitsWhatItRevokes: as above, but the SyncGroup that follows the
// answered JoinGroup is refused REBALANCE_IN_PROGRESS, since another member joined meanwhile.
// The group is then in the JoinGroup's generation, preparing its next rebalance, and Kafka's
// coordinator (as kfake's) accepts a member's commits under that generation (Kafka's consumer
// takes it on the JoinGroup's answer, whatever SyncGroup says); under the generation the member
// left it refuses them ILLEGAL_GENERATION.
func TestStopWhoseSyncFailsCommitsWhatItRevokes(t *testing.T) {
	const group = "g-stop-sync"
	preparing := make(chan error, 1)
	err := stopDuringAJoin(t, group, func(c *embedded.Cluster, a *running) {
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.Addrs()...))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		protocol, kc := a.m.Generation().Protocol, c.Fake()
		kc.ControlKey(kmsg.SyncGroup.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
			kc.SleepControl(func() { preparing <- joinAnother(ctx, cl, group, protocol) })
			resp := req.ResponseKind().(*kmsg.SyncGroupResponse)
			resp.ErrorCode = kerr.RebalanceInProgress.Code
			return resp, nil, true
		})
	})
	select {
	case perr := <-preparing:
		if perr != nil {
			t.Fatalf("another member joining while the sync was held: %v", perr)
		}
	default:
		t.Fatal("the member stopped without sending its SyncGroup")
	}
	if err != nil {
		t.Fatalf("commit of the revoked partitions at stop, after a refused sync: %v", err)
	}
}

// stopDuringAJoin starts a member of group owning 4 partitions, which commits what it revokes;
// has it rejoin, with prepare (if not nil) adding its controls of the cluster first; stops it
// while its JoinGroup waits for the coordinator; and returns the error of the commit it made on
// the way out.
func stopDuringAJoin(t *testing.T, group string, prepare func(c *embedded.Cluster, a *running)) error {
	t.Helper()
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
	a = startMember(t, c.Addrs(), group, "a", l.handler("a"), memberOpts{})
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
	if prepare != nil {
		prepare(c, a)
	}
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
		return err
	default:
		t.Fatalf("nothing revoked at stop: %s", describe(l, "a"))
		return nil
	}
}

// joinAnother sends the JoinGroup of a new member of group offering protocol (in the
// background: it is answered only when the rebalance completes) and waits until the group
// prepares a rebalance.
func joinAnother(ctx context.Context, cl *kgo.Client, group, protocol string) error {
	meta := (&kmsg.ConsumerMemberMetadata{Topics: []string{topic}}).AppendTo(nil)
	join := func(member string) (*kmsg.JoinGroupResponse, error) {
		req := kmsg.NewPtrJoinGroupRequest()
		req.Group, req.MemberID, req.ProtocolType = group, member, "consumer"
		req.SessionTimeoutMillis, req.RebalanceTimeoutMillis = 6000, 10000
		req.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: protocol, Metadata: meta}}
		return req.RequestWith(ctx, cl)
	}
	first, err := join("")
	if err != nil {
		return err
	}
	if err := kerr.ErrorForCode(first.ErrorCode); err != nil && !errors.Is(err, kerr.MemberIDRequired) {
		return fmt.Errorf("join: %w", err)
	}
	go func() { _, _ = join(first.MemberID) }()
	adm := kadm.NewClient(cl)
	for ctx.Err() == nil {
		gs, err := adm.DescribeGroups(ctx, group)
		if err == nil && gs[group].State == "PreparingRebalance" {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return ctx.Err()
}
