//go:build e2e

package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kmirror/kmirror/benchmarks/wan"
)

// The WAN-cut tests put kmirror on one side of an 80 ms round trip (a latency proxy in front of
// the other cluster's remote listener, which advertises the proxy: benchmarks/wan), copy under a
// steady load with kmirror's default settings, and cut the link twice for 20 s: first a stall
// (no byte passes either way, connections stay open and what was sent is delivered when the
// link comes back, as a path that drops every packet and TCP resending would do), then a break
// (every connection closed, new ones refused). The independent client reads both clusters
// directly: no record lost, the first copies in source order, duplicates only as whole re-runs,
// counted and reported; kmirror keeps running throughout.

// wanLink opens a latency proxy at rtt in front of every broker of c (started with
// --remote-listener) and returns it with the cluster as a client behind the WAN sees it.
func wanLink(t *testing.T, c *cluster, rtt time.Duration) (*wan.Link, *cluster) {
	t.Helper()
	out, err := clusterCmd(filepath.Join(c.root, "scripts", "kafka", "cluster.sh"), c.name, "remote", c.name).Output()
	if err != nil {
		t.Fatalf("cluster.sh remote %s: %v", c.name, err)
	}
	routes, err := wan.ParseRoutes(string(out))
	if err != nil {
		t.Fatalf("cluster.sh remote %s: %v", c.name, err)
	}
	link, err := wan.Open(routes)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(link.Close)
	if err := link.SetRTT(rtt); err != nil {
		t.Fatal(err)
	}
	return link, &cluster{name: c.name, root: c.root, bootstrap: link.Addrs()}
}

// wanCut runs the scenario with the remote cluster ("europe": kmirror near the target, it
// fetches across the WAN; "us": near the source, it produces across it) behind the proxy.
func wanCut(t *testing.T, remote string) {
	const (
		topic = "wancut"
		rtt   = 80 * time.Millisecond
		cut   = 20 * time.Second
		rate  = 2_000 // records/s, ~230 bytes each, over 6 partitions
	)
	var europe, us *cluster
	if remote == "europe" {
		europe, us = startCluster(t, "europe", "--remote-listener"), startCluster(t, "us")
	} else {
		europe, us = startCluster(t, "europe"), startCluster(t, "us", "--remote-listener")
	}
	var link *wan.Link
	src, dst := europe, us
	if remote == "europe" {
		link, src = wanLink(t, europe, rtt)
	} else {
		link, dst = wanLink(t, us, rtt)
	}

	europe.createTopic(t, topic, 6, 1, nil)
	r := &faultRun{t: t, topic: topic, europe: europe, us: us}
	// Enough records for the whole scenario at rate: warm-up, two cuts and what lies between.
	r.load = startLoad(t, europe.bootstrap, topic, 110*rate, rate)
	r.load.stopAtCleanup(t)
	r.cfg = writeConfig(t, baseConfig(src, dst, topic, ""))
	r.k = startKmirror(t, r.cfg)
	waitFor(t, "mirroring under way across the WAN", 2*time.Minute, func() bool { return us.count(t, topic) >= 10*rate })
	// With the defaults, the far side counts as distant: larger fetches near the target, a
	// longer linger near the source. What the cuts test is the mirror as it runs across a WAN.
	distant := "the target is distant"
	if remote == "europe" {
		distant = "the source is distant"
	}
	if !strings.Contains(r.k.log(), distant) {
		t.Fatalf("kmirror did not log %q with the %s 80 ms away:\n%s", distant, remote, lastLines(r.k.log(), 20))
	}
	r.sleep(5*time.Second, "at 80 ms before the cut")

	var ended time.Time
	for _, c := range []struct {
		how  string
		cut  func() error
		heal time.Duration // how long the link stays up after this cut
	}{
		{"stalled", link.Stall, 25 * time.Second},
		{"broken", func() error { link.Break(); return nil }, 0},
	} {
		before := us.count(t, topic)
		if err := c.cut(); err != nil {
			t.Fatal(err)
		}
		t.Logf("site cut: WAN link to %s %s for %s (target %d records, %d produced)", remote, c.how, cut, before, r.load.count())
		r.sleep(cut, "while the WAN link was "+c.how)
		during := us.count(t, topic) - before
		if err := link.Mend(); err != nil {
			t.Fatal(err)
		}
		ended = time.Now()
		t.Logf("site cut: WAN link to %s mended after %s %s; the target took %d records meanwhile", remote, c.how, cut, during)
		r.sleep(c.heal, "after the WAN link came back")
	}
	r.finish(ended, 3*time.Minute, fmt.Sprintf("WAN link to %s at %s stalled %s then broken %s", remote, rtt, cut, cut))
	// What the duplicates come from (a lost session and its re-run, resends), for the reader.
	t.Logf("kmirror's warnings and pipeline figures:\n%s", r.k.warnings(16))
}

// TestWANCutNearSourceLosesNothing: kmirror next to the source produces to the target across
// 80 ms; the link is stalled, then broken, 20 s each, under load.
func TestWANCutNearSourceLosesNothing(t *testing.T) { wanCut(t, "us") }

// TestWANCutNearTargetLosesNothing: kmirror next to the target fetches from the source across
// 80 ms (the consumer group's coordinator is behind the WAN too); the link is stalled, then
// broken, 20 s each, under load.
func TestWANCutNearTargetLosesNothing(t *testing.T) { wanCut(t, "europe") }
