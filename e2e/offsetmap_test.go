//go:build e2e

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// createAssigned creates topic on c with each partition's replicas on the nodes given.
func (c *cluster) createAssigned(t *testing.T, topic string, assign map[int32][]int32, configs map[string]string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.bootstrap...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	req := kmsg.NewPtrCreateTopicsRequest()
	req.TimeoutMillis = 30_000
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = topic, -1, -1
	for p, nodes := range assign {
		ra := kmsg.NewCreateTopicsRequestTopicReplicaAssignment()
		ra.Partition, ra.Replicas = p, nodes
		rt.ReplicaAssignment = append(rt.ReplicaAssignment, ra)
	}
	for k, v := range configs {
		rc := kmsg.NewCreateTopicsRequestTopicConfig()
		rc.Name, rc.Value = k, &v
		rt.Configs = append(rt.Configs, rc)
	}
	req.Topics = append(req.Topics, rt)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	resp, err := req.RequestWith(ctx, cl)
	if err == nil {
		err = kerr.ErrorForCode(resp.Topics[0].ErrorCode)
	}
	if err != nil {
		t.Fatalf("create %s on %s with replicas %v: %v", topic, c.name, assign, err)
	}
}

// TestFrozenMapLeaderHoldsUpNoCommit: on a three-node target the offset map's partition lives
// alone on a node that holds none of the mirrored partitions. That node is frozen (SIGSTOP) under
// load, with default commit.interval and shutdown.timeout: the source offsets of what is mirrored
// meanwhile go on being committed every interval (each commit waits for the map at most
// commit.interval), and kmirror stopped with SIGTERM exits within shutdown.timeout plus a margin.
// (Not cleanly: requests of other clients to the frozen broker, the admin client's among them,
// are not bounded by the map's deadline.)
func TestFrozenMapLeaderHoldsUpNoCommit(t *testing.T) {
	europe := startCluster(t, "europe")
	us := startCluster(t, "us", "--nodes", "3")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	meta, err := us.admin(t).BrokerMetadata(ctx)
	cancel()
	if err != nil || len(meta.Brokers) != 3 {
		t.Fatalf("target brokers: %v, %v", meta.Brokers, err)
	}
	ids := meta.Brokers.NodeIDs()
	mapNode, a, b := ids[0], ids[1], ids[2]
	us.createAssigned(t, "__kmirror.offset-map.europe", map[int32][]int32{0: {mapNode}},
		map[string]string{"cleanup.policy": "compact"})
	us.createAssigned(t, "mapfrozen", map[int32][]int32{0: {a}, 1: {b}, 2: {a}, 3: {b}}, nil)
	// The copy of kmirror's heartbeats too: with replicas on the frozen node, its writes would
	// hang as well, and the fault would no longer be the map's alone.
	us.createAssigned(t, "kmirror.heartbeats.europe", map[int32][]int32{0: {a, b}}, map[string]string{"cleanup.policy": "compact"})
	europe.createTopic(t, "mapfrozen", 4, 1, nil)

	load := startLoad(t, europe.bootstrap, "mapfrozen", 150_000, 2_000)
	t.Cleanup(func() {
		select {
		case <-load.done:
		default:
			close(load.stop)
			<-load.done
		}
	})
	cfg := strings.Replace(baseConfig(europe, us, "mapfrozen", ""), "  interval: 500ms\n", "  interval: 5s\n", 1)
	k := startKmirror(t, writeConfig(t, cfg))
	committed := func() int64 {
		var n int64
		for _, o := range europe.committedOffsets(t, "mapfrozen") {
			n += o
		}
		return n
	}
	waitFor(t, "mirroring and committing under way", 2*time.Minute, func() bool { return committed() >= 5_000 })

	us.freeze(t, mapNode)
	frozen := time.Now()
	before := committed()
	t.Logf("froze target node %d (the map's partition alone) with %d source offsets committed", mapNode, before)
	// Two commit intervals and the map's deadline: a commit must have gone through.
	var after []int64
	for range 3 {
		time.Sleep(10 * time.Second)
		after = append(after, committed())
	}
	t.Logf("figures: committed %d before the freeze, then %v at 10 s intervals while frozen", before, after)
	if after[0] <= before || after[1] <= after[0] || after[2] <= after[1] {
		t.Errorf("commits stalled with only the map's partition frozen: %d, then %v", before, after)
	}
	if gone, how := k.exited(); gone {
		t.Fatalf("kmirror exited while the map's partition was frozen: %s\n%s", how, k.tail(30))
	}

	took, code := sigterm(t, k, 60*time.Second)
	t.Logf("figures: stop took %s %s after the freeze, exit status %d", took.Round(100*time.Millisecond), time.Since(frozen).Round(time.Second), code)
	if took > 40*time.Second {
		t.Errorf("stop with only the map's partition frozen took %s: more than shutdown.timeout (30s) plus the margin\n%s",
			took.Round(100*time.Millisecond), k.tail(30))
	}
}
