package docs

// The commands of the pages that need no more than two Kafka clusters run here, as the pages
// show them, against two in-process clusters (pkg/embedded), in a sandbox: a directory whose
// entries are links to the repository's (so configs/, deploy/ and the Makefile are those of the
// tree under test) with a bin/ of its own that `make build` fills, and a DESTDIR standing in for
// / (so `make install` and the commands that read /etc/kmirror run unprivileged).
//
// What differs from a reader's shell, and why:
//   - KMIRROR_SOURCE_BOOTSTRAP, KMIRROR_TARGET_BOOTSTRAP and KMIRROR_TELEMETRY_LISTEN point the
//     configurations at the in-process clusters and at a free port (as scripts/walkthrough.sh
//     does); localhost:9464 and 127.0.0.1:9465 in a command become that port;
//   - " /etc/" becomes the DESTDIR's etc/, and PATH starts with its usr/local/bin, then bin/;
//   - "$(pidof kmirror)" becomes the pid of the kmirror this test started (pidof would find
//     every kmirror on the machine).

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kmirror/kmirror/pkg/embedded"
)

// hermetic lists, per test of this file, the commands (as the pages show them, whitespace
// collapsed) it runs. A test may run only these, and must run every one of them.
var hermetic = map[string][]string{
	"TestOperateCommandsRun": {
		// README.md's set-up, quickstart and docs/commands.md.
		"make demo",
		"make build",
		"bin/kmirror validate --connect --config configs/minimal.yaml",
		"bin/kmirror topics plan --config configs/minimal.yaml",
		"bin/kmirror run --config configs/minimal.yaml",
		"bin/kmirror validate --config configs/kmirror.yaml",
		"bin/kmirror run --config configs/kmirror.yaml",
		// docs/install.md: systemd from source.
		"make install",
		"kmirror version",
		"install -D -m 0644 deploy/systemd/kmirror.service /etc/systemd/system/kmirror.service",
		"install -m 0600 /dev/null /etc/kmirror/kmirror.env",
		"kmirror validate --config /etc/kmirror/kmirror.yaml",
		// docs/operations.md: reload, status, several flows per host.
		`kill -HUP "$(pidof kmirror)"`,
		"kmirror status --config /etc/kmirror/europe-to-us.yaml",
		"kmirror status --addr 127.0.0.1:9465",
		"install -m 0644 configs/active-active/europe-to-us.yaml /etc/kmirror/europe-to-us.yaml",
		"install -m 0644 configs/active-active/us-to-europe.yaml /etc/kmirror/us-to-europe.yaml",
		"kmirror status --config /etc/kmirror/us-to-europe.yaml",
		// docs/monitoring.md: traces.
		"bin/kmirror run -c my.yaml --set telemetry.tracing.endpoint=127.0.0.1:4317 --set telemetry.tracing.sample_ratio=1",
	},
	"TestMigrateCommandsRun": {
		"make build",
		"kmirror migrate mm2 mm2.properties --out kmirror.yaml --dry-run",
		"kmirror migrate mm2 mm2.properties --out kmirror.yaml",
		"kmirror migrate mm2 mm2.properties --out kmirror.yaml --force",
		"kmirror validate --config kmirror.yaml",
		"kmirror run --config kmirror.yaml",
		"kmirror migrate mm2 kafkamirrormaker2.yaml --out kmirror.yaml --config-only",
		"kmirror migrate mm2 mm2.properties --out kmirror.yaml --offsets-topic mm2-offsets.europe.internal --connector MirrorSourceConnector --dry-run",
	},
}

// sandbox runs the pages' commands; see the file's comment.
type sandbox struct {
	t            *testing.T
	dir, destdir string
	listen       string // the telemetry address every kmirror here serves
	env          []string
	europe, us   *embedded.Cluster
	allowed, ran map[string]bool
	pid          int // of the running kmirror, for "$(pidof kmirror)"
	europeC, usC *kgo.Client
	europeA, usA *kadm.Client
	ctx          context.Context
}

