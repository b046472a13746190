//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestExactlyOnceRecoversAnExpiredProducerID forces the target to forget the mirror's producer
// ids while it runs: the target expires an idle transactional id after 5 s
// (transactional.id.expiration.ms, checked every second) and a partition's producer state after
// 5 s (producer.id.expiration.ms), and the mirror is left idle for 20 s between three loads. The
// next transaction of every slot then meets a coordinator that no longer knows its producer id
// (INVALID_PRODUCER_ID_MAPPING) and partitions whose leaders no longer know its sequences. With
// default settings apart from delivery.mode exactly_once, kmirror must keep running (no exit, no
// restart) and a read_committed consumer of the target must see every source record once, in
// source order.
func TestExactlyOnceRecoversAnExpiredProducerID(t *testing.T) {
	europe := startCluster(t, "europe")
	props := filepath.Join(t.TempDir(), "expiry.properties")
	if err := os.WriteFile(props, []byte("transactional.id.expiration.ms=5000\n"+
		"transaction.remove.expired.transaction.cleanup.interval.ms=1000\n"+
		"producer.id.expiration.ms=5000\nproducer.id.expiration.check.interval.ms=1000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	us := startCluster(t, "us", "--extra-config", props)
	const topic = "eospid"
	europe.createTopic(t, topic, 6, 1, nil)
	loads := []int{startLoad(t, europe.bootstrap, topic, 3_000, 0).wait(t)}
	r := &faultRun{t: t, topic: topic, europe: europe, us: us, cfg: writeConfig(t, baseConfig(europe, us, topic, eosSettings))}
	r.k = startKmirror(t, r.cfg)
	running := map[string]*kmirror{"kmirror": r.k}
	waitCommitted(t, r, 2*time.Minute, func() { requireRunning(t, "copying the first load", running) })
	for i := range 2 {
		hold(t, 20*time.Second, fmt.Sprintf("idle after load %d", i+1), running)
		// Under load: the first transactions after the idle spell meet the expired ids while
		// records keep coming.
		loads = append(loads, startLoad(t, europe.bootstrap, topic, 3_000, 1_000).wait(t))
		waitCommitted(t, r, 2*time.Minute, func() { requireRunning(t, fmt.Sprintf("copying load %d after the idle spell", i+2), running) })
	}
	r.k.stop()
	// The expiry must have happened, or the test tested nothing.
	renewed := strings.Count(r.k.log(), "the target no longer knew the transactional producer id")
	if renewed == 0 {
		t.Fatalf("kmirror never met an expired transactional id: the idle spells tested nothing\n%s", r.k.tail(30))
	}
	checkExactlyOnce(t, r, fmt.Sprintf("loads of %v records, each after 20 s idle with transactional.id.expiration.ms=5000 "+
		"and producer.id.expiration.ms=5000 on the target; %d producer ids taken again", loads, renewed))
}
