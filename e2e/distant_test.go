//go:build e2e

package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kmirror/kmirror/benchmarks/wan"
)

// TestDistantSourceCrashLosesNothing: the source is 40 ms away (a latency proxy in front of its
// remote listener, which advertises the proxy), so kmirror with its defaults fetches whole batches
// (consumer.distant_rtt). Under load, with a backlog of large batches, it is killed -9 and
// restarted: every source record is on the target, unchanged, and the first copies are in source
// order.
func TestDistantSourceCrashLosesNothing(t *testing.T) {
	europe := startCluster(t, "europe", "--remote-listener")
	us := startCluster(t, "us")
	out, err := clusterCmd(filepath.Join(europe.root, "scripts", "kafka", "cluster.sh"), "europe", "remote", "europe").Output()
	if err != nil {
		t.Fatalf("cluster.sh remote europe: %v", err)
	}
	routes, err := wan.ParseRoutes(string(out))
	if err != nil {
		t.Fatalf("cluster.sh remote europe: %v", err)
	}
	link, err := wan.Open(routes)
	if err != nil {
		t.Fatal(err)
	}
	defer link.Close()
	if err := link.SetRTT(40 * time.Millisecond); err != nil {
		t.Fatal(err)
	}

	europe.createTopic(t, "distant", 6, 1, nil)
	backlog := startLoad(t, europe.bootstrap, "distant", 60_000, 0) // unpaced: batches of up to 1 MiB
	preloaded := backlog.wait(t)
	remote := &cluster{name: "europe", bootstrap: link.Addrs()}
	cfg := writeConfig(t, baseConfig(remote, us, "distant", ""))

	load := startLoad(t, europe.bootstrap, "distant", 60_000, 10_000)
	k := startKmirror(t, cfg)
	waitFor(t, "mirroring under way", 2*time.Minute, func() bool { return us.count(t, "distant") > 20_000 })
	if !strings.Contains(k.log(), "the source is distant") {
		t.Fatalf("kmirror did not take the source 40 ms away as distant:\n%s", lastLines(k.log(), 20))
	}
	k.kill()
	t.Logf("killed kmirror -9 with %d records on the target, %d produced", us.count(t, "distant"), preloaded+load.count())
	time.Sleep(2 * time.Second)

	k2 := startKmirror(t, cfg)
	produced := preloaded + load.wait(t)
	waitFor(t, "catch-up after the crash", 3*time.Minute, func() bool { return us.count(t, "distant") >= int64(produced) })
	time.Sleep(2 * time.Second) // let any redelivery land before counting
	k2.stop()
	rep := compareReport(t, europe, us, map[string]string{"distant": "distant"})
	logFigures(t, rep, "source 40 ms away, whole-batch fetches, 1 kill -9")
	if !rep.Complete() {
		t.Fatalf("records lost or reordered from a distant source after kill -9:\n%s", rep)
	}
}
