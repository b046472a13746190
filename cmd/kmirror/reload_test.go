package main

import (
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
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kmirror/kmirror/pkg/status"
	"github.com/kmirror/kmirror/pkg/verify"
)

// TestSIGHUPReloadsAndStatusShowsThePartitions runs the real binary: `kmirror status` prints
// every mirrored partition (and --json the same as /status, listed on the index at /); SIGHUP
// with a topic added to topics.include mirrors it (every record, in order) and logs the key that
// changed; SIGHUP with a typo'd file, or with a change that needs a restart, is refused with
// the key named and the daemon goes on; SIGTERM still stops it cleanly (exit 0).
func TestSIGHUPReloadsAndStatusShowsThePartitions(t *testing.T) {
	bin := buildBinary(t)
	europe, us := startPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(europe.Addrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	for topic, n := range map[string]int{"audit": 100, "extra": 50} {
		if _, err := adm.CreateTopic(ctx, 2, 1, nil, topic); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte(fmt.Sprint(i)), Value: []byte(fmt.Sprint(topic, "-", i))}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := ln.Addr().String()
	ln.Close()
	cfgPath := filepath.Join(t.TempDir(), "kmirror.yaml")
	level := "info"
	write := func(extra string) {
		t.Helper()
		if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
source: {bootstrap: [%q]}
target: {bootstrap: [%q]}
commit: {interval: 100ms}
telemetry: {listen: %q}
log: {format: json, level: %s}
%s
`, europe.Addrs()[0], us.Addrs()[0], listen, level, extra)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("topics: {include: [audit], refresh_interval: 1s}")
	daemon := exec.Command(bin, "run", "--config", cfgPath)
	logs := &syncBuffer{}
	daemon.Stdout, daemon.Stderr = logs, logs
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- daemon.Wait() }()
	defer func() { _ = daemon.Process.Kill(); <-exited }()
	waitUntil := func(what string, d time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(d)
		for !cond() {
			select {
			case err := <-exited:
				t.Fatalf("the daemon exited (%v) while waiting for %s:\n%s", err, what, logs.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; logs:\n%s", what, logs.String())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	// status: the table names both partitions of audit, caught up, and exits 0 once ready.
	var out []byte
	waitUntil("kmirror status to show audit caught up", time.Minute, func() bool {
		out, err = exec.Command(bin, "status", "--config", cfgPath).CombinedOutput()
		return err == nil && strings.Contains(string(out), "lag 0 records") &&
			partitionLine.Match(out) && regexp.MustCompile(`(?m)^audit\s+audit\s+1\s+0\s+0\s+0s\s+ok$`).Match(out)
	})
	t.Logf("kmirror status:\n%s", out)
	out, err = exec.Command(bin, "status", "--addr", listen, "--json").Output()
	var rep status.Report
	if jerr := json.Unmarshal(out, &rep); err != nil || jerr != nil || rep.Partitions != 3 || !rep.Ready || rep.Topics[0].Source != "audit" {
		t.Fatalf("kmirror status --json: %v %v\n%s", err, jerr, out)
	}
	if rep.Heartbeat == nil || rep.Heartbeat.MirroredAt.IsZero() {
		t.Fatalf("kmirror status --json: no heartbeat mirrored: %+v", rep.Heartbeat)
	}
	resp, err := http.Get("http://" + listen + "/")
	if err != nil {
		t.Fatal(err)
	}
	index, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"/status", "/readyz", "/metrics", "/offsets/translate"} {
		if resp.StatusCode != 200 || !strings.Contains(string(index), want) {
			t.Fatalf("GET /: %d, want %s listed:\n%s", resp.StatusCode, want, index)
		}
	}

	// SIGHUP with extra included and the log level lowered: extra mirrored, the changes logged
	// by key, debug lines from then on (none before).
	if strings.Contains(logs.String(), `"level":"debug"`) {
		t.Fatal("a debug line at log.level info")
	}
	level = "debug"
	write("topics: {include: [audit, extra], refresh_interval: 1s}")
	if err := daemon.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitUntil("the reload logged", 30*time.Second, func() bool {
		return strings.Contains(logs.String(), `"configuration reloaded"`) && strings.Contains(logs.String(), `"changed":["log.level","topics.include"]`)
	})
	waitUntil("debug lines after log.level: debug was reloaded", 30*time.Second, func() bool {
		return strings.Contains(logs.String(), `"level":"debug"`)
	})
	waitUntil("extra mirrored after the reload", time.Minute, func() bool {
		n, _ := verify.EndOffsets(ctx, kadmFor(t, us.Addrs()), "extra")
		return n == 50
	})
	rc, err := verify.Compare(ctx, europe.Addrs(), us.Addrs(), map[string]string{"audit": "audit", "extra": "extra"})
	if err != nil {
		t.Fatal(err)
	}
	s := rc.Sum()
	t.Logf("after SIGHUP: source %d, target %d, lost %d, duplicated %d, reordered %d", s.Source, s.Target, s.Lost, s.Duplicates, s.Reordered)
	if !rc.Exact() || s.Source != 150 {
		t.Fatalf("after the reload: %s", rc)
	}

	// A typo: refused, naming the key; a change needing a restart: refused, naming it and why.
	for _, c := range []struct{ extra, says string }{
		{"topics: {include: [audit, extra], refresh_interval: 1s}\nproducer: {compresion: zstd}", "producer.compresion"},
		{"topics: {include: [audit, extra], refresh_interval: 1s}\nring: {workers: 3}", "ring.workers: the workers and their inboxes were sized by it"},
	} {
		before := strings.Count(logs.String(), "reload refused")
		write(c.extra)
		if err := daemon.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		waitUntil("the refusal naming "+c.says, 30*time.Second, func() bool {
			l := logs.String()
			return strings.Count(l, "reload refused") > before && strings.Contains(l, c.says)
		})
	}
	if out, err := exec.Command(bin, "status", "--addr", listen).CombinedOutput(); err != nil || !strings.Contains(string(out), "READY") {
		t.Fatalf("after the refused reloads the daemon is not mirroring: %v\n%s", err, out)
	}

	if err := daemon.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, logs.String())
		}
	case <-time.After(45 * time.Second):
		t.Fatal("no exit within 45 s of SIGTERM")
	}
}

// partitionLine is audit's partition 0 in the table, caught up: lag 0, 0 bytes, RPO 0s, ok.
var partitionLine = regexp.MustCompile(`(?m)^audit\s+audit\s+0\s+0\s+0\s+0s\s+ok$`)

func kadmFor(t *testing.T, addrs []string) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}
