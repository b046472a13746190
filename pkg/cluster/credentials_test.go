package cluster

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/embedded"
	"github.com/kmirror/kmirror/pkg/testpki"
)

// TestReloadedCredentialsReachClientsBuiltBefore: a sarama configuration built before a reload
// (as the daemon's long-lived producers and consumer are) opens its next connections with the
// rotated CA bundle and the new SCRAM password: before the reload it cannot connect (wrong CA,
// old password), after it connects, with the very same configuration. Reload names what
// changed, never a value; a file that cannot be read is refused and the old credentials stay.
func TestReloadedCredentialsReachClientsBuiltBefore(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "old"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "new"), 0o700); err != nil {
		t.Fatal(err)
	}
	oldPKI, err := testpki.New(filepath.Join(dir, "old"), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	newPKI, err := testpki.New(filepath.Join(dir, "new"), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	const newPassword = "rotated-Pa55word"
	us, err := embedded.Start("us", 1,
		kfake.TLS(&tls.Config{Certificates: []tls.Certificate{newPKI.Server}, MinVersion: tls.VersionTLS12}),
		kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "kmirror", newPassword))
	if err != nil {
		t.Fatal(err)
	}
	defer us.Close()

	caFile, pwFile := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "password")
	copyFile(t, oldPKI.CAFile, caFile)
	if err := os.WriteFile(pwFile, []byte("old-Pa55word\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := base()
	c.Bootstrap = us.Addrs()
	c.Version = "3.6.0"
	c.DialTimeout, c.ReadTimeout, c.WriteTimeout = 2*time.Second, 2*time.Second, 2*time.Second
	c.TLS = config.TLS{Enabled: true, CAFile: caFile}
	c.SASL = config.SASL{Mechanism: "SCRAM-SHA-512", Username: "kmirror", PasswordFile: pwFile}
	cl, err := New("target", c)
	if err != nil {
		t.Fatal(err)
	}
	sc := cl.Config("producer-0")
	sc.Metadata.Retry.Max = 0
	connect := func() error {
		client, err := sarama.NewClient(c.Bootstrap, sc)
		if err == nil {
			_ = client.Close()
		}
		return err
	}
	if err := connect(); err == nil {
		t.Fatal("connected with the old CA and the old password")
	}

	// Only the CA rotated: still refused (old password), and Reload says the CA file changed.
	copyFile(t, newPKI.CAFile, caFile)
	changed, err := cl.Reload(c)
	if err != nil || !slices.Equal(changed, []string{"target.tls.ca_file"}) {
		t.Fatalf("reload after the CA rotated: changed %v, %v", changed, err)
	}
	if err := connect(); err == nil {
		t.Fatal("connected with the old password")
	}

	// A password file that cannot be read is refused; what was loaded stays.
	broken := c
	broken.SASL.PasswordFile = filepath.Join(dir, "missing")
	if _, err := cl.Reload(broken); err == nil || !strings.Contains(err.Error(), "target.sasl.password_file") {
		t.Fatalf("reload with a missing password file: %v", err)
	}

	if err := os.WriteFile(pwFile, []byte(newPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	changed, err = cl.Reload(c)
	if err != nil || !slices.Equal(changed, []string{"target.sasl.password"}) {
		t.Fatalf("reload after the password rotated: changed %v, %v", changed, err)
	}
	if err := connect(); err != nil {
		t.Fatalf("a configuration built before the reload does not use the reloaded CA and password: %v", err)
	}
	for _, s := range changed {
		if strings.Contains(s, newPassword) {
			t.Fatalf("Reload reports a secret: %q", s)
		}
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
