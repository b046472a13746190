package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kmirror/kmirror/pkg/config"
)

// The Strimzi resource of docs/migrating-from-mirrormaker2.md.
const docStrimzi = `apiVersion: kafka.strimzi.io/v1
kind: KafkaMirrorMaker2
metadata:
  name: europe-to-us
spec:
  replicas: 2
  target:
    alias: us
    bootstrapServers: us-kafka-bootstrap:9092
    groupId: europe-to-us
    configStorageTopic: europe-to-us-configs
    offsetStorageTopic: europe-to-us-offsets
    statusStorageTopic: europe-to-us-status
  mirrors:
    - source:
        alias: europe
        bootstrapServers: europe-kafka-bootstrap:9092
      sourceConnector:
        tasksMax: 4
        config:
          replication.factor: 3
          replication.policy.class: org.apache.kafka.connect.mirror.IdentityReplicationPolicy
      topicsPattern: "orders.*"
`

// runCLI runs the kmirror command line in-process.
func runCLI(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	cmd := newRootCommand()
	var out, errb bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), errb.String(), err
}

// TestMigrateMM2StrimziConfigOnly runs the Strimzi command of the docs: the written file is a
// configuration kmirror loads, and every setting without an exact equivalent is on stderr.
func TestMigrateMM2StrimziConfigOnly(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "kafkamirrormaker2.yaml")
	if err := os.WriteFile(in, []byte(docStrimzi), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "kmirror.yaml")
	stdout, stderr, err := runCLI(t, "migrate", "mm2", in, "--out", out, "--config-only")
	if err != nil {
		t.Fatalf("migrate mm2: %v\n%s", err, stderr)
	}
	cfg, err := config.Load(out, nil)
	if err != nil {
		t.Fatalf("the written configuration: %v", err)
	}
	if cfg.Topics.ReplicationPolicy != config.PolicyIdentity || cfg.Consumer.GroupID != "kmirror-europe-us" ||
		strings.Join(cfg.Topics.Include, ",") != "orders.*" || cfg.Topics.ReplicationFactor != 3 {
		t.Fatalf("written: policy %s, group %s, include %v, replication factor %d", cfg.Topics.ReplicationPolicy,
			cfg.Consumer.GroupID, cfg.Topics.Include, cfg.Topics.ReplicationFactor)
	}
	if !strings.Contains(stdout, "wrote "+out) {
		t.Errorf("stdout: %s", stdout)
	}
	for _, want := range []string{
		"mm2: spec.mirrors[0].sourceConnector.tasksMax = 4: approximated",
		"mm2: spec.replicas = 2: approximated",
		"mm2: spec.target.offsetStorageTopic = europe-to-us-offsets: no equivalent",
	} {
		if !strings.Contains(stderr, want+":") {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	for _, l := range strings.Split(strings.TrimSpace(stderr), "\n") {
		if !strings.HasPrefix(l, "mm2: ") {
			t.Errorf("a stderr line that is not one note: %q", l)
		}
	}
}

// TestMigrateMM2NeedsOutAndOneFlow: without --out nothing is written, and with two enabled flows
// the command asks for --flow; --flow chooses.
func TestMigrateMM2NeedsOutAndOneFlow(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "mm2.properties")
	props := "clusters = europe, us\neurope.bootstrap.servers = eu:9092\nus.bootstrap.servers = us:9092\n" +
		"europe->us.enabled = true\nus->europe.enabled = true\n"
	if err := os.WriteFile(in, []byte(props), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runCLI(t, "migrate", "mm2", in, "--config-only"); err == nil || !strings.Contains(err.Error(), "--out") {
		t.Fatalf("without --out: %v", err)
	}
	out := filepath.Join(dir, "kmirror.yaml")
	if _, _, err := runCLI(t, "migrate", "mm2", in, "--out", out, "--config-only"); err == nil || !strings.Contains(err.Error(), "--flow") {
		t.Fatalf("two flows: %v", err)
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("a configuration was written although the command failed")
	}
	if _, stderr, err := runCLI(t, "migrate", "mm2", in, "--out", out, "--config-only", "--flow", "us->europe"); err != nil {
		t.Fatalf("--flow us->europe: %v\n%s", err, stderr)
	}
	cfg, err := config.Load(out, nil)
	if err != nil || cfg.Source.Alias != "us" || cfg.Consumer.GroupID != "kmirror-us-europe" {
		t.Fatalf("--flow us->europe wrote source %v, group %v (%v)", cfg.Source.Alias, cfg.Consumer.GroupID, err)
	}
}
