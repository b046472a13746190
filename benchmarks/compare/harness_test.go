package main

import (
	"bytes"
	"compress/flate"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParsePacedRates(t *testing.T) {
	rates, err := parsePacedRates("10000, 25%,50%")
	if err != nil {
		t.Fatal(err)
	}
	want := []pacedRate{{fixed: 10000}, {percent: 25}, {percent: 50}}
	if len(rates) != len(want) {
		t.Fatalf("rates = %+v, want %+v", rates, want)
	}
	for i := range want {
		if rates[i] != want[i] {
			t.Fatalf("rates[%d] = %+v, want %+v", i, rates[i], want[i])
		}
	}
	if got := rates[2].resolve(200_000); got != 100_000 {
		t.Fatalf("50%% of 200000 = %d", got)
	}
	if got := rates[0].resolve(200_000); got != 10_000 {
		t.Fatalf("a fixed rate resolved to %d", got)
	}
	if rates, err := parsePacedRates(""); err != nil || len(rates) != 0 {
		t.Fatalf(`"" = %v, %v; want no runs`, rates, err)
	}
	for _, bad := range []string{"fast", "0", "-5", "0%", "150%", "x%"} {
		if _, err := parsePacedRates(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestCeilingIsTheSlowerOfTheBestProducerAndTheBestConsumer(t *testing.T) {
	c := ceilings{perfProducer: 80_000, nativeProducer: 280_000, perfConsumer: 500_000, nativeConsumer: 1_200_000}
	if got := c.ceiling(); got != 280_000 {
		t.Fatalf("ceiling = %v, want the best producer, 280000", got)
	}
	c = ceilings{perfProducer: 300_000, nativeProducer: 200_000, perfConsumer: 150_000, nativeConsumer: 100_000}
	if got := c.ceiling(); got != 150_000 {
		t.Fatalf("ceiling = %v, want the best consumer, 150000", got)
	}
}

func TestWorkloadRecordsDifferAndDoNotCompress(t *testing.T) {
	w := newWorkload(1024)
	a, b := w.record("t", 0), w.record("t", 1)
	if len(a.Value) != 1024 || bytes.Equal(a.Value, b.Value) {
		t.Fatalf("values: len %d, equal %v", len(a.Value), bytes.Equal(a.Value, b.Value))
	}
	if again := newWorkload(1024).record("t", 1); !bytes.Equal(again.Value, b.Value) || string(again.Key) != string(b.Key) {
		t.Fatal("the same seed gave other records")
	}
	if len(a.Headers) != 2 || string(b.Headers[1].Value) != "1" {
		t.Fatalf("headers = %+v", b.Headers)
	}
	var z bytes.Buffer
	fw, _ := flate.NewWriter(&z, flate.BestCompression)
	for i := 0; i < 100; i++ {
		_, _ = fw.Write(w.record("t", i).Value)
	}
	_ = fw.Close()
	if ratio := float64(100*1024) / float64(z.Len()); ratio > 1.05 {
		t.Fatalf("values compress %.2f:1; the workload is meant to be incompressible", ratio)
	}
}

func TestQuantiles(t *testing.T) {
	var d []time.Duration
	for i := 1000; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	q := quantilesOf(d)
	if q.p50 != 501*time.Millisecond || q.p99 != 991*time.Millisecond || q.p999 != 1000*time.Millisecond {
		t.Fatalf("quantiles = %+v", q)
	}
	if (quantilesOf(nil) != quantiles{}) {
		t.Fatal("no samples should give zero quantiles")
	}
}

func TestCeilingsAreMediansOfTheRounds(t *testing.T) {
	rounds := []ceilings{
		{perfProducer: 100, nativeProducer: 300, perfConsumer: 500, nativeConsumer: 900},
		{perfProducer: 200, nativeProducer: 200, perfConsumer: 700, nativeConsumer: 800},
		{perfProducer: 150, nativeProducer: 400, perfConsumer: 600, nativeConsumer: 1000},
	}
	want := ceilings{perfProducer: 150, nativeProducer: 300, perfConsumer: 600, nativeConsumer: 900}
	if got := medianCeilings(rounds); got != want {
		t.Fatalf("medians = %+v, want %+v", got, want)
	}
	if got := medianCeilings(rounds[:2]).nativeProducer; got != 250 {
		t.Fatalf("median of two = %v, want their mean 250", got)
	}
}

func TestPortBaseSeparatesTheClustersAndListeners(t *testing.T) {
	h := &harness{o: options{portBase: 14000, kafkaState: "/tmp/kk-x"}, script: "cluster.sh"}
	env := func(args ...string) []string { return h.clusterCmd(args...).Env }
	for name, want := range map[string]string{"europe": "KAFKA_PORT_BASE=14000", "us": "KAFKA_PORT_BASE=14100"} {
		e := env("up", name)
		if !slices.Contains(e, want) || !slices.Contains(e, "KMIRROR_KAFKA_STATE=/tmp/kk-x") {
			t.Errorf("cluster.sh up %s: env lacks %s or the state directory", name, want)
		}
	}
	if h.telemetryAddr() != "127.0.0.1:14300" || h.mm2RESTAddr() != "127.0.0.1:14301" {
		t.Errorf("listeners %s, %s; want 14300 and 14301", h.telemetryAddr(), h.mm2RESTAddr())
	}
	h.o.portBase = 0
	if slices.ContainsFunc(env("up", "us"), func(s string) bool { return strings.HasPrefix(s, "KAFKA_PORT_BASE=") }) {
		t.Error("without --port-base the script's own ports were overridden")
	}
	if h.telemetryAddr() != "127.0.0.1:19464" || h.mm2RESTAddr() != "127.0.0.1:18083" {
		t.Errorf("fixed listeners %s, %s", h.telemetryAddr(), h.mm2RESTAddr())
	}
}

// The machine's busy share counts every core's time but idle and iowait, and is 0 before a first
// reading.
func TestMachineBusyShare(t *testing.T) {
	from, to := machineCPU{busy: 100, all: 400}, machineCPU{busy: 250, all: 600}
	if got := to.busySince(from); got != 0.75 {
		t.Fatalf("busy share = %v, want 0.75", got)
	}
	if got := to.busySince(machineCPU{}); got != 0 {
		t.Fatalf("busy share since no reading = %v, want 0", got)
	}
	a := readMachineCPU()
	deadline := time.Now().Add(50 * time.Millisecond)
	for time.Now().Before(deadline) { // spin: this core is busy
	}
	b := readMachineCPU()
	if a.all == 0 || b.busy <= a.busy || b.busySince(a) <= 0 || b.busySince(a) > 1 {
		t.Fatalf("readings %+v then %+v (share %v)", a, b, b.busySince(a))
	}
}

// No contender always runs first: the order of the catch-up rounds and of the paced rates
// alternates.
func TestContendersTakeTurns(t *testing.T) {
	cs := []contender{{name: "a"}, {name: "b"}, {name: "c"}}
	names := func(cs []contender) (s string) {
		for _, c := range cs {
			s += c.name
		}
		return s
	}
	for i, want := range []string{"abc", "cba", "abc", "cba"} {
		if got := names(inTurn(cs, i)); got != want {
			t.Errorf("turn %d: %s, want %s", i, got, want)
		}
	}
	if names(cs) != "abc" {
		t.Errorf("inTurn reordered its argument: %s", names(cs))
	}
}
