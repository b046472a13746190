package cluster

import (
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/IBM/sarama"

	"github.com/kmirror/kmirror/pkg/config"
)

func base() config.Cluster {
	c := config.Default().Target
	c.Bootstrap = []string{"us:9093"}
	return c
}

func TestSecuritySettingsReachSarama(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "password")
	os.WriteFile(pw, []byte("hunter2\n"), 0o600)
	c := base()
	c.TLS = config.TLS{Enabled: true, ServerName: "kafka.us.example"}
	c.SASL = config.SASL{Mechanism: "SCRAM-SHA-512", Username: "kmirror", PasswordFile: pw}
	cl, err := New("target", c)
	if err != nil {
		t.Fatal(err)
	}
	sc := cl.Config("producer-0")
	// TLS is done by the cluster's dialer, with the settings current at each connection.
	if tc := cl.TLS(); !sc.Net.Proxy.Enable || sc.Net.Proxy.Dialer == nil || sc.Net.TLS.Enable ||
		tc == nil || tc.MinVersion != tls.VersionTLS12 || tc.ServerName != "kafka.us.example" {
		t.Fatalf("TLS settings not applied: dialer %v, %+v", sc.Net.Proxy.Dialer, tc)
	}
	if !sc.Net.SASL.Enable || sc.Net.SASL.Mechanism != sarama.SASLTypeSCRAMSHA512 || sc.Net.SASL.User != "kmirror" {
		t.Fatalf("SASL settings not applied: %+v", sc.Net.SASL)
	}
	if sc.Net.SASL.Password != "hunter2" {
		t.Fatal("the password file's trailing newline must be trimmed")
	}
	if sc.ClientID != "kmirror-producer-0" || sc.MetricRegistry == nil {
		t.Fatalf("client id %q / metric registry %v", sc.ClientID, sc.MetricRegistry)
	}
	if err := sc.Validate(); err != nil {
		t.Fatalf("sarama rejects the settings: %v", err)
	}
	if h := cl.Hint(); !strings.Contains(h, "target.sasl") || strings.Contains(h, "hunter2") {
		t.Fatalf("hint %q", h)
	}
}

func TestBadSecurityFilesAreNamedNotPrinted(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	os.WriteFile(garbage, []byte("hunter2 is not a certificate"), 0o600)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	cases := []struct {
		name  string
		tweak func(*config.Cluster)
		want  string
	}{
		{"missing CA file", func(c *config.Cluster) { c.TLS = config.TLS{Enabled: true, CAFile: filepath.Join(dir, "nope.pem")} }, "target.tls.ca_file"},
		{"CA file without PEM", func(c *config.Cluster) { c.TLS = config.TLS{Enabled: true, CAFile: garbage} }, "no PEM certificate"},
		{"bad client key pair", func(c *config.Cluster) {
			c.TLS = config.TLS{Enabled: true, CertFile: garbage, KeyFile: garbage}
		}, "target.tls.cert_file/key_file"},
		{"missing password file", func(c *config.Cluster) {
			c.SASL = config.SASL{Mechanism: "PLAIN", Username: "u", PasswordFile: filepath.Join(dir, "nope")}
		}, "target.sasl.password_file"},
		{"empty password file", func(c *config.Cluster) {
			c.SASL = config.SASL{Mechanism: "PLAIN", Username: "u", PasswordFile: empty}
		}, "is empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.tweak(&c)
			_, err := New("target", c)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, want an error mentioning %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("the error prints a file's contents: %v", err)
			}
		})
	}
}

// oneBroker is a Broker that is always the given one.
type oneBroker struct{ b *sarama.Broker }

func (o oneBroker) Controller() (*sarama.Broker, error) { return o.b, nil }

// TestCheckIDNamesTheSwappedCluster: a cluster that reports another ID than the one kmirror
// started with is a *SwappedError naming the configuration key, the alias, both IDs and the fix;
// the ID it started with passes, and no ID known at start checks nothing.
func TestCheckIDNamesTheSwappedCluster(t *testing.T) {
	found := "W1eWTB7AQrizwGKRaxsydg"
	mb := sarama.NewMockBroker(t, 1)
	defer mb.Close()
	mb.SetHandlerByMap(map[string]sarama.MockResponse{
		"MetadataRequest": sarama.NewMockWrapper(&sarama.MetadataResponse{Version: 11, ClusterID: &found}),
	})
	c, err := New("target", base())
	if err != nil {
		t.Fatal(err)
	}
	if c.Config("x").Metadata.AllowAutoTopicCreation {
		t.Fatal("a metadata request of kmirror's must never create a topic")
	}
	b := sarama.NewBroker(mb.Addr())
	conf := c.Config("identity")
	conf.ApiVersionsRequest = false // the mock answers Metadata only
	if err := b.Open(conf); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := c.CheckID(oneBroker{b}, found); err != nil {
		t.Fatalf("same cluster: %v", err)
	}
	if err := c.CheckID(oneBroker{b}, ""); err != nil {
		t.Fatalf("no ID at start: %v", err)
	}
	err = c.CheckID(oneBroker{b}, "rOwtinS1TI6DJf8xOAREwg")
	var swapped *SwappedError
	if !errors.As(err, &swapped) || swapped.Want != "rOwtinS1TI6DJf8xOAREwg" || swapped.Found != found {
		t.Fatalf("swapped cluster: %v", err)
	}
	for _, want := range []string{`target cluster "us"`, "expected cluster ID rOwtinS1TI6DJf8xOAREwg, found " + found, "target.bootstrap"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}
