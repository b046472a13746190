//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// TestSCRAMPasswordRotatedThenReloaded is a credential rotation as Strimzi does it, on real
// brokers that make every SASL session re-authenticate after 10 s (connections.max.reauth.ms):
// kmirror mirrors over SASL_SSL/SCRAM-SHA-512; the user's password is changed on the brokers;
// records produced then are not mirrored with the old password (sessions expire, new ones fail);
// once the password file holds the new one and kmirror gets SIGHUP, without a restart, they are
// mirrored, every record once and in order, the log names target.sasl.password and never the
// password, and SIGTERM still stops it cleanly.
func TestSCRAMPasswordRotatedThenReloaded(t *testing.T) {
	const rotated = "e2e-Rotated-Scram-Secret"
	dir := t.TempDir()
	caFile, serverPEM := testCA(t, dir, false)
	europe := startCluster(t, "europe")
	europe.createTopic(t, "secure", 2, 1, nil)
	us, secureAddr := secureUS(t, serverPEM, "connections.max.reauth.ms=10000\n")
	pw := filepath.Join(dir, "password")
	if err := os.WriteFile(pw, []byte(scramPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	batch := func(from, n int) []string {
		lines := make([]string, n)
		for i := range lines {
			lines[i] = fmt.Sprintf("k%d\tv%d", from+i, from+i)
		}
		return lines
	}
	for p := range 2 {
		kcatProduce(t, europe.bootstrap, "secure", p, batch(p*1000, 50), "-K", "\t")
	}
	k := startKmirror(t, writeConfig(t, secureConfig(europe, secureAddr, caFile, pw)))
	waitFor(t, "the first 100 records mirrored over SASL_SSL", 2*time.Minute, func() bool { return us.count(t, "secure") == 100 })

	// The password changes on the brokers (through the plaintext listener, as an operator would).
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := us.admin(t).AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{{User: "kmirror", Mechanism: kadm.ScramSha512, Iterations: 4096, Password: rotated}})
	for _, r := range res {
		if err == nil && r.Err != nil {
			err = r.Err
		}
	}
	if err != nil {
		t.Fatalf("rotate the SCRAM password: %v", err)
	}
	// Every SASL session re-authenticates within 10 s, with the old password: they all end.
	time.Sleep(15 * time.Second)
	for p := range 2 {
		kcatProduce(t, europe.bootstrap, "secure", p, batch(p*1000+50, 50), "-K", "\t")
	}
	time.Sleep(20 * time.Second)
	if n := us.count(t, "secure"); n != 100 {
		t.Fatalf("%d records on the target after the rotation, want the 100 from before: the old password still works", n)
	}
	t.Logf("after the rotation: 100 more records on the source, none mirrored with the old password in 20 s")

	if err := os.WriteFile(pw, []byte(rotated+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := k.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	reloadedAt := time.Now()
	waitFor(t, "the reload logged", 30*time.Second, func() bool {
		return strings.Contains(k.log(), `"configuration reloaded"`) && strings.Contains(k.log(), "target.sasl.password")
	})
	waitFor(t, "the records produced after the rotation mirrored", 2*time.Minute, func() bool { return us.count(t, "secure") == 200 })
	t.Logf("all 200 records on the target %s after the reload", time.Since(reloadedAt).Round(time.Second))
	if done, _ := k.exited(); done {
		t.Fatalf("kmirror exited during the rotation:\n%s", lastLines(k.log(), 20))
	}
	k.stop()
	if strings.Contains(k.log(), scramPassword) || strings.Contains(k.log(), rotated) {
		t.Fatal("kmirror's log contains a SCRAM password")
	}
	rep := compare(t, europe, us, map[string]string{"secure": "secure"})
	if !rep.Exact() {
		t.Fatalf("after the SCRAM rotation and reload: %s", rep)
	}
}
