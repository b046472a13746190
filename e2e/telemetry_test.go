//go:build e2e

package e2e

import (
	"bytes"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMetricsEndpointPassesPromtool runs kmirror with its HTTP endpoint against real clusters,
// checks /healthz and /readyz, and feeds a live /metrics scrape (kmirror's and sarama's metrics,
// after records were mirrored) to promtool check metrics.
func TestMetricsEndpointPassesPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian package prometheus); skipped")
	}
	europe := startCluster(t, "europe")
	us := startCluster(t, "us")
	europe.createTopic(t, "metrics", 3, 1, nil)
	kcatProduce(t, europe.bootstrap, "metrics", 0, []string{"a\t1", "b\t2", "c\t3"}, "-K", "\t")

	// sarama's bridged metrics are off by default; this test checks they pass the linter too.
	cfg := strings.Replace(baseConfig(europe, us, "metrics", ""), `listen: ""`, "listen: \"127.0.0.1:19464\"\n  sarama_metrics: true", 1)
	k := startKmirror(t, writeConfig(t, cfg))
	get := func(path string) (int, string) {
		resp, err := http.Get("http://127.0.0.1:19464" + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitFor(t, "/readyz to answer 200", time.Minute, func() bool { code, _ := get("/readyz"); return code == 200 })
	waitFor(t, "records mirrored", time.Minute, func() bool { return us.count(t, "metrics") == 3 })
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("/healthz = %d", code)
	}
	time.Sleep(time.Second) // one commit and lag update
	code, body := get("/metrics")
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{
		`kmirror_records_mirrored_total{topic="metrics"} 3`,
		"kmirror_replication_latency_seconds_bucket",
		"kmirror_unmirrored_records", "kmirror_rpo_seconds", "kmirror_partition_stalled",
		"kmirror_ring_records",
		"kmirror_sarama_",
		"kmirror_ready 1",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// The fetch loops' counters move on real brokers: a session opened once, then incremental
	// fetches naming the partitions whose positions moved.
	for _, m := range []struct {
		series string
		least  float64
	}{
		{`kmirror_fetch_requests_total{session="new"}`, 1},
		{`kmirror_fetch_requests_total{session="incremental"}`, 1},
		{`kmirror_fetch_partitions_named_total`, 1},
	} {
		v, ok := seriesValue(body, m.series)
		if !ok || v < m.least {
			t.Errorf("/metrics: %s = %v (present %v), want at least %v", m.series, v, ok, m.least)
		}
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out.String())
	}
	t.Logf("promtool check metrics: ok on a live scrape of %d lines", strings.Count(body, "\n"))
	k.stop()
}

// seriesValue returns the value of one series (name and labels exactly as exported) in a
// Prometheus text body.
func seriesValue(body, series string) (float64, bool) {
	for _, line := range strings.Split(body, "\n") {
		rest, ok := strings.CutPrefix(line, series+" ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		return v, err == nil
	}
	return 0, false
}
