// Package cluster turns the configuration of one Kafka cluster into sarama client settings
// (protocol version, timeouts, TLS, SASL), opens clients and admins for it, and measures the
// round trip to it (RoundTrip).
//
// It must never log or return secrets: errors name files and keys, never their contents.
package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/rcrowley/go-metrics"
	"github.com/xdg-go/scram"

	"github.com/kmirror/kmirror/pkg/config"
)

// Cluster is one configured Kafka cluster. Its credentials (TLS files, SASL user and password)
// can be reloaded while clients run (Reload): every connection opened afterwards uses the new
// ones.
type Cluster struct {
	cfg     config.Cluster
	key     string // "source" or "target", for messages
	version sarama.KafkaVersion
	creds   atomic.Pointer[credentials]
}

// New checks what can be checked without the network (version, TLS files, SASL secrets) and
// returns the cluster. key is the configuration key it came from ("source" or "target").
func New(key string, cfg config.Cluster) (*Cluster, error) {
	v, err := sarama.ParseKafkaVersion(cfg.Version)
	if err != nil {
		return nil, fmt.Errorf("%s.version %q: %w", key, cfg.Version, err)
	}
	c := &Cluster{cfg: cfg, key: key, version: v}
	cr, err := loadCredentials(key, cfg)
	if err != nil {
		return nil, err
	}
	c.creds.Store(cr)
	return c, nil
}

// Alias is the cluster's configured name.
func (c *Cluster) Alias() string { return c.cfg.Alias }

// Bootstrap is the list of brokers to start from.
func (c *Cluster) Bootstrap() []string { return c.cfg.Bootstrap }

// Version is the protocol version spoken to the cluster.
func (c *Cluster) Version() sarama.KafkaVersion { return c.version }

// Config returns a fresh sarama configuration for a client of this cluster, with its own
// go-metrics registry (so each client's metrics can be bridged under its own name).
func (c *Cluster) Config(clientSuffix string) *sarama.Config {
	sc := sarama.NewConfig()
	sc.Version = c.version
	sc.ClientID = c.cfg.ClientID
	if clientSuffix != "" {
		sc.ClientID = c.cfg.ClientID + "-" + clientSuffix
	}
	sc.Net.DialTimeout = c.cfg.DialTimeout
	sc.Net.ReadTimeout = c.cfg.ReadTimeout
	sc.Net.WriteTimeout = c.cfg.WriteTimeout
	sc.Metadata.RefreshFrequency = c.cfg.MetadataRefresh
	// kmirror creates every topic it writes to itself (topic sync, its internal topics): a
	// metadata request must never create one, least of all on a cluster swapped behind the
	// configured addresses (identity checks in pkg/mirror).
	sc.Metadata.AllowAutoTopicCreation = false
	sc.Metadata.Retry.Max = 5
	sc.Metadata.Retry.BackoffFunc = expBackoff
	sc.MetricRegistry = metrics.NewRegistry()
	cr := c.creds.Load()
	if cr.tls != nil {
		// TLS is done by the dialer, with the settings current at each connection (Reload).
		sc.Net.Proxy.Enable = true
		sc.Net.Proxy.Dialer = newTLSDialer(c, sc.Net.DialTimeout, sc.Net.KeepAlive)
	}
	if m := c.cfg.SASL.Mechanism; m != "" {
		sc.Net.SASL.Enable = true
		sc.Net.SASL.Handshake = true
		sc.Net.SASL.User = cr.sasl.Username
		sc.Net.SASL.Password = cr.pass
		switch m {
		case "PLAIN":
			sc.Net.SASL.Mechanism = sarama.SASLTypePlaintext
		case "SCRAM-SHA-256":
			sc.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA256
			sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.SHA256, creds: &c.creds} }
		case "SCRAM-SHA-512":
			sc.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA512
			sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.SHA512, creds: &c.creds} }
		}
	}
	return sc
}

// expBackoff waits 250ms, 500ms, then 1s between metadata retries: an unreachable cluster is
// asked once a second (a refused connection costs it nothing), and a cluster that comes back is
// seen within a second of its return (with up to 4 s between the last retries, the consumer
// group rejoined up to 4 s after a source broker was ready again).
func expBackoff(retries, _ int) time.Duration {
	d := 250 * time.Millisecond << min(retries, 6)
	return min(d, time.Second)
}

func tlsConfig(key string, t config.TLS) (*tls.Config, error) {
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // opt-in, documented as test-only
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%s.tls.ca_file: %w", key, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s.tls.ca_file %s: no PEM certificate found in it", key, t.CAFile)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%s.tls.cert_file/key_file: load client certificate: %w", key, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

func password(key string, s config.SASL) (string, error) {
	if s.PasswordFile != "" {
		b, err := os.ReadFile(s.PasswordFile)
		if err != nil {
			return "", fmt.Errorf("%s.sasl.password_file: %w", key, err)
		}
		pw := strings.TrimRight(string(b), "\r\n")
		if pw == "" {
			return "", fmt.Errorf("%s.sasl.password_file %s: the file is empty", key, s.PasswordFile)
		}
		return pw, nil
	}
	if s.Password == "" {
		return "", fmt.Errorf("%s.sasl.password: empty", key)
	}
	return s.Password, nil
}

