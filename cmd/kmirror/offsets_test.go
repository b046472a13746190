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
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kmirror/kmirror/pkg/embedded"
	"github.com/kmirror/kmirror/pkg/groups"
)

// TestTranslateAndFailoverCommands runs the daemon, then `kmirror offsets translate`, the HTTP
// endpoint and `kmirror failover` against two in-process clusters whose offsets differ (the
// target partition held a record before the mirror started).
func TestTranslateAndFailoverCommands(t *testing.T) {
	bin := buildBinary(t)
	europe, us := startPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	clients := map[*embedded.Cluster]*kadm.Client{}
	for _, c := range []*embedded.Cluster{europe, us} {
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.Addrs()...), kgo.DefaultProduceTopic("audit"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		clients[c] = kadm.NewClient(cl)
		if _, err := clients[c].CreateTopic(ctx, 1, 1, nil, "audit"); err != nil {
			t.Fatal(err)
		}
		n := 300
		if c == us {
			n = 1 // a record of the target's own: target offsets are source offsets + 1
		}
		for i := range n {
			if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(fmt.Sprint(c.Name, i))}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	commit := func(group string, at int64) {
		offs := kadm.Offsets{}
		offs.Add(kadm.Offset{Topic: "audit", Partition: 0, At: at, LeaderEpoch: -1})
		if _, err := clients[europe].CommitOffsets(ctx, group, offs); err != nil {
			t.Fatal(err)
		}
	}
	commit("app", 120)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := ln.Addr().String()
	ln.Close()
	cfgPath := filepath.Join(t.TempDir(), "kmirror.yaml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
source: {bootstrap: [%q]}
target: {bootstrap: [%q]}
topics: {include: [audit], refresh_interval: 1s}
commit: {interval: 100ms}
offset_map: {flush_interval: 100ms}
telemetry: {listen: %q}
log: {format: json}
`, europe.Addrs()[0], us.Addrs()[0], listen)), 0o600); err != nil {
		t.Fatal(err)
	}
	daemon := exec.Command(bin, "run", "--config", cfgPath)
	logs := &syncBuffer{}
	daemon.Stdout, daemon.Stderr = logs, logs
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = daemon.Process.Kill(); _ = daemon.Wait() }()

	translate := func() (groups.Report, string, error) {
		out, err := exec.Command(bin, "offsets", "translate", "--config", cfgPath, "--group", "app", "--json").Output()
		var rep groups.Report
		if jerr := json.Unmarshal(out, &rep); jerr != nil {
			return rep, string(out), fmt.Errorf("%v (%v)", jerr, err)
		}
		return rep, string(out), err
	}
	deadline := time.Now().Add(60 * time.Second)
	var rep groups.Report
	for {
		var out string
		rep, out, err = translate()
		if err == nil && len(rep.Partitions) == 1 && rep.Partitions[0].Target == 121 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("translate never gave target offset 121 for source offset 120: %v\n%s\nlogs:\n%s", err, out, logs.String())
		}
		time.Sleep(300 * time.Millisecond)
	}

	// The endpoint serves the same plan.
	resp, err := http.Get("http://" + listen + "/offsets/translate?group=app")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var served groups.Report
	if err := json.Unmarshal(body, &served); err != nil || resp.StatusCode != 200 || served.Partitions[0].Target != 121 {
		t.Fatalf("GET /offsets/translate: %d %s (%v)", resp.StatusCode, body, err)
	}
	if resp, err := http.Get("http://" + listen + "/offsets/translate"); err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("GET /offsets/translate without a group: %v %v", resp, err)
	}

	// A position past the mirror's: translate says so and exits 1.
	commit("ahead", 400)
	out, err := exec.Command(bin, "offsets", "translate", "--config", cfgPath, "--group", "ahead").CombinedOutput()
	if code := exitCode(err); code != 1 || !strings.Contains(string(out), "not yet mirrored") || !strings.Contains(string(out), "100 offsets") {
		t.Fatalf("translate of a position 100 past the mirror: exit %d\n%s", code, out)
	}

	// The failover commits the translation to the target group and exits 0.
	out, err = exec.Command(bin, "failover", "--config", cfgPath, "--group", "app", "--wait", "10s").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "committed") {
		t.Fatalf("failover: %v\n%s", err, out)
	}
	offs, err := clients[us].FetchOffsets(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := offs.Lookup("audit", 0); !ok || o.At != 121 {
		t.Fatalf("after the failover the target group is at %+v, want 121", o)
	}
	// Not reached within its wait: reported, exit 1, nothing committed.
	out, err = exec.Command(bin, "failover", "--config", cfgPath, "--group", "ahead", "--wait", "2s").CombinedOutput()
	if code := exitCode(err); code != 1 || !strings.Contains(string(out), groups.ActionNotTranslatable) {
		t.Fatalf("failover of a position not mirrored: exit %d\n%s", code, out)
	}
	if offs, _ := clients[us].FetchOffsets(ctx, "ahead"); len(offs) != 0 {
		t.Fatalf("a position not mirrored was committed: %v", offs)
	}

	// A group with no committed offsets on the mirrored topics (here: only on a topic not
	// mirrored) has nothing to move: failover names it and exits 1.
	if _, err := clients[europe].CreateTopic(ctx, 1, 1, nil, "unmirrored"); err != nil {
		t.Fatal(err)
	}
	elsewhere := kadm.Offsets{}
	elsewhere.Add(kadm.Offset{Topic: "unmirrored", Partition: 0, At: 0, LeaderEpoch: -1})
	if _, err := clients[europe].CommitOffsets(ctx, "elsewhere", elsewhere); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(bin, "failover", "--config", cfgPath, "--group", "elsewhere", "--wait", "1s").CombinedOutput()
	if code := exitCode(err); code != 1 || !strings.Contains(string(out), `group "elsewhere" has no committed offsets`) {
		t.Fatalf("failover of a group with no committed offsets: exit %d\n%s", code, out)
	}

	// The source site is lost: failover says so within --source-timeout, and reports what the
	// target group holds (the last synced), exit 1, nothing changed.
	europe.Close()
	began := time.Now()
	out, err = exec.Command(bin, "failover", "--config", cfgPath, "--group", "app", "--source-timeout", "3s").CombinedOutput()
	if code := exitCode(err); code != 1 || !strings.Contains(string(out), "the source cannot be read") ||
		!strings.Contains(string(out), "121") || !strings.Contains(string(out), groups.ActionLastSynced) {
		t.Fatalf("failover with the source lost: exit %d\n%s", code, out)
	}
	t.Logf("failover with the source lost:\n%s", out)
	if took := time.Since(began); took > 20*time.Second {
		t.Fatalf("failover with the source lost took %s, want about --source-timeout", took)
	}
}

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}