func newSandbox(t *testing.T) *sandbox {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: runs kmirror against in-process clusters")
	}
	s := &sandbox{t: t, dir: t.TempDir(), destdir: t.TempDir(), allowed: map[string]bool{}, ran: map[string]bool{}}
	for _, c := range hermetic[t.Name()] {
		s.allowed[c] = true
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		switch e.Name() {
		case "bin", "dist", ".git":
			continue // its own bin/; no git, so the Makefile's VERSION is "dev"
		}
		if err := os.Symlink(filepath.Join(root, e.Name()), filepath.Join(s.dir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"europe", "us"} {
		c, err := embedded.Start(name, 1)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		if name == "europe" {
			s.europe = c
		} else {
			s.us = c
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.listen = ln.Addr().String()
	ln.Close()
	s.env = append(os.Environ(),
		"KMIRROR_SOURCE_BOOTSTRAP="+s.europe.Addrs()[0],
		"KMIRROR_TARGET_BOOTSTRAP="+s.us.Addrs()[0],
		"KMIRROR_TELEMETRY_LISTEN="+s.listen,
		"DESTDIR="+s.destdir,
		"PATH="+filepath.Join(s.destdir, "usr/local/bin")+":"+filepath.Join(s.dir, "bin")+":"+os.Getenv("PATH"),
	)
	var cancel context.CancelFunc
	s.ctx, cancel = context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	s.europeC, s.europeA = s.client(s.europe)
	s.usC, s.usA = s.client(s.us)
	t.Cleanup(func() {
		if t.Failed() {
			return
		}
		for _, c := range hermetic[t.Name()] {
			if !s.ran[c] {
				t.Errorf("%s lists %q in hermetic but did not run it", t.Name(), c)
			}
		}
	})
	return s
}

func (s *sandbox) client(c *embedded.Cluster) (*kgo.Client, *kadm.Client) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Addrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(cl.Close)
	return cl, kadm.NewClient(cl)
}

// shell returns the command as this sandbox runs it.
func (s *sandbox) shell(cmd string) string {
	if !s.allowed[cmd] {
		s.t.Fatalf("%q is not in hermetic[%q]: list it there (and check a page shows it)", cmd, s.t.Name())
	}
	s.ran[cmd] = true
	r := strings.NewReplacer(" /etc/", " "+s.destdir+"/etc/", "localhost:9464", s.listen, "127.0.0.1:9465", s.listen,
		`"$(pidof kmirror)"`, strconv.Itoa(s.pid))
	return r.Replace(cmd)
}

// run runs a command of the pages to its end in the sandbox and returns its output; it fails
// the test when the command fails.
func (s *sandbox) run(cmd string) string {
	s.t.Helper()
	return s.runIn(s.dir, cmd)
}

// runIn runs a command in dir: the repository itself for one that writes nothing there and
// whose build the Go cache keeps only under the repository's own path (go run).
func (s *sandbox) runIn(dir, cmd string) string {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, 2*time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, "bash", "-c", "set -euo pipefail\n"+s.shell(cmd))
	c.Dir, c.Env = dir, s.env
	began := time.Now()
	out, err := c.CombinedOutput()
	if err != nil {
		s.t.Fatalf("%s: %v\n%s", cmd, err, out)
	}
	s.t.Logf("ran %s (%s)", cmd, time.Since(began).Round(time.Millisecond))
	return string(out)
}

// daemon is a kmirror run started from a page's command.
type daemon struct {
	s    *sandbox
	cmd  string
	c    *exec.Cmd
	logs *syncBuffer
	done chan error
}

// start starts a long-running command of the pages (kmirror run) and waits until its /readyz
// answers 200.
func (s *sandbox) start(cmd string) *daemon {
	s.t.Helper()
	d := &daemon{s: s, cmd: cmd, logs: &syncBuffer{}, done: make(chan error, 1)}
	d.c = exec.Command("bash", "-c", "exec "+s.shell(cmd))
	d.c.Dir, d.c.Env, d.c.Stdout, d.c.Stderr = s.dir, s.env, d.logs, d.logs
	if err := d.c.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.pid = d.c.Process.Pid
	go func() { d.done <- d.c.Wait() }()
	s.t.Cleanup(func() { _ = d.c.Process.Kill() })
	deadline := time.Now().Add(90 * time.Second)
	for {
		if r, err := http.Get("http://" + s.listen + "/readyz"); err == nil {
			r.Body.Close()
			if r.StatusCode == http.StatusOK {
				s.t.Logf("started %s: ready", cmd)
				return d
			}
		}
		select {
		case err := <-d.done:
			s.t.Fatalf("%s exited before it was ready: %v\n%s", cmd, err, d.logs)
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s: not ready within 90 s\n%s", cmd, d.logs)
		}
	}
}

// stop sends SIGTERM, as the pages say to stop kmirror, and wants exit status 0.
func (d *daemon) stop() {
	d.s.t.Helper()
	_ = d.c.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.done:
		if err != nil {
			d.s.t.Fatalf("%s: exit after SIGTERM: %v, want status 0\n%s", d.cmd, err, d.logs)
		}
	case <-time.After(60 * time.Second):
		d.s.t.Fatalf("%s: still running 60 s after SIGTERM\n%s", d.cmd, d.logs)
	}
}

