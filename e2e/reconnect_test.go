//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestSourceBackFromOutageResumesWithinSeconds kills the source's only broker (kill -9) for 30 s
// under load, with default settings. A broker that has just started answers while it still
// loads its metadata: a listing then lacks the topics it holds, and must neither end the
// session nor drop the topic. The copy must resume within a few seconds of the broker being
// ready again, with nothing lost and the first copies in order.
func TestSourceBackFromOutageResumesWithinSeconds(t *testing.T) {
	europe := startCluster(t, "europe")
	us := startCluster(t, "us")
	const topic = "srcback"
	r := startFaultRun(t, europe, us, topic, 4, 1, nil, 150_000, 2_500, 10_000, "")

	europe.script(t, "stop-node", "europe", "1")
	t.Logf("killed the single source node with %d records on the target", us.count(t, topic))
	r.sleep(30*time.Second, "while the source was down")
	atReturn := us.count(t, topic)
	europe.script(t, "start-node", "europe", "1") // returns once the broker logged it started
	ready := time.Now()
	var resumed time.Duration
	for time.Since(ready) < 2*time.Minute && r.running("after the source returned") {
		if us.count(t, topic) > atReturn {
			resumed = time.Since(ready)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("first new record on the target %s after the source broker was ready", resumed.Round(100*time.Millisecond))
	t.Logf("kmirror from the broker's return to the first new record:\n%s", logBetween(r.k.log(), ready.Add(-time.Second), ready.Add(resumed+time.Second)))
	r.finish(ready, 3*time.Minute, fmt.Sprintf("source down 30s, resumed %s after it was ready", resumed.Round(100*time.Millisecond)))
	if resumed == 0 || resumed > 5*time.Second {
		t.Errorf("the copy resumed %s after the source was ready (0: never); want under 5s", resumed.Round(100*time.Millisecond))
	}
	if strings.Contains(r.k.log(), "no source topic matches topics.include") {
		t.Errorf("kmirror lost sight of the topic after the outage:\n%s", grepLines(r.k.log(), "no source topic matches"))
	}
}

// TestTargetSwappedBehindItsAddressStops stops the target cluster and starts a different, fresh
// cluster on the same addresses while kmirror runs: kmirror must notice the other cluster ID and
// exit non-zero naming the target alias, both IDs and what to do, having written nothing into
// the new cluster.
func TestTargetSwappedBehindItsAddressStops(t *testing.T) {
	europe := startCluster(t, "europe")
	us := startCluster(t, "us")
	const topic = "swap"
	europe.createTopic(t, topic, 2, 1, nil)
	cfg := writeConfig(t, baseConfig(europe, us, topic, ""))
	startLoad(t, europe.bootstrap, topic, 2000, 0).wait(t)
	k := startKmirror(t, cfg)
	waitFor(t, "mirrored", 2*time.Minute, func() bool { return us.count(t, topic) >= 2000 })
	oldID := us.clusterID(t)

	us.script(t, "down", "us")
	fresh := startCluster(t, "us") // same ports, new storage: another cluster ID
	newID := fresh.clusterID(t)
	if newID == oldID {
		t.Fatalf("the fresh cluster has the old one's ID %s", oldID)
	}
	t.Logf("target swapped: cluster ID %s → %s", oldID, newID)
	load := startLoad(t, europe.bootstrap, topic, 100_000, 2_000) // records kmirror would write
	defer func() { close(load.stop); <-load.done }()

	code := k.waitExit(2 * time.Minute)
	if code == 0 {
		t.Fatalf("kmirror exited 0 after the target was swapped\n%s", k.tail(30))
	}
	want := regexp.MustCompile(`target.*us.*` + regexp.QuoteMeta(oldID) + `.*` + regexp.QuoteMeta(newID))
	if !want.MatchString(k.errors()) {
		t.Errorf("the error does not name the target alias, the expected ID %s and the found ID %s:\n%s", oldID, newID, k.errors())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topics, err := fresh.admin(t).ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var written []string
	for _, d := range topics.Sorted() {
		if !strings.HasPrefix(d.Topic, "__") {
			written = append(written, fmt.Sprintf("%s (%d records)", d.Topic, fresh.count(t, d.Topic)))
		}
	}
	t.Logf("figures: kmirror exited %d; topics kmirror created on the new cluster: %d", code, len(written))
	if len(written) > 0 {
		t.Errorf("kmirror wrote into the new cluster: %v", written)
	}
}

// clusterID returns the cluster ID the brokers report.
func (c *cluster) clusterID(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	md, err := c.admin(t).BrokerMetadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return md.Cluster
}

// logBetween returns the time and message of kmirror's JSON log lines stamped between from and to.
func logBetween(log string, from, to time.Time) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		var e struct {
			TS    time.Time `json:"ts"`
			Msg   string    `json:"msg"`
			Error string    `json:"error"`
		}
		if json.Unmarshal([]byte(l), &e) != nil || e.TS.Before(from) || e.TS.After(to) {
			continue
		}
		out = append(out, fmt.Sprintf("%s %s %s", e.TS.Format("15:04:05.000"), e.Msg, e.Error))
	}
	return strings.Join(out, "\n")
}
