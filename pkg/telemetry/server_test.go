package telemetry

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	gometrics "github.com/rcrowley/go-metrics"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// startServer runs a Server on a free loopback port until the test ends.
func startServer(t *testing.T, cfg ServerConfig, reg prometheus.Gatherer, ready func() error) *Server {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	srv, err := NewServer(cfg, reg, ready, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after its context was cancelled")
		}
	})
	return srv
}

func get(t *testing.T, url string, header ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func TestHealthzAndReadyz(t *testing.T) {
	reg := prometheus.NewRegistry()
	var notReady atomic.Pointer[error]
	reason := errors.New("not in a consumer-group session")
	notReady.Store(&reason)
	srv := startServer(t, ServerConfig{}, reg, func() error {
		if p := notReady.Load(); p != nil {
			return *p
		}
		return nil
	})
	base := "http://" + srv.Addr()

	if code, _, _ := get(t, base+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz = %d while not ready, want 200: liveness must not depend on the clusters", code)
	}
	if code, _, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "consumer-group session") {
		t.Fatalf("/readyz = %d %q, want 503 with the reason", code, body)
	}
	notReady.Store(nil)
	if code, _, _ := get(t, base+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz = %d once ready, want 200", code)
	}
}

func TestPprofIsServedOnlyWhenEnabled(t *testing.T) {
	for _, enabled := range []bool{false, true} {
		srv := startServer(t, ServerConfig{Pprof: enabled}, prometheus.NewRegistry(), nil)
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/debug/pprof/cmdline"} {
			code, _, _ := get(t, "http://"+srv.Addr()+path)
			if enabled && code != http.StatusOK || !enabled && code != http.StatusNotFound {
				t.Errorf("pprof=%v: %s = %d", enabled, path, code)
			}
		}
	}
}

func TestMetricsEndpointNegotiatesOpenMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	touchAll(t, m)
	srv := startServer(t, ServerConfig{}, reg, nil)
	url := "http://" + srv.Addr() + "/metrics"

	code, h, body := get(t, url)
	if code != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "text/plain") ||
		!strings.Contains(body, `kmirror_records_mirrored_total{topic="orders"} 3`) {
		t.Fatalf("/metrics = %d %s, records counter missing:\n%.400s", code, h.Get("Content-Type"), body)
	}
	code, h, body = get(t, url, "Accept", "application/openmetrics-text;version=1.0.0")
	if code != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "application/openmetrics-text") ||
		!strings.HasSuffix(body, "# EOF\n") {
		t.Fatalf("/metrics with OpenMetrics accepted = %d %s, want OpenMetrics ending in # EOF", code, h.Get("Content-Type"))
	}
}

// TestMetricsScrapePassesPromtool scrapes a server on which every kmirror metric and a bridged
// sarama registry have values, and runs `promtool check metrics` on the scrape. It is skipped
// where promtool is not installed (Debian package prometheus).
func TestMetricsScrapePassesPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (apt-get install prometheus); skipped")
	}
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	touchAll(t, m)
	r := gometrics.NewRegistry()
	gometrics.GetOrRegisterMeter("request-rate-for-broker-1", r).Mark(3)
	gometrics.GetOrRegisterHistogram("request-latency-in-ms", r, gometrics.NewUniformSample(8)).Update(12)
	gometrics.GetOrRegisterCounter("consumer-group-join-total-kmirror", r).Inc(1)
	sc := NewSaramaCollector()
	sc.Add("consumer", r)
	reg.MustRegister(sc)
	srv := startServer(t, ServerConfig{}, reg, nil)

	_, _, body := get(t, "http://"+srv.Addr()+"/metrics")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out.String())
	}
	t.Logf("promtool check metrics: ok on %d lines", strings.Count(body, "\n"))
}

