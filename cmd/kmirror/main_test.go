package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kmirror/kmirror/pkg/embedded"
	"github.com/kmirror/kmirror/pkg/verify"
)

// buildBinary compiles kmirror once for the process tests.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "kmirror")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestRunDrainsCommitsAndExitsZeroOnSIGTERM runs the real binary against two embedded clusters,
// sends SIGTERM mid-stream and expects exit status 0, a clean-stop log line, everything mirrored
// so far committed, and — after a second run — the target identical to the source.
func TestRunDrainsCommitsAndExitsZeroOnSIGTERM(t *testing.T) {
	bin := buildBinary(t)
	europe, us := startPair(t)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(europe.Addrs()...), kgo.DefaultProduceTopic("clicks"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 4, 1, nil, "clicks"); err != nil {
		t.Fatal(err)
	}
	const n = 100000
	for i := 0; i < n; i++ {
		cl.Produce(ctx, &kgo.Record{Key: []byte(fmt.Sprint(i % 100)), Value: []byte(fmt.Sprint("click-", i))}, nil)
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	cfgPath := filepath.Join(t.TempDir(), "kmirror.yaml")
	cfg := fmt.Sprintf(`
source: {bootstrap: [%q]}
target: {bootstrap: [%q]}
topics: {include: [clicks], refresh_interval: 1s}
commit: {interval: 100ms}
telemetry: {listen: ""}
log: {format: json}
`, europe.Addrs()[0], us.Addrs()[0])
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	run := func(stopAfter func() bool) (string, int) {
		logs := &syncBuffer{}
		cmd := exec.Command(bin, "run", "--config", cfgPath)
		cmd.Stderr = logs
		cmd.Stdout = logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(60 * time.Second)
		// SIGTERM before the handler is installed would kill the process outright.
		for !strings.Contains(logs.String(), "connected to both clusters") && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		for !stopAfter() && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(45 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatalf("kmirror did not exit within 45s of SIGTERM\n%s", logs.String())
		}
		return logs.String(), cmd.ProcessState.ExitCode()
	}

	tc, err := kgo.NewClient(kgo.SeedBrokers(us.Addrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	targetCount := func() int64 {
		n, _ := verify.EndOffsets(ctx, kadm.NewClient(tc), "clicks")
		return n
	}

	logs, code := run(func() bool { return targetCount() > 0 })
	if code != 0 {
		t.Fatalf("exit status %d after SIGTERM, want 0\n%s", code, logs)
	}
	if !strings.Contains(logs, "stopped cleanly") {
		t.Fatalf("no clean-stop line in the logs:\n%s", logs)
	}
	if !strings.Contains(logs, `"source":"europe"`) || !strings.Contains(logs, `"target":"us"`) {
		t.Fatalf("log lines do not carry the cluster aliases:\n%s", logs)
	}
	mirrored := targetCount()
	offs, err := kadm.NewClient(cl).FetchOffsets(ctx, "kmirror")
	if err != nil {
		t.Fatalf("fetch committed offsets: %v\n%s", err, logs)
	}
	var committedSum int64
	var perPartition []string
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == "clicks" { // the group also holds the heartbeat topic's offset
			committedSum += o.At
			perPartition = append(perPartition, fmt.Sprintf("%d@%d", o.Partition, o.At))
		}
	})
	if committedSum != mirrored {
		t.Fatalf("after SIGTERM committed %d but the target holds %d: the drain did not commit exactly what was acknowledged (committed %v)\n%s",
			committedSum, mirrored, perPartition, logs)
	}
	t.Logf("first run stopped by SIGTERM after mirroring %d of %d records, all of them committed", mirrored, n)

	logs, code = run(func() bool { return targetCount() >= n })
	if code != 0 {
		t.Fatalf("second run exit status %d\n%s", code, logs)
	}
	rep, err := verify.Compare(ctx, europe.Addrs(), us.Addrs(), map[string]string{"clicks": "clicks"})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Exact() {
		t.Fatalf("after stop and restart: %s", rep)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestValidateNamesTheBadKey runs `kmirror validate` on a broken file and expects exit status 78
// (a configuration error) and the key's path in the message.
func TestValidateNamesTheBadKey(t *testing.T) {
	bin := buildBinary(t)
	p := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(p, []byte("source: {bootstrap: [a:1]}\ntarget: {bootstrap: [b:1]}\nproducer: {compression: brotli}\n"), 0o600)
	out, err := exec.Command(bin, "validate", "--config", p).CombinedOutput()
	if code := exitCode(err); code != exitConfig {
		t.Fatalf("validate of a bad file: exit %d, want %d:\n%s", code, exitConfig, out)
	}
	if !strings.Contains(string(out), "producer.compression") {
		t.Fatalf("message does not name producer.compression:\n%s", out)
	}
}

// TestValidateChecksFilesAndPrintsTheEffectiveSettings: validate refuses a password_file that
// does not exist (run would exit on it), and prints every effective setting of a good file.
func TestValidateChecksFilesAndPrintsTheEffectiveSettings(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("source: {bootstrap: [a:1], sasl: {mechanism: PLAIN, username: u, password_file: "+
		filepath.Join(dir, "missing")+"}}\ntarget: {bootstrap: [b:1]}\n"), 0o600)
	out, err := exec.Command(bin, "validate", "--config", bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "source.sasl.password_file") {
		t.Fatalf("validate accepted a password_file that does not exist, or did not name it:\n%s", out)
	}
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("source: {bootstrap: [a:1]}\ntarget: {bootstrap: [b:1]}\nproducer: {compression: zstd}\n"), 0o600)
	out, err = exec.Command(bin, "validate", "--config", good).CombinedOutput()
	if err != nil {
		t.Fatalf("validate: %v\n%s", err, out)
	}
	for _, want := range []string{"producer.compression: \"zstd\"", "producer.delivery_timeout: 2m0s", "consumer.group_id: \"kmirror\""} {
		if !strings.Contains(string(out), want) {
			t.Errorf("validate does not print %q:\n%s", want, out)
		}
	}
}

// startPair starts two in-process clusters, europe and us, for the test's duration.
func startPair(t *testing.T) (europe, us *embedded.Cluster) {
	t.Helper()
	var err error
	if europe, err = embedded.Start("europe", 1); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(europe.Close)
	if us, err = embedded.Start("us", 1); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(us.Close)
	return europe, us
}

// TestVerifyComparesBothClustersAndFailsOnADifference runs `kmirror verify` against two
// in-process clusters holding the same records (exit 0, "identical"), then after one record
// differs on the target (exit 1, the partition and the lost offset named).
func TestVerifyComparesBothClustersAndFailsOnADifference(t *testing.T) {
	bin := buildBinary(t)
	europe, us := startPair(t)
	for _, c := range []*embedded.Cluster{europe, us} {
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.Addrs()...))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kadm.NewClient(cl).CreateTopic(context.Background(), 1, 1, nil, "audit"); err != nil {
			t.Fatal(err)
		}
		cl.Close()
	}
	ts := time.UnixMilli(1_700_000_000_000)
	write := func(addrs []string, values ...string) {
		cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.DefaultProduceTopic("audit"), kgo.AllowAutoTopicCreation(),
			kgo.RecordPartitioner(kgo.ManualPartitioner()))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		for _, v := range values {
			if err := cl.ProduceSync(context.Background(), &kgo.Record{Value: []byte(v), Timestamp: ts}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	write(europe.Addrs(), "a", "b", "c")
	write(us.Addrs(), "a", "b", "c")
	p := filepath.Join(t.TempDir(), "kmirror.yaml")
	os.WriteFile(p, []byte(fmt.Sprintf("source: {bootstrap: [%s]}\ntarget: {bootstrap: [%s]}\n",
		europe.Addrs()[0], us.Addrs()[0])), 0o600)
	out, err := exec.Command(bin, "verify", "--config", p, "--topics", "audit").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "audit/0 -> audit/0: source 3, target 3") || !strings.Contains(string(out), "identical") {
		t.Fatalf("verify on identical clusters: %v\n%s", err, out)
	}
	write(europe.Addrs(), "d") // on the source only: not mirrored
	out, err = exec.Command(bin, "verify", "--config", p, "--topics", "audit").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "DIFFERS") || !strings.Contains(string(out), "lost 1") {
		t.Fatalf("verify with a record missing on the target: %v\n%s", err, out)
	}
}