// waitLog waits until the daemon's output holds s.
func (d *daemon) waitLog(sub string) {
	d.s.t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(d.logs.String(), sub); {
		if time.Now().After(deadline) {
			d.s.t.Fatalf("%s: no %q in its output within 30 s\n%s", d.cmd, sub, d.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// createTopic creates topic and writes n records "<of>-<p>-<i>" to each partition: records of
// topic of (itself, or the source topic it stands for a copy of).
func (s *sandbox) createTopic(cl *kgo.Client, adm *kadm.Client, topic, of string, partitions int32, n int) {
	s.t.Helper()
	if _, err := adm.CreateTopic(s.ctx, partitions, 1, nil, topic); err != nil {
		s.t.Fatal(err)
	}
	s.produce(cl, topic, of, partitions, 0, n)
}

func (s *sandbox) produce(cl *kgo.Client, topic, of string, partitions int32, from, to int) {
	s.t.Helper()
	for p := range partitions {
		for i := from; i < to; i++ {
			v := fmt.Sprintf("%s-%d-%d", of, p, i)
			if err := cl.ProduceSync(s.ctx, &kgo.Record{Topic: topic, Partition: p, Key: []byte(v), Value: []byte(v)}).FirstErr(); err != nil {
				s.t.Fatal(err)
			}
		}
	}
}

// waitCopied waits until target topic on us holds, per partition, exactly the values of source
// topic on europe, in order (read back with franz-go, read_committed).
func (s *sandbox) waitCopied(source, target string) {
	s.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		want, got := s.values(s.europe, source), s.values(s.us, target)
		if len(want) > 0 && fmt.Sprint(want) == fmt.Sprint(got) {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s on us is not %s of europe within 60 s:\n got  %v\n want %v", target, source, got, want)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// values returns the values of topic on c, per partition, in offset order.
func (s *sandbox) values(c *embedded.Cluster, topic string) map[int32][]string {
	s.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Addrs()...), kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		s.t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(s.ctx, topic)
	if err != nil || ends.Error() != nil {
		return nil
	}
	left := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			left[o.Partition] = o.Offset
		}
	})
	out := map[int32][]string{}
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	for len(left) > 0 && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			out[r.Partition] = append(out[r.Partition], string(r.Value))
			if r.Offset+1 >= left[r.Partition] {
				delete(left, r.Partition)
			}
		})
	}
	return out
}

