//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kmirror/kmirror/pkg/heartbeat"
)

// flowConfig is one direction of an active-active pair: identity naming with the provenance header
// (an identity pair needs it: run refuses a second flow that would copy the first one's copies
// back), default heartbeats.
func flowConfig(srcName string, src *cluster, dstName string, dst *cluster, include, listen string) string {
	return fmt.Sprintf(`
source:
  alias: %s
  bootstrap: [%s]
  metadata_refresh: 2s
target:
  alias: %s
  bootstrap: [%s]
topics:
  include: [%q]
  refresh_interval: 2s
  provenance_header: true
consumer:
  group_id: kmirror-%s
  session_timeout: 10s
  heartbeat_interval: 1s
commit:
  interval: 500ms
telemetry:
  listen: %q
log:
  format: json
`, srcName, strings.Join(src.bootstrap, ", "), dstName, strings.Join(dst.bootstrap, ", "), include, srcName, listen)
}

// metricValue reads an unlabelled sample from a /metrics scrape.
func metricValue(t *testing.T, body, name string) float64 {
	t.Helper()
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("%s: %v", l, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics lacks %s", name)
	return 0
}

// heartbeatsOf reads every record of a heartbeat topic with franz-go and parses it.
func heartbeatsOf(t *testing.T, c *cluster, topic string) []heartbeat.Heartbeat {
	t.Helper()
	end := c.count(t, topic)
	if end <= 0 {
		t.Fatalf("%s on %s holds nothing (%d)", topic, c.name, end)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.bootstrap...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out []heartbeat.Heartbeat
	var last int64 = -1
	for last < end-1 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %s on %s: %v (at offset %d of %d)", topic, c.name, ctx.Err(), last, end)
		}
		fs.EachRecord(func(r *kgo.Record) {
			h, err := heartbeat.Parse(r.Key, r.Value)
			if err != nil {
				t.Fatalf("%s on %s offset %d: %v", topic, c.name, r.Offset, err)
			}
			out = append(out, h)
			last = r.Offset
		})
	}
	return out
}