func TestRunShutsDownGracefullyWhenCancelled(t *testing.T) {
	// A scrape that is in progress when the context ends still gets its answer.
	slow := make(chan struct{})
	reg := prometheus.NewRegistry()
	reg.MustRegister(slowCollector{slow})
	srv, err := NewServer(ServerConfig{Listen: "127.0.0.1:0"}, reg, nil, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()

	scraped := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + srv.Addr() + "/metrics")
		if err != nil {
			scraped <- "error: " + err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		scraped <- string(b)
	}()
	time.Sleep(100 * time.Millisecond) // the scrape is now waiting on the slow collector
	cancel()
	select {
	case err := <-done:
		t.Fatalf("Run returned (%v) while a scrape was in progress", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(slow)
	if body := <-scraped; !strings.Contains(body, "kmirror_test_slow 1") {
		t.Fatalf("the scrape in progress got %q", body)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get("http://" + srv.Addr() + "/healthz"); err == nil {
		t.Fatal("the listener still accepts after Run returned")
	}
}

func TestNewServerRejectsBadConfig(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := NewServer(ServerConfig{}, reg, nil, nil); err == nil {
		t.Error("an empty listen address must be refused")
	}
	if _, err := NewServer(ServerConfig{Listen: "127.0.0.1:99999"}, reg, nil, nil); err == nil || !strings.Contains(err.Error(), "telemetry.listen") {
		t.Errorf("a bad port: %v, want an error naming telemetry.listen", err)
	}
	if _, err := NewServer(ServerConfig{Listen: "127.0.0.1:0"}, nil, nil, nil); err == nil {
		t.Error("a nil registry must be refused")
	}
}

func TestHandlerServesWithoutAListener(t *testing.T) {
	srv, err := NewServer(ServerConfig{Listen: "127.0.0.1:0"}, prometheus.NewRegistry(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.ln.Close()
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/readyz with no readiness check = %d, want 200", rec.Code)
	}
}

// slowCollector answers a scrape only once its channel is closed.
type slowCollector struct{ release chan struct{} }

var slowDesc = prometheus.NewDesc("kmirror_test_slow", "A slow metric.", nil, nil)

func (c slowCollector) Describe(ch chan<- *prometheus.Desc) { ch <- slowDesc }

func (c slowCollector) Collect(ch chan<- prometheus.Metric) {
	<-c.release
	ch <- prometheus.MustNewConstMetric(slowDesc, prometheus.GaugeValue, 1)
}

// TestStartupzSaysStartedIndependentlyOfReadiness: /startupz answers 503 until the process has
// started its work and 200 afterwards, even while /readyz is 503 (clusters unreachable).
func TestStartupzSaysStartedIndependentlyOfReadiness(t *testing.T) {
	var started atomic.Bool
	srv := startServer(t, ServerConfig{Started: func() error {
		if !started.Load() {
			return errors.New("the mirror is not running")
		}
		return nil
	}}, prometheus.NewRegistry(), func() error { return errors.New("not connected to both clusters yet") })
	base := "http://" + srv.Addr()
	if code, _, body := get(t, base+"/startupz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "not running") {
		t.Fatalf("/startupz = %d %q before the start, want 503 with the reason", code, body)
	}
	started.Store(true)
	if code, _, _ := get(t, base+"/startupz"); code != http.StatusOK {
		t.Fatalf("/startupz = %d once started, want 200", code)
	}
	if code, _, _ := get(t, base+"/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz = %d with the clusters unreachable, want 503", code)
	}
}

// TestIndexListsTheEndpoints: / lists every endpoint, the extra routes with what they serve;
// any other unknown path is 404.
func TestIndexListsTheEndpoints(t *testing.T) {
	s, err := NewServer(ServerConfig{Listen: "127.0.0.1:0",
		Routes: map[string]http.Handler{"/status": http.NotFoundHandler()},
		About:  map[string]string{"/status": "per partition lag"}}, prometheus.NewRegistry(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	for _, want := range []string{"/metrics", "/healthz", "/startupz", "/readyz", "/status", "per partition lag"} {
		if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), want) {
			t.Fatalf("GET /: %d, want %q listed:\n%s", rec.Code, want, rec.Body.String())
		}
	}
	rec = httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/nope", nil))
	if rec.Code != http.StatusNotFound {
		t.Fatalf("GET /nope: %d, want 404", rec.Code)
	}
}
