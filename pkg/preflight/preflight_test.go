package preflight

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/embedded"
)

func TestAllChecksPassOnOpenClusters(t *testing.T) {
	eu, err := embedded.Start("europe", 1, kfake.SeedTopics(2, "orders"))
	if err != nil {
		t.Fatal(err)
	}
	defer eu.Close()
	us, err := embedded.Start("us", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer us.Close()
	cfg := config.Default()
	cfg.Source.Bootstrap, cfg.Target.Bootstrap = eu.Addrs(), us.Addrs()
	var out bytes.Buffer
	checks := Run(context.Background(), &cfg)
	if !Print(&out, checks) {
		t.Fatalf("checks failed on open clusters:\n%s", out.String())
	}
	for _, want := range []string{"describe topics", "1 match topics.include", "read (list offsets)", "consumer group", "create topics", "idempotent write"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestUnreachableAndUnauthenticatedClustersFailWithAFix(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().String()
	ln.Close()
	us, err := embedded.Start("us", 1, kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "admin", "right"))
	if err != nil {
		t.Fatal(err)
	}
	defer us.Close()
	cfg := config.Default()
	cfg.Source.Bootstrap = []string{closed}
	cfg.Source.DialTimeout = 1e9
	cfg.Target.Bootstrap = us.Addrs()
	cfg.Target.SASL = config.SASL{Mechanism: "SCRAM-SHA-256", Username: "admin", Password: "wrong-secret-value"}
	var out bytes.Buffer
	if Print(&out, Run(context.Background(), &cfg)) {
		t.Fatalf("checks passed against an unreachable source and a wrong password:\n%s", out.String())
	}
	s := out.String()
	for _, want := range []string{"source  reach, TLS, authenticate", "target  reach, TLS, authenticate", "FAILED", "fix: check target.bootstrap, target.sasl SASL credentials", "verdict: FAILED"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "wrong-secret-value") {
		t.Fatal("the output prints the password")
	}
}