// TestOperateCommandsRun runs the commands of the README's quickstart, docs/commands.md,
// docs/install.md (systemd from source), docs/operations.md and docs/monitoring.md that a
// machine without systemd can run: build, validate, plan, run (records checked on the target),
// reload, status, install into a DESTDIR, and a run with tracing on.
func TestOperateCommandsRun(t *testing.T) {
	s := newSandbox(t)
	// The README's first command, smaller and unpaced (DEMO_ARGS; as CI runs it).
	s.env = append(s.env, "DEMO_ARGS=--records 20000 --rate 0")
	if out := s.runIn("..", "make demo"); !strings.Contains(out, "VERIFIED: every partition on us holds the same records, in the same order") {
		t.Errorf("make demo did not verify its copy:\n%s", out)
	}
	s.createTopic(s.europeC, s.europeA, "orders", "orders", 3, 5)

	s.run("make build")
	if out := s.run("bin/kmirror validate --connect --config configs/minimal.yaml"); !strings.Contains(out, "verdict: both clusters allow everything kmirror needs") {
		t.Errorf("validate --connect has no verdict that both clusters allow what kmirror needs:\n%s", out)
	}
	if out := s.run("bin/kmirror topics plan --config configs/minimal.yaml"); !strings.Contains(out, "orders") {
		t.Errorf("topics plan does not plan orders:\n%s", out)
	}
	d := s.start("bin/kmirror run --config configs/minimal.yaml")
	s.waitCopied("orders", "orders")

	// docs/install.md and docs/operations.md: installed as `make install` does, under DESTDIR.
	s.run("make install")
	if out := s.run("kmirror version"); !strings.HasPrefix(out, "kmirror ") {
		t.Errorf("kmirror version printed %q", out)
	}
	s.run("install -D -m 0644 deploy/systemd/kmirror.service /etc/systemd/system/kmirror.service")
	s.run("install -m 0600 /dev/null /etc/kmirror/kmirror.env")
	s.run("kmirror validate --config /etc/kmirror/kmirror.yaml")
	s.run("install -m 0644 configs/active-active/europe-to-us.yaml /etc/kmirror/europe-to-us.yaml")
	s.run("install -m 0644 configs/active-active/us-to-europe.yaml /etc/kmirror/us-to-europe.yaml")
	for _, cmd := range []string{
		"kmirror status --addr 127.0.0.1:9465",
		"kmirror status --config /etc/kmirror/europe-to-us.yaml",
		"kmirror status --config /etc/kmirror/us-to-europe.yaml",
	} {
		if out := s.run(cmd); !strings.Contains(out, "READY") || !strings.Contains(out, "orders") {
			t.Errorf("%s: not the status of the running kmirror:\n%s", cmd, out)
		}
	}

	// Reload: SIGHUP with the file unchanged changes nothing and stops nothing.
	s.run(`kill -HUP "$(pidof kmirror)"`)
	d.waitLog("SIGHUP: reloading the configuration")
	d.waitLog("configuration reloaded: nothing changed")
	s.produce(s.europeC, "orders", "orders", 3, 5, 8)
	s.waitCopied("orders", "orders")
	d.stop()

	s.run("bin/kmirror validate --config configs/kmirror.yaml")
	d = s.start("bin/kmirror run --config configs/kmirror.yaml")
	s.produce(s.europeC, "orders", "orders", 3, 8, 10)
	s.waitCopied("orders", "orders")
	d.stop()

	// docs/monitoring.md names its own file, my.yaml: the minimal configuration here.
	b, err := os.ReadFile(filepath.Join(s.dir, "configs/minimal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.dir, "my.yaml"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	d = s.start("bin/kmirror run -c my.yaml --set telemetry.tracing.endpoint=127.0.0.1:4317 --set telemetry.tracing.sample_ratio=1")
	s.produce(s.europeC, "orders", "orders", 3, 10, 12)
	s.waitCopied("orders", "orders")
	d.stop()
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
