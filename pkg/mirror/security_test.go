package mirror

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	zapobserver "go.uber.org/zap/zaptest/observer"

	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/embedded"
	"github.com/kmirror/kmirror/pkg/testpki"
)

func newPKI(t *testing.T, notAfter time.Time) *testpki.PKI {
	t.Helper()
	p, err := testpki.New(t.TempDir(), notAfter)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

const secret = "s3cr3t-Pa55word-that-must-never-be-logged"

// secureTarget starts a target cluster that only speaks TLS and SCRAM-SHA-512.
func secureTarget(t *testing.T, p *testpki.PKI) *embedded.Cluster {
	t.Helper()
	us, err := embedded.Start("us", 1,
		kfake.TLS(&tls.Config{Certificates: []tls.Certificate{p.Server}, MinVersion: tls.VersionTLS12}),
		kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "kmirror", secret))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(us.Close)
	return us
}

func securePair(t *testing.T, p *testpki.PKI) (*pair, *config.Config, *zapobserver.ObservedLogs, *zap.Logger) {
	t.Helper()
	europe, err := embedded.Start("europe", 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(europe.Close)
	pr := &pair{t: t, europe: europe, us: secureTarget(t, p)}
	cfg := pr.config("secure")
	pwFile := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(pwFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Target.TLS = config.TLS{Enabled: true, CAFile: p.CAFile}
	cfg.Target.SASL = config.SASL{Mechanism: "SCRAM-SHA-512", Username: "kmirror", PasswordFile: pwFile}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	core, logs := zapobserver.New(zapcore.DebugLevel)
	return pr, cfg, logs, zap.New(core)
}

func runWith(t *testing.T, cfg *config.Config, log *zap.Logger) (*Mirror, context.CancelFunc, chan error) {
	t.Helper()
	m, err := New(cfg, Options{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	return m, cancel, done
}

func assertNoSecret(t *testing.T, logs *zapobserver.ObservedLogs, errs ...error) {
	t.Helper()
	for _, e := range logs.All() {
		if strings.Contains(e.Message, secret) {
			t.Fatalf("a log line contains the password: %s", e.Message)
		}
		for k, v := range e.ContextMap() {
			if strings.Contains(k, secret) || strings.Contains(strings.ToLower(k), "password") && v != nil || strings.Contains(toString(v), secret) {
				t.Fatalf("log field %s carries the password", k)
			}
		}
	}
	for _, err := range errs {
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Fatalf("an error contains the password: %v", err)
		}
	}
}

func toString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	if e, ok := v.(error); ok {
		return e.Error()
	}
	return ""
}

// TestMirrorsIntoATLSAndSCRAMTarget mirrors from a plaintext source into a target that accepts
// only TLS with SCRAM-SHA-512, verifies the records with a client of its own over TLS+SCRAM,
// and checks that the password appears in no log line.
func TestMirrorsIntoATLSAndSCRAMTarget(t *testing.T) {
	p := newPKI(t, time.Now().Add(24*time.Hour))
	pr, cfg, logs, log := securePair(t, p)
	createTopic(t, pr.europe, "secure", 2, nil)
	produce(t, pr.europe, numbered("secure", 2, 0, 500)...)
	m, cancel, done := runWith(t, cfg, log)

	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(p.CAFile)
	pool.AppendCertsFromPEM(caPEM)
	reader, err := kgo.NewClient(kgo.SeedBrokers(pr.us.Addrs()...),
		kgo.DialTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}),
		kgo.SASL(scram.Auth{User: "kmirror", Pass: secret}.AsSha512Mechanism()),
		kgo.ConsumeTopics("secure"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	ctx, rc := context.WithTimeout(context.Background(), 30*time.Second)
	defer rc()
	got := 0
	for got < 500 {
		fs := reader.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of 500 mirrored records over TLS+SCRAM", got)
		}
		got += fs.NumRecords()
	}
	if err := m.Ready(); err != nil {
		t.Fatalf("Ready = %v while mirroring", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	assertNoSecret(t, logs)
}

// TestBadTargetSecurityIsAClearErrorAndNoCrash points the mirror at the secure target with a
// wrong password, an untrusted CA and an expired server certificate: each time the mirror keeps
// retrying without crashing, Ready says why, the log says what failed, nothing is committed on
// the source, and cancelling stops it promptly.
func TestBadTargetSecurityIsAClearErrorAndNoCrash(t *testing.T) {
	cases := []struct {
		name   string
		expire bool
		tweak  func(t *testing.T, cfg *config.Config, p *testpki.PKI)
		want   string
	}{
		{"wrong password", false, func(t *testing.T, cfg *config.Config, _ *testpki.PKI) {
			f := filepath.Join(t.TempDir(), "pw")
			os.WriteFile(f, []byte("not-the-password"), 0o600)
			cfg.Target.SASL.PasswordFile = f
		}, "SASL"},
		{"untrusted CA", false, func(t *testing.T, cfg *config.Config, _ *testpki.PKI) {
			cfg.Target.TLS.CAFile = newPKI(t, time.Now().Add(time.Hour)).CAFile
		}, "certificate"},
		{"expired server certificate", true, func(*testing.T, *config.Config, *testpki.PKI) {}, "certificate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			notAfter := time.Now().Add(24 * time.Hour)
			if tc.expire {
				notAfter = time.Now().Add(-time.Minute)
			}
			p := newPKI(t, notAfter)
			pr, cfg, logs, log := securePair(t, p)
			createTopic(t, pr.europe, "secure", 1, nil)
			produce(t, pr.europe, numbered("secure", 1, 0, 10)...)
			tc.tweak(t, cfg, p)
			m, cancel, done := runWith(t, cfg, log)
			waitFor(t, "a retry logged", 20*time.Second, func() bool {
				return logs.FilterMessageSnippet("cannot reach cluster").Len() > 0
			})
			entry := logs.FilterMessageSnippet("cannot reach cluster").All()[0]
			msg := toString(entry.ContextMap()["error"]) + " " + toString(entry.ContextMap()["hint"])
			if !strings.Contains(strings.ToLower(msg), strings.ToLower(tc.want)) {
				t.Errorf("logged error %q does not mention %q", msg, tc.want)
			}
			if entry.ContextMap()["cluster"] != "target" {
				t.Errorf("the log line does not name the target cluster: %v", entry.ContextMap())
			}
			if err := m.Ready(); err == nil {
				t.Fatal("Ready = nil with a target that refuses us")
			}
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Run after cancel = %v, want a clean stop", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("mirror did not stop promptly when cancelled")
			}
			if offs := committed(t, pr.europe, "kmirror", "secure"); len(offs) > 0 && offs[0] > 0 {
				t.Fatalf("committed %v on the source although nothing reached the target", offs)
			}
			assertNoSecret(t, logs)
		})
	}
}

// TestUnreachableClusterRetriesWithBackoffAndReportsNotReady points the source at a closed port.
func TestUnreachableClusterRetriesWithBackoffAndReportsNotReady(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	us, err := embedded.Start("us", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer us.Close()
	cfg := config.Default()
	cfg.Source.Bootstrap = []string{addr}
	cfg.Target.Bootstrap = us.Addrs()
	cfg.Source.DialTimeout = time.Second
	core, logs := zapobserver.New(zapcore.InfoLevel)
	m, cancel, done := runWith(t, &cfg, zap.New(core))
	waitFor(t, "two retries", 20*time.Second, func() bool { return logs.FilterMessageSnippet("cannot reach cluster").Len() >= 2 })
	entries := logs.FilterMessageSnippet("cannot reach cluster").All()
	first, second := entries[0].ContextMap(), entries[1].ContextMap()
	if first["alias"] != "europe" || !strings.Contains(toString(first["bootstrap"])+strings.Join(anyStrings(first["bootstrap"]), ","), addr) {
		t.Errorf("retry log does not name the cluster and its bootstrap: %v", first)
	}
	if !(second["in"].(time.Duration) > first["in"].(time.Duration)) {
		t.Errorf("backoff did not grow: %v then %v", first["in"], second["in"])
	}
	if err := m.Ready(); err == nil || !strings.Contains(err.Error(), "not connected") {
		t.Errorf("Ready = %v, want not connected", err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v after cancel", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("did not stop promptly")
	}
}

func anyStrings(v any) []string {
	switch s := v.(type) {
	case []string:
		return s
	case []any:
		var out []string
		for _, x := range s {
			out = append(out, toString(x))
		}
		return out
	}
	return nil
}
