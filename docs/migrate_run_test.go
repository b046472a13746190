package docs

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestMigrateCommandsRun runs the commands of docs/migrating-from-mirrormaker2.md in their order
// against a source where MirrorMaker 2 (as its Connect offsets topic and its copies on the
// target show it) copied the first 6 of 10 records of each partition: preview, seed, seed again
// with --force, validate, run — after which the target holds each source partition exactly
// once, in order — then the Strimzi and Connect-cluster variants.
func TestMigrateCommandsRun(t *testing.T) {
	s := newSandbox(t)
	s.run("make build")
	s.createTopic(s.europeC, s.europeA, "orders", "orders", 3, 10)
	// What MirrorMaker 2 left: europe.orders on us with the first 6 records of each partition,
	// and its MirrorSourceConnector's positions (last copied offset 5) in the offsets topic.
	s.createTopic(s.usC, s.usA, "europe.orders", "orders", 3, 6)
	const offsetsTopic = "mm2-offsets.europe.internal"
	if _, err := s.usA.CreateTopic(s.ctx, 1, 1, nil, offsetsTopic); err != nil {
		t.Fatal(err)
	}
	for p := range 3 {
		key := fmt.Sprintf(`["MirrorSourceConnector",{"cluster":"europe","partition":%d,"topic":"orders"}]`, p)
		if err := s.usC.ProduceSync(s.ctx, &kgo.Record{Topic: offsetsTopic, Key: []byte(key), Value: []byte(`{"offset":5}`)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	props := fmt.Sprintf("clusters = europe, us\neurope.bootstrap.servers = %s\nus.bootstrap.servers = %s\n"+
		"europe->us.enabled = true\neurope->us.topics = orders\n", s.europe.Addrs()[0], s.us.Addrs()[0])
	s.write("mm2.properties", props)

	if out := s.run("kmirror migrate mm2 mm2.properties --out kmirror.yaml --dry-run"); !strings.Contains(out, `--dry-run: would seed group "kmirror-europe-us"`) {
		t.Errorf("the preview does not show the positions it would seed:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(s.dir, "kmirror.yaml")); err == nil {
		t.Error("--dry-run wrote kmirror.yaml")
	}
	if out := s.run("kmirror migrate mm2 mm2.properties --out kmirror.yaml"); !strings.Contains(out, `seeded group "kmirror-europe-us": 3 partition(s)`) {
		t.Errorf("the group was not seeded:\n%s", out)
	}
	if out := s.run("kmirror migrate mm2 mm2.properties --out kmirror.yaml --force"); !strings.Contains(out, `seeded group "kmirror-europe-us": 3 partition(s)`) {
		t.Errorf("--force did not seed again:\n%s", out)
	}
	s.run("kmirror validate --config kmirror.yaml")
	d := s.start("kmirror run --config kmirror.yaml")
	s.waitCopied("orders", "europe.orders") // 10 per partition: none of MirrorMaker 2's copied again, none skipped
	d.stop()

	if out := s.run("kmirror migrate mm2 mm2.properties --out kmirror.yaml --offsets-topic mm2-offsets.europe.internal --connector MirrorSourceConnector --dry-run"); !strings.Contains(out, "seeding would be refused without --force") {
		t.Errorf("the preview after kmirror ran does not say a seed would be refused:\n%s", out)
	}
	s.write("kafkamirrormaker2.yaml", `apiVersion: kafka.strimzi.io/v1
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
      topicsPattern: "orders.*"
`)
	s.run("kmirror migrate mm2 kafkamirrormaker2.yaml --out kmirror.yaml --config-only")
	b, err := os.ReadFile(filepath.Join(s.dir, "kmirror.yaml"))
	if err != nil || !strings.Contains(string(b), "europe-kafka-bootstrap:9092") {
		t.Errorf("--config-only did not write the resource's configuration (%v):\n%s", err, b)
	}
}

// write writes a file a page's commands read into the sandbox.
func (s *sandbox) write(name, content string) {
	s.t.Helper()
	if err := os.WriteFile(filepath.Join(s.dir, name), []byte(content), 0o600); err != nil {
		s.t.Fatal(err)
	}
}