// TestActiveActiveHeartbeats runs both flows of an active-active pair, europe→us and us→europe,
// as two kmirror processes with idle business topics for about 20 s: each target receives its
// source's heartbeats about every second, the latency metric on /metrics is plausible, kcat on
// the target prints the last heartbeat as docs/heartbeats.md says, and nothing loops: each cluster holds
// its own heartbeats (each once) and the other's copies, and no other heartbeat topic.
func TestActiveActiveHeartbeats(t *testing.T) {
	europe := startCluster(t, "europe")
	us := startCluster(t, "us")
	europe.createTopic(t, "orders", 3, 1, nil) // idle
	us.createTopic(t, "payments", 3, 1, nil)   // idle
	flows := []struct {
		from, to     string
		src, dst     *cluster
		include, url string
	}{
		{"europe", "us", europe, us, "orders", "127.0.0.1:19465"},
		{"us", "europe", us, europe, "payments", "127.0.0.1:19466"},
	}
	var procs []*kmirror
	for _, f := range flows {
		procs = append(procs, startKmirror(t, writeConfig(t, flowConfig(f.from, f.src, f.to, f.dst, f.include, f.url))))
	}
	for _, f := range flows {
		waitFor(t, f.from+"→"+f.to+" ready", 2*time.Minute, func() bool {
			resp, err := http.Get("http://" + f.url + "/readyz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == 200
		})
	}
	began := time.Now()
	time.Sleep(20 * time.Second)

	var figures []string
	for _, f := range flows {
		body := scrape(t, "http://"+f.url+"/metrics")
		latency := metricValue(t, body, "kmirror_heartbeat_latency_seconds")
		last := metricValue(t, body, "kmirror_heartbeat_last_timestamp_seconds")
		emitted := metricValue(t, body, "kmirror_heartbeats_emitted_total")
		failed := metricValue(t, body, "kmirror_heartbeat_errors_total")
		age := time.Since(time.UnixMilli(int64(last * 1000)))
		if latency <= 0 || latency > 2 || age > 5*time.Second || age < 0 {
			t.Errorf("%s→%s: heartbeat latency %.3f s, last heartbeat %s old; want a latency in (0, 2] s and an age under 5 s", f.from, f.to, latency, age)
		}
		if emitted < 18 || failed != 0 {
			t.Errorf("%s→%s: %v heartbeats emitted, %v failed, in over 20 s", f.from, f.to, emitted, failed)
		}
		figures = append(figures, fmt.Sprintf("%s→%s latency metric %.1f ms", f.from, f.to, latency*1000))
	}
	// What a person on us sees without kmirror (the one-liner of docs/heartbeats.md).
	out, err := exec.Command("kcat", "-C", "-b", strings.Join(us.bootstrap, ","), "-t", "kmirror.heartbeats.europe", "-o", "-1", "-e", "-q",
		"-f", "%k %s\n").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), `europe->us {"origin":"europe","target":"us","emitted":"`) {
		t.Errorf("kcat on us: %v\n%s", err, out)
	} else {
		t.Logf("kcat on us: %s", strings.TrimSpace(string(out)))
	}
	for _, k := range procs {
		k.stop()
	}
	ran := time.Since(began)

	for _, f := range flows {
		own := heartbeatsOf(t, f.src, "kmirror.heartbeats."+f.from)
		copies := heartbeatsOf(t, f.dst, "kmirror.heartbeats."+f.from)
		key := f.from + "->" + f.to
		seen := map[int64]bool{}
		for _, h := range own {
			if string(h.Key()) != key || seen[h.EmittedMs] {
				t.Errorf("%s holds %+v: want each of its own heartbeats (%s) once", f.from, h, key)
			}
			seen[h.EmittedMs] = true
		}
		// The copies are the heartbeats written at home, in order, up to where the mirror stopped.
		if len(copies) > len(own) || len(copies) < len(own)-3 {
			t.Errorf("%d of %s's %d heartbeats reached %s", len(copies), f.from, len(own), f.to)
		}
		for i := range min(len(copies), len(own)) {
			if copies[i] != own[i] {
				t.Fatalf("copy %d on %s is %+v, the original %+v", i, f.to, copies[i], own[i])
			}
		}
		var gaps []time.Duration
		for i := 1; i < len(copies); i++ {
			gaps = append(gaps, copies[i].Time().Sub(copies[i-1].Time()))
		}
		slices.Sort(gaps)
		if len(gaps) < 18 {
			t.Fatalf("%s received %d heartbeats of %s in %s", f.to, len(copies), f.from, ran)
		}
		median, longest := gaps[len(gaps)/2], gaps[len(gaps)-1]
		if median < 900*time.Millisecond || median > 1100*time.Millisecond || longest > 3*time.Second {
			t.Errorf("%s→%s: heartbeats %s apart (median), %s at most; want about a second", f.from, f.to, median, longest)
		}
		figures = append(figures, fmt.Sprintf("%s→%s %d heartbeats written, %d copied, %s apart (median), %s at most",
			f.from, f.to, len(own), len(copies), median.Round(time.Millisecond), longest.Round(time.Millisecond)))
	}
	looped := 0
	for _, c := range []*cluster{europe, us} {
		names, err := c.admin(t).ListTopics(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var hb []string
		for _, name := range names.Names() {
			if strings.Contains(name, "heartbeats") {
				hb = append(hb, name)
			}
		}
		slices.Sort(hb)
		if want := []string{"kmirror.heartbeats.europe", "kmirror.heartbeats.us"}; !slices.Equal(hb, want) {
			looped++
			t.Errorf("%s holds heartbeat topics %v, want %v", c.name, hb, want)
		}
	}
	t.Logf("figures: %s, topics with a doubled origin %d, ran %s", strings.Join(figures, "; "), looped, ran.Round(time.Second))
}
