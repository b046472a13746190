package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/kmirror/kmirror/pkg/config"
)

// credentials are what a cluster's new connections authenticate with: the TLS settings (CA
// bundle, client certificate) and the SASL user and password, as read from the configuration
// and its files at one moment. A Cluster holds the current ones and replaces them whole on
// Reload; a connection takes them once, when it is opened, and keeps them.
type credentials struct {
	tlsCfg config.TLS
	tls    *tls.Config // nil when TLS is off
	sasl   config.SASL
	pass   string
	// files holds the contents of the files read (by key, such as "tls.ca_file"), so a reload
	// can say which changed without saying how.
	files map[string][]byte
}

// loadCredentials reads the TLS files and the password of cfg. key names the cluster's
// configuration key ("source" or "target") in errors.
func loadCredentials(key string, cfg config.Cluster) (*credentials, error) {
	cr := &credentials{tlsCfg: cfg.TLS, sasl: cfg.SASL, files: map[string][]byte{}}
	if cfg.TLS.Enabled {
		var err error
		if cr.tls, err = tlsConfig(key, cfg.TLS); err != nil {
			return nil, err
		}
		for name, path := range map[string]string{"tls.ca_file": cfg.TLS.CAFile, "tls.cert_file": cfg.TLS.CertFile, "tls.key_file": cfg.TLS.KeyFile} {
			if path == "" {
				continue
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return nil, fmt.Errorf("%s.%s: %w", key, name, err)
			}
			cr.files[name] = b
		}
	}
	if cfg.SASL.Mechanism != "" {
		pw, err := password(key, cfg.SASL)
		if err != nil {
			return nil, err
		}
		cr.pass = pw
	}
	return cr, nil
}

// Reload reads the credentials of cfg (TLS files, SASL user and password, re-reading files whose
// path is unchanged) and makes them the ones new connections use; connections already open keep
// theirs until they close. It returns what changed, by configuration key (never a value), and
// changes nothing when a file cannot be used. Only the credentials of cfg are taken: the caller
// refuses changes to the rest (config.Diff), and to TLS on or off, the mechanism, and a PLAIN
// password, which clients hold from their start (ReloadableSASL).
func (c *Cluster) Reload(cfg config.Cluster) ([]string, error) {
	next, err := loadCredentials(c.key, cfg)
	if err != nil {
		return nil, err
	}
	cur := c.creds.Load()
	var changed []string
	for _, name := range []string{"tls.ca_file", "tls.cert_file", "tls.key_file"} {
		if !bytes.Equal(cur.files[name], next.files[name]) || fieldOf(cur.tlsCfg, name) != fieldOf(next.tlsCfg, name) {
			changed = append(changed, c.key+"."+name)
		}
	}
	if cur.tlsCfg.ServerName != next.tlsCfg.ServerName {
		changed = append(changed, c.key+".tls.server_name")
	}
	if cur.tlsCfg.InsecureSkipVerify != next.tlsCfg.InsecureSkipVerify {
		changed = append(changed, c.key+".tls.insecure_skip_verify")
	}
	if cur.sasl.Username != next.sasl.Username {
		changed = append(changed, c.key+".sasl.username")
	}
	if cur.pass != next.pass {
		changed = append(changed, c.key+".sasl.password")
	}
	c.creds.Store(next)
	return changed, nil
}

// ReloadableSASL reports whether a SASL mechanism's user and password can change while clients
// run: SCRAM asks for them at each authentication (scramClient), PLAIN sends the ones its client
// was built with.
func ReloadableSASL(mechanism string) bool { return mechanism != "PLAIN" }

func fieldOf(t config.TLS, name string) string {
	switch name {
	case "tls.ca_file":
		return t.CAFile
	case "tls.cert_file":
		return t.CertFile
	default:
		return t.KeyFile
	}
}

// tlsDialer opens a cluster's connections with the TLS settings current when each is opened
// (sarama's own TLS takes one tls.Config for the life of a client): a client certificate or CA
// bundle rotated on disk and reloaded reaches every new connection, and crypto/tls checks the
// broker's certificate exactly as it does for sarama. sarama sees a plain connection.
type tlsDialer struct {
	c      *Cluster
	dialer net.Dialer
}

func (d *tlsDialer) Dial(network, addr string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, addr)
}

func (d *tlsDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	cfg := d.c.creds.Load().tls.Clone()
	if cfg.ServerName == "" {
		// As sarama does: the broker's host is the name its certificate must carry.
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("broker address %q: %w", addr, err)
		}
		cfg.ServerName = host
	}
	conn, err := (&tls.Dialer{NetDialer: &d.dialer, Config: cfg}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return conn, nil
}

// newTLSDialer returns the dialer of c's connections when TLS is on: the handshake is bounded
// by the dial timeout.
func newTLSDialer(c *Cluster, timeout, keepAlive time.Duration) *tlsDialer {
	return &tlsDialer{c: c, dialer: net.Dialer{Timeout: timeout, KeepAlive: keepAlive}}
}