// scramClient adapts xdg-go/scram to sarama's SCRAMClient. It authenticates with the cluster's
// current user and password (creds), not the ones sarama's configuration was built with, so a
// password reloaded reaches every connection opened afterwards.
type scramClient struct {
	hash  scram.HashGeneratorFcn
	creds *atomic.Pointer[credentials]
	conv  *scram.ClientConversation
}

func (s *scramClient) Begin(user, pass, authzID string) error {
	if s.creds != nil {
		cr := s.creds.Load()
		user, pass = cr.sasl.Username, cr.pass
	}
	c, err := s.hash.NewClient(user, pass, authzID)
	if err != nil {
		return fmt.Errorf("scram: %w", err)
	}
	s.conv = c.NewConversation()
	return nil
}

func (s *scramClient) Step(challenge string) (string, error) { return s.conv.Step(challenge) }

func (s *scramClient) Done() bool { return s.conv.Done() }

// Hint says what to check when the cluster cannot be reached: a broker that closes the
// connection during the TLS handshake or SASL authentication shows up in sarama only as "run out
// of available brokers" or EOF, so the hint names the settings involved (never their values).
func (c *Cluster) Hint() string {
	var parts []string
	if c.cfg.TLS.Enabled {
		parts = append(parts, c.key+".tls (CA file, server name, client certificate)")
	}
	if c.cfg.SASL.Mechanism != "" {
		parts = append(parts, fmt.Sprintf("%s.sasl SASL credentials (mechanism %s, user %q, password)", c.key, c.cfg.SASL.Mechanism, c.cfg.SASL.Username))
	}
	if len(parts) == 0 {
		return "check " + c.key + ".bootstrap and that the brokers are up and reachable (plaintext)"
	}
	return "check " + c.key + ".bootstrap, " + strings.Join(parts, " and ")
}

// TLS returns a copy of the cluster's TLS settings, or nil when TLS is off (for clients other
// than sarama's, such as the verifier's).
func (c *Cluster) TLS() *tls.Config {
	cr := c.creds.Load()
	if cr.tls == nil {
		return nil
	}
	return cr.tls.Clone()
}

// SASL returns the cluster's SASL mechanism (empty when none), user and password, for clients
// other than sarama's. The password is never to be logged.
func (c *Cluster) SASL() (mechanism, user, pass string) {
	if c.cfg.SASL.Mechanism == "" {
		return "", "", ""
	}
	cr := c.creds.Load()
	return c.cfg.SASL.Mechanism, cr.sasl.Username, cr.pass
}

// Broker is what ID needs of a client or an admin: a connected broker to ask.
type Broker interface {
	Controller() (*sarama.Broker, error)
}

// ID returns the cluster ID the brokers report in their metadata (KIP-78), "" when they report
// none. Two configurations that reach one cluster under different names (localhost and
// 127.0.0.1, a DNS alias, a load balancer) still see one ID.
func ID(b Broker, version sarama.KafkaVersion) (string, error) {
	broker, err := b.Controller()
	if err != nil {
		return "", fmt.Errorf("find a broker to ask for the cluster ID: %w", err)
	}
	// One named topic keeps the answer small (no topic list); the cluster ID comes whatever the
	// topic's own answer (unknown, or not authorised).
	req := sarama.NewMetadataRequest(version, []string{"__consumer_offsets"})
	resp, err := broker.GetMetadata(req)
	if err != nil {
		return "", fmt.Errorf("ask %s for the cluster ID: %w", broker.Addr(), err)
	}
	if resp.ClusterID == nil {
		return "", nil
	}
	return *resp.ClusterID, nil
}

// SwappedError says that the brokers at a cluster's addresses now report another cluster ID
// than when kmirror connected: another Kafka cluster answers there (replaced, rebuilt from
// scratch, or the addresses re-pointed).
type SwappedError struct {
	Key, Alias  string // "source" or "target", and the configured alias
	Bootstrap   []string
	Want, Found string // the cluster ID seen at start, and the one reported now
}

func (e *SwappedError) Error() string {
	doing := "write into"
	if e.Key == "source" {
		doing = "read from"
	}
	return fmt.Sprintf("%s cluster %q (bootstrap %v) is no longer the cluster kmirror started with: expected cluster ID %s, found %s; "+
		"another Kafka cluster answers at these addresses (replaced, rebuilt or re-pointed) and kmirror will not %s it. "+
		"Point %s.bootstrap back at the cluster with ID %s, or, if the new cluster is the one to use, check its topics and "+
		"the consumer group's offsets and restart kmirror",
		e.Key, e.Alias, e.Bootstrap, e.Want, e.Found, doing, e.Key, e.Want)
}

// CheckID asks the cluster for its ID and returns a *SwappedError when it is not want; other
// errors mean the ID could not be read. An empty want (the cluster reported none at start), or
// a cluster reporting none now, is not checked.
func (c *Cluster) CheckID(b Broker, want string) error {
	if want == "" {
		return nil
	}
	id, err := ID(b, c.version)
	if err != nil {
		return fmt.Errorf("check the %s cluster ID: %w", c.key, err)
	}
	if id != "" && id != want {
		return &SwappedError{Key: c.key, Alias: c.cfg.Alias, Bootstrap: c.cfg.Bootstrap, Want: want, Found: id}
	}
	return nil
}
