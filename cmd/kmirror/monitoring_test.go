package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.yaml.in/yaml/v3"
)

// metricName finds the metric names in a PromQL expression: kmirror's own families and the
// process_/go_ collectors it registers. Label names and values never start with these prefixes
// in kmirror's rules and dashboard, and the test fails on a name it cannot find, so a false
// match shows up rather than hides.
var metricName = regexp.MustCompile(`\b(?:kmirror|process|go)_[a-zA-Z0-9_]+\b`)

// fromPrometheus are names Prometheus makes itself (not in any scrape).
var fromPrometheus = map[string]bool{"up": true}

// TestAlertsAndDashboardUseMetricsKmirrorExports runs the real binary against two embedded
// clusters (consumer groups synced, heartbeats on, records mirrored) and scrapes it: every
// metric named by an alert expression (deploy/prometheus/kmirror-rules.yaml) and by a dashboard
// query or variable (deploy/grafana/kmirror-dashboard.json) must be in the scrape, so an alert
// cannot wait on a series that never exists. It also checks that sarama's bridged metrics are
// off by default and on with telemetry.sarama_metrics.
func TestAlertsAndDashboardUseMetricsKmirrorExports(t *testing.T) {
	bin := buildBinary(t)
	europe, us := startPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(europe.Addrs()...), kgo.DefaultProduceTopic("orders"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 3, 1, nil, "orders"); err != nil {
		t.Fatal(err)
	}
	const n = 300
	// scrape produces n records, runs kmirror with extra telemetry settings until it has mirrored
	// them (and done the rest below), and returns its last scrape.
	scrape := func(extra string) string {
		for i := 0; i < n; i++ {
			cl.Produce(ctx, &kgo.Record{Key: []byte(strconv.Itoa(i % 10)), Value: []byte(fmt.Sprint("order-", i))}, nil)
		}
		if err := cl.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		addr := freeAddr(t)
		cfgPath := filepath.Join(t.TempDir(), "kmirror.yaml")
		cfg := fmt.Sprintf(`
source: {alias: europe, bootstrap: [%q]}
target: {alias: us, bootstrap: [%q]}
topics: {include: [orders], refresh_interval: 1s}
commit: {interval: 100ms}
groups: {include: [".*"], sync_interval: 1s}
heartbeats: {enabled: true, interval: 200ms}
telemetry: {listen: %q%s}
log: {format: json}
`, europe.Addrs()[0], us.Addrs()[0], addr, extra)
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		logs := &syncBuffer{}
		cmd := exec.Command(bin, "run", "--config", cfgPath)
		cmd.Stdout, cmd.Stderr = logs, logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		defer func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			<-exited
		}()
		var body string
		deadline := time.Now().Add(60 * time.Second)
		for {
			body = get(addr, "/metrics")
			// Mirrored, a heartbeat acknowledged, a group-sync round done and the backlog worked
			// out (once a second): every family a healthy flow has.
			if sample(body, `kmirror_records_mirrored_total{topic="orders"}`) >= n &&
				sample(body, "kmirror_heartbeat_last_timestamp_seconds") > 0 &&
				sample(body, "kmirror_group_sync_last_timestamp_seconds") > 0 &&
				strings.Contains(body, "\nkmirror_rpo_seconds{") {
				return body
			}
			select {
			case err := <-exited:
				exited <- err
				t.Fatalf("kmirror exited (%v):\n%s", err, logs.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("kmirror did not mirror %d records, acknowledge a heartbeat and sync groups within 60s; last scrape:\n%s\nlog:\n%s", n, body, logs.String())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	body := scrape("")
	exported := families(body)
	t.Logf("default scrape: %d lines, %d families", strings.Count(body, "\n"), len(exported))

	var missing []string
	for _, use := range alertMetrics(t) {
		if !exported[use.metric] && !fromPrometheus[use.metric] {
			missing = append(missing, fmt.Sprintf("alert %s uses %s", use.where, use.metric))
		}
	}
	for _, use := range dashboardMetrics(t) {
		if !exported[use.metric] {
			missing = append(missing, fmt.Sprintf("dashboard %s uses %s", use.where, use.metric))
		}
	}
	if len(missing) > 0 {
		t.Errorf("metrics not in a live kmirror's scrape:\n%s", strings.Join(missing, "\n"))
	}

	if n := countPrefix(body, "kmirror_sarama_"); n != 0 {
		t.Errorf("sarama's bridged metrics are on by default: %d lines of kmirror_sarama_*", n)
	}
	on := scrape(", sarama_metrics: true")
	if n := countPrefix(on, "kmirror_sarama_"); n == 0 {
		t.Errorf("telemetry.sarama_metrics: true exports no kmirror_sarama_* line")
	} else {
		t.Logf("with telemetry.sarama_metrics: true: %d of %d lines are kmirror_sarama_*", n, strings.Count(on, "\n"))
	}
}

type metricUse struct{ where, metric string }

func alertMetrics(t *testing.T) []metricUse {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "prometheus", "kmirror-rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Groups []struct {
			Rules []struct{ Alert, Record, Expr string }
		}
	}
	if err := yaml.Unmarshal(b, &file); err != nil {
		t.Fatal(err)
	}
	var uses []metricUse
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			names := metricName.FindAllString(r.Expr, -1)
			if r.Expr == "up" || strings.Contains(r.Expr, "up{") {
				names = append(names, "up")
			}
			if len(names) == 0 {
				t.Errorf("rule %s%s: no metric name found in %q", r.Alert, r.Record, r.Expr)
			}
			for _, m := range names {
				uses = append(uses, metricUse{r.Alert + r.Record, m})
			}
		}
	}
	if len(uses) == 0 {
		t.Fatal("no alert expressions found")
	}
	return uses
}

func dashboardMetrics(t *testing.T) []metricUse {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "grafana", "kmirror-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Templating struct {
			List []struct {
				Name       string
				Definition string
			}
		}
		Panels []dashPanel
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	var uses []metricUse
	for _, v := range d.Templating.List {
		for _, m := range metricName.FindAllString(v.Definition, -1) {
			uses = append(uses, metricUse{"variable $" + v.Name, m})
		}
	}
	var walk func(ps []dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				names := metricName.FindAllString(tg.Expr, -1)
				if len(names) == 0 {
					t.Errorf("panel %q: no metric name found in %q", p.Title, tg.Expr)
				}
				for _, m := range names {
					uses = append(uses, metricUse{fmt.Sprintf("panel %q", p.Title), m})
				}
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	if len(uses) == 0 {
		t.Fatal("no dashboard queries found")
	}
	return uses
}

type dashPanel struct {
	Title   string
	Targets []struct{ Expr string }
	Panels  []dashPanel
}

// families returns the metric names in a text exposition, with a histogram's or summary's
// _bucket, _sum and _count samples also under the family name.
func families(body string) map[string]bool {
	out := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "# TYPE ") {
			f := strings.Fields(line)
			if len(f) >= 4 && (f[3] == "histogram" || f[3] == "summary") {
				out[f[2]] = true
			}
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		name := line
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name = line[:i]
		}
		out[name] = true
	}
	return out
}

// sample returns the value of the first sample line that starts with series, or -1.
func sample(body, series string) float64 {
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, series+" ") {
			v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(line, series)), 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

func countPrefix(body, prefix string) int {
	n := 0
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, prefix) {
			n++
		}
	}
	return n
}

func get(addr, path string) string {
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// freeAddr returns a loopback address nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
