//go:build e2e

package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/kmirror/kmirror/pkg/testpki"
)

const scramPassword = "e2e-Scram-Secret-Value"

// testCA writes a CA and a broker certificate for 127.0.0.1 (expired when expired is true) under
// dir and returns the CA file and the broker's PEM key store.
func testCA(t *testing.T, dir string, expired bool) (caFile, serverPEM string) {
	t.Helper()
	notAfter := time.Now().Add(24 * time.Hour)
	if expired {
		notAfter = time.Now().Add(-time.Hour)
	}
	p, err := testpki.New(dir, notAfter)
	if err != nil {
		t.Fatal(err)
	}
	return p.CAFile, p.ServerPEM
}

// secureUS starts the us cluster with an extra SASL_SSL listener (SCRAM-SHA-512, the given broker
// certificate) and a SCRAM user kmirror, and returns that listener's address. extra lines, when
// given, are added to every broker's properties (an authorizer, say).
func secureUS(t *testing.T, serverPEM string, extra ...string) (*cluster, string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "secure.properties")
	props := fmt.Sprintf(`listeners=PLAINTEXT://@ADDR@:@PLAIN_PORT@,CONTROLLER://@ADDR@:@CONTROLLER_PORT@,SECURE://@ADDR@:@SECURE_PORT@
advertised.listeners=PLAINTEXT://@ADDR@:@PLAIN_PORT@,SECURE://@ADDR@:@SECURE_PORT@
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SECURE:SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.secure.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.secure.ssl.keystore.type=PEM
listener.name.secure.ssl.keystore.location=%s
`, serverPEM) + strings.Join(extra, "")
	if err := os.WriteFile(file, []byte(props), 0o600); err != nil {
		t.Fatal(err)
	}
	us := startCluster(t, "us", "--extra-config", file, "--scram", "SCRAM-SHA-512=[name=kmirror,password="+scramPassword+"]")
	host, port, ok := strings.Cut(us.bootstrap[0], ":")
	n, err := strconv.Atoi(port)
	if !ok || err != nil {
		t.Fatalf("us bootstrap %q: no port", us.bootstrap[0])
	}
	return us, fmt.Sprintf("%s:%d", host, n+2) // cluster.sh: the SECURE port is the PLAINTEXT port + 2
}

func secureConfig(europe *cluster, secureAddr, caFile, pwFile string) string {
	return fmt.Sprintf(`
source: {alias: europe, bootstrap: [%s]}
target:
  alias: us
  bootstrap: [%s]
  tls: {enabled: true, ca_file: %s}
  sasl: {mechanism: SCRAM-SHA-512, username: kmirror, password_file: %s}
topics: {include: [secure], refresh_interval: 2s}
commit: {interval: 500ms}
telemetry: {listen: ""}
log: {format: json}
`, strings.Join(europe.bootstrap, ","), secureAddr, caFile, pwFile)
}

// TestSecureTargetOverTLSAndSCRAM mirrors into a real broker's SASL_SSL listener with
// SCRAM-SHA-512 and a certificate made by the test, verifies the records with franz-go over the
// same listener, then tries a wrong password, an untrusted CA and an expired broker certificate:
// each must be a clear logged error (naming the target and what to check), keep kmirror alive
// and stoppable with a clean exit, never print the password, and lose nothing.
func TestSecureTargetOverTLSAndSCRAM(t *testing.T) {
	dir := t.TempDir()
	caFile, serverPEM := testCA(t, dir, false)
	europe := startCluster(t, "europe")
	europe.createTopic(t, "secure", 2, 1, nil)
	kcatProduce(t, europe.bootstrap, "secure", 0, []string{"a\t1", "b\t2", "c\t3"}, "-K", "\t")
	kcatProduce(t, europe.bootstrap, "secure", 1, []string{"d\t4", "e\t5"}, "-K", "\t")
	us, secureAddr := secureUS(t, serverPEM)
	pw := filepath.Join(dir, "password")
	os.WriteFile(pw, []byte(scramPassword+"\n"), 0o600)

	cfg := writeConfig(t, secureConfig(europe, secureAddr, caFile, pw))
	k := startKmirror(t, cfg)
	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(caFile)
	pool.AppendCertsFromPEM(caPEM)
	reader, err := kgo.NewClient(kgo.SeedBrokers(secureAddr),
		kgo.DialTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}),
		kgo.SASL(scram.Auth{User: "kmirror", Pass: scramPassword}.AsSha512Mechanism()),
		kgo.ConsumeTopics("secure"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	got := 0
	for got < 5 {
		fs := reader.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of 5 records back over SASL_SSL", got)
		}
		got += fs.NumRecords()
	}
	k.stop()
	if strings.Contains(k.log(), scramPassword) {
		t.Fatal("kmirror's log contains the SCRAM password")
	}
	rep := compare(t, europe, us, map[string]string{"secure": "secure"})
	if !rep.Exact() {
		t.Fatalf("over TLS+SCRAM: %s", rep)
	}
	t.Logf("secure: 5 records mirrored over SASL_SSL/SCRAM-SHA-512 with a test CA")
	// kmirror verify reads the target over the same TLS and SCRAM settings.
	out, err := exec.Command(filepath.Join(repoRoot(t), "bin", "kmirror"), "verify", "--config", cfg, "--topics", "secure", "--exact").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "secure/1 -> secure/1: source 2, target 2") {
		t.Fatalf("kmirror verify over SASL_SSL: %v\n%s", err, out)
	}
	if strings.Contains(string(out), scramPassword) {
		t.Fatal("kmirror verify printed the SCRAM password")
	}

	otherCA, _ := testCA(t, t.TempDir(), false)
	wrongPW := filepath.Join(dir, "wrong")
	os.WriteFile(wrongPW, []byte("not-the-password"), 0o600)
	for _, tc := range []struct {
		name, ca, pw, want string
	}{
		{"wrong password", caFile, wrongPW, "target.sasl"},
		{"untrusted CA", otherCA, pw, "certificate"},
	} {
		kb := startKmirror(t, writeConfig(t, secureConfig(europe, secureAddr, tc.ca, tc.pw)))
		waitFor(t, tc.name+": a retry naming the target", time.Minute, func() bool {
			return strings.Contains(kb.log(), "cannot reach cluster") && strings.Contains(kb.log(), `"cluster":"target"`)
		})
		if !strings.Contains(kb.log(), tc.want) {
			t.Errorf("%s: the log does not mention %q:\n%s", tc.name, tc.want, lastLines(kb.log(), 5))
		}
		kb.stop()
		if strings.Contains(kb.log(), scramPassword) {
			t.Fatalf("%s: the log contains the password", tc.name)
		}
		t.Logf("secure: %s is a clear error and a clean stop", tc.name)
	}

	// An expired broker certificate: restart us with one.
	_ = us
	exp := t.TempDir()
	expCA, expPEM := testCA(t, exp, true)
	secureUS(t, expPEM)
	kc := startKmirror(t, writeConfig(t, secureConfig(europe, secureAddr, expCA, pw)))
	waitFor(t, "expired certificate: a retry naming the target", time.Minute, func() bool {
		return strings.Contains(kc.log(), "cannot reach cluster") && strings.Contains(kc.log(), `"cluster":"target"`)
	})
	if !strings.Contains(kc.log(), "expired") && !strings.Contains(kc.log(), "certificate") {
		t.Errorf("expired certificate: the log does not say so:\n%s", lastLines(kc.log(), 5))
	}
	kc.stop()
	t.Logf("secure: an expired broker certificate is a clear error and a clean stop")
}
