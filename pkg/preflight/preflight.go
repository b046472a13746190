// Package preflight checks, before mirroring, that kmirror can do everything it needs on both
// clusters: reach the brokers, complete the TLS handshake and the SASL authentication, and
// perform each operation its ACLs must allow. It reports one verdict per check.
//
// It must never change either cluster (topic creation is validate-only) and never print a secret.
package preflight

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/IBM/sarama"

	"github.com/kmirror/kmirror/pkg/cluster"
	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/topics"
)

// Check is the verdict on one thing kmirror needs.
type Check struct {
	Cluster string // "source" or "target"
	Name    string
	Err     error
	Detail  string
	Fix     string
}

// OK reports whether the check passed.
func (c Check) OK() bool { return c.Err == nil }

// Run checks both clusters and returns every verdict.
func Run(ctx context.Context, cfg *config.Config) []Check {
	var out []Check
	out = append(out, checkSource(ctx, cfg)...)
	out = append(out, checkTarget(ctx, cfg)...)
	return out
}

// Print writes the verdicts as a table and reports whether all passed.
func Print(w io.Writer, checks []Check) bool {
	ok := true
	for _, c := range checks {
		if c.OK() {
			fmt.Fprintf(w, "%-7s %-28s ok      %s\n", c.Cluster, c.Name, c.Detail)
			continue
		}
		ok = false
		fmt.Fprintf(w, "%-7s %-28s FAILED  %v\n", c.Cluster, c.Name, c.Err)
		if c.Fix != "" {
			fmt.Fprintf(w, "%-7s %-28s         fix: %s\n", "", "", c.Fix)
		}
	}
	if ok {
		fmt.Fprintln(w, "verdict: both clusters allow everything kmirror needs")
	} else {
		fmt.Fprintln(w, "verdict: FAILED — kmirror would not be able to mirror; fix the lines above")
	}
	return ok
}

type session struct {
	key    string
	cl     *cluster.Cluster
	client sarama.Client
	admin  sarama.ClusterAdmin
	checks []Check
}

func (s *session) add(name string, err error, detail, fix string) bool {
	s.checks = append(s.checks, Check{Cluster: s.key, Name: name, Err: err, Detail: detail, Fix: fix})
	return err == nil
}

func connect(key string, cc config.Cluster) *session {
	s := &session{key: key}
	cl, err := cluster.New(key, cc)
	if !s.add("settings (TLS files, secrets)", err, "readable", "") {
		return s
	}
	s.cl = cl
	sc := cl.Config("preflight")
	sc.Metadata.Retry.Max = 1
	client, err := sarama.NewClient(cl.Bootstrap(), sc)
	detail := ""
	if err == nil {
		var addrs []string
		for _, b := range client.Brokers() {
			addrs = append(addrs, b.Addr())
		}
		detail = fmt.Sprintf("%d brokers: %s", len(addrs), strings.Join(addrs, ", "))
		if cc.TLS.Enabled {
			detail += "; TLS handshake ok"
		}
		if cc.SASL.Mechanism != "" {
			detail += "; authenticated with " + cc.SASL.Mechanism
		}
	}
	if !s.add("reach, TLS, authenticate", err, detail, cl.Hint()) {
		return s
	}
	s.client = client
	admin, err := sarama.NewClusterAdminFromClient(client)
	if !s.add("admin client", err, "", "") {
		return s
	}
	s.admin = admin
	return s
}

func (s *session) close() {
	if s.admin != nil {
		_ = s.admin.Close() // closes the client too
	} else if s.client != nil {
		_ = s.client.Close()
	}
}

func checkSource(_ context.Context, cfg *config.Config) []Check {
	s := connect("source", cfg.Source)
	defer s.close()
	if s.admin == nil {
		return s.checks
	}
	all, err := s.admin.ListTopics()
	filter, ferr := topics.NewFilter(cfg.Topics.Include, cfg.Topics.Exclude)
	var matched []string
	if err == nil && ferr == nil {
		for t := range all {
			if filter.Match(t) {
				matched = append(matched, t)
			}
		}
	}
	if err == nil {
		err = ferr
	}
	s.add("describe topics", err, fmt.Sprintf("%d topics visible, %d match topics.include", len(all), len(matched)),
		"grant Describe on the topics to mirror (and DescribeConfigs)")
	if len(matched) > 0 {
		t := matched[0]
		_, err := s.admin.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: t})
		s.add("describe topic configs", err, "on "+t, "grant DescribeConfigs on the topics to mirror")
		_, err = s.client.GetOffset(t, 0, sarama.OffsetNewest)
		s.add("read (list offsets)", err, "on "+t+" partition 0", "grant Read and Describe on the topics to mirror")
	}
	_, err = s.admin.DescribeConsumerGroups([]string{cfg.Consumer.GroupID})
	s.add("consumer group", err, "group "+cfg.Consumer.GroupID, fmt.Sprintf("grant Read and Describe on group %q", cfg.Consumer.GroupID))
	return s.checks
}

func checkTarget(_ context.Context, cfg *config.Config) []Check {
	s := connect("target", cfg.Target)
	defer s.close()
	if s.admin == nil {
		return s.checks
	}
	_, _, err := s.admin.DescribeCluster()
	s.add("describe cluster", err, "", "grant Describe on the cluster")
	if cfg.Topics.Create {
		err := s.admin.CreateTopic("kmirror-preflight-check", &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1}, true)
		if err != nil && strings.Contains(err.Error(), "replication factor") {
			err = nil // the request was authorized; only the validation of the settings refused it
		}
		s.add("create topics (validate only)", err, "nothing created", "grant Create on the topics (or the cluster), or set topics.create: false and create them yourself")
	}
	pid, err := s.client.InitProducerID()
	detail := ""
	if err == nil {
		detail = fmt.Sprintf("producer id %d", pid.ProducerID)
		if pid.Err != sarama.ErrNoError {
			err = pid.Err
		}
	}
	s.add("idempotent write", err, detail, "grant IdempotentWrite on the cluster and Write on the topics")
	return s.checks
}
