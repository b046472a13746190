package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// contender is one mirror configuration the benchmark measures: which program, in which
// delivery mode.
type contender struct {
	name  string // for --only and --contenders, log and profile file names
	label string // in the report
	// program is "kmirror", "baremirror", "baresarama" or "mirrormaker2": how the contender is
	// started (the two bare mirrors are the Go programs of the same names under benchmarks/).
	program string
	// exactlyOnce contenders write transactions: the harness reads their target with
	// read_committed, and a record counts (and has arrived, for latency) once its transaction
	// has committed.
	exactlyOnce bool
}

// contenders are all the contenders, in the order each round runs them.
var contenders = []contender{
	{name: "kmirror", label: "kmirror", program: "kmirror"},
	// bare is the reference for a Go mirror on this machine (benchmarks/baremirror): franz-go's
	// consumer feeding its producer and nothing else. It runs right after kmirror, so that
	// the two are measured as close together as the rounds allow.
	{name: "bare", label: "bare mirror (franz-go)", program: "baremirror"},
	// baresarama is the same mirror on sarama's high-level clients (benchmarks/baresarama): its
	// consumer group feeding its idempotent async producer, one request in flight per broker.
	// It shows what the client library kmirror is built on reaches here without kmirror.
	{name: "baresarama", label: "bare mirror (sarama)", program: "baresarama"},
	{name: "kmirror-eos", label: "kmirror exactly-once", program: "kmirror", exactlyOnce: true},
	{name: "mirrormaker2", label: "MirrorMaker 2", program: "mirrormaker2"},
	{name: "mirrormaker2-eos", label: "MirrorMaker 2 exactly-once", program: "mirrormaker2", exactlyOnce: true},
}

func contenderNames() string {
	var names []string
	for _, c := range contenders {
		names = append(names, c.name)
	}
	return strings.Join(names, ",")
}

// selectContenders returns the contenders a run measures, in the order of contenders: only, when
// set, else those of the comma-separated list.
func selectContenders(list, only string) ([]contender, error) {
	if only != "" {
		list = only
	}
	out, unknown := pick(list, contenders, func(c contender) string { return c.name })
	if unknown != "" {
		return nil, fmt.Errorf("contender %q: want one of %s", unknown, contenderNames())
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no contender selected: want some of %s", contenderNames())
	}
	return out, nil
}

// mirrorCommand returns the command that runs contender c on topicName with the clusters at at,
// and the topic's name on the target. Each contender and run (id) has groups of its own on the
// source: a killed run's member stays in its group until its session times out, kmirror's two
// modes assign partitions with different protocols, and a group that copied a topic before would
// start at its end.
func (h *harness) mirrorCommand(c contender, at endpoints, topicName string, id int) (cmd *exec.Cmd, targetTopic string, err error) {
	switch c.program {
	case "kmirror":
		delivery := ""
		if c.exactlyOnce {
			delivery = "delivery: {mode: exactly_once}\n"
		}
		cfg := filepath.Join(h.work, c.name+".yaml")
		body := fmt.Sprintf(`source: {alias: europe, bootstrap: [%s]}
target: {alias: us, bootstrap: [%s]}
topics: {include: [%s], replication_factor: 1}
consumer: {group_id: bench-%s-%d}
producer: {batch_bytes: 1048576, linger: 5ms, compression: none}
telemetry: {listen: "%s", pprof: true}
log: {level: warn}
%s`, strings.Join(at.source, ","), strings.Join(at.target, ","), topicName, c.name, id, h.telemetryAddr(), delivery)
		if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
			return nil, "", err
		}
		args := []string{"run", "--config", cfg}
		for _, kv := range h.o.kmirrorSet {
			args = append(args, "--set", kv)
		}
		cmd = exec.Command(filepath.Join(h.o.root, "bin", "kmirror"), args...)
		cmd.Env = append(os.Environ(), h.o.kmirrorEnv...)
		return cmd, topicName, nil
	case "baremirror", "baresarama":
		cmd = exec.Command(h.programs[c.program], "--source", strings.Join(at.source, ","), "--target", strings.Join(at.target, ","),
			"--topic", topicName, "--group", fmt.Sprintf("bench-%s-%d", c.name, id))
		// kmirror's default collector target (runtime.gc_percent: 200), so that no Go mirror
		// is measured with a GC setting the others lack.
		cmd.Env = append(os.Environ(), "GOGC=200")
		return cmd, topicName, nil
	case "mirrormaker2":
		cfg := filepath.Join(h.work, c.name+".properties")
		body := fmt.Sprintf(`clusters = europe, us
europe.bootstrap.servers = %s
us.bootstrap.servers = %s
europe->us.enabled = true
us->europe.enabled = false
europe->us.topics = %s
tasks.max = %d
replication.factor = 1
offset-syncs.topic.replication.factor = 1
checkpoints.topic.replication.factor = 1
heartbeats.topic.replication.factor = 1
offset.storage.replication.factor = 1
config.storage.replication.factor = 1
status.storage.replication.factor = 1
emit.checkpoints.enabled = false
sync.group.offsets.enabled = false
refresh.topics.interval.seconds = 5
europe.consumer.group.id = mm2-bench-%s-%d
us.producer.acks = all
us.producer.linger.ms = 5
us.producer.batch.size = 1048576
us.producer.compression.type = none
us.producer.enable.idempotence = true
`, strings.Join(at.source, ","), strings.Join(at.target, ","), topicName, h.o.partitions, c.name, id)
		if c.exactlyOnce {
			body += mm2ExactlyOnce(h.mm2RESTAddr())
		}
		if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
			return nil, "", err
		}
		return h.java("org.apache.kafka.connect.mirror.MirrorMaker", cfg), "europe." + topicName, nil
	}
	return nil, "", fmt.Errorf("contender %s: unknown program %q", c.name, c.program)
}

// mm2ExactlyOnce turns on KIP-618 exactly-once source support in dedicated mode, as Kafka's
// "Geo-replication: Exactly once" documentation says:
//   - exactly.once.source.support is a worker property of the target cluster's herder, so it is
//     prefixed with the target's alias: MirrorMakerConfig.workerConfig copies only the target's
//     properties and a few prefixes (offset.storage, task, worker, ...) into the worker config,
//     and a top-level exactly.once.source.support would be ignored;
//   - dedicated mode needs its internal REST server (KIP-710) for it;
//   - the source consumer reads read_committed: only then does MirrorSourceConnector declare
//     exactly-once support (and no aborted source records are copied).
//
// Each source task then writes its records and source offsets in one transaction per poll
// (transaction.boundary=poll, the default). rest is the internal REST server's host:port.
func mm2ExactlyOnce(rest string) string {
	return `us.exactly.once.source.support = enabled
dedicated.mode.enable.internal.rest = true
listeners = http://` + rest + `
europe.consumer.isolation.level = read_committed
`
}

// pick returns the items of all that the comma-separated list names, in the order of all, or
// the first name in list that no item has.
func pick[T any](list string, all []T, name func(T) string) (picked []T, unknown string) {
	want := map[string]bool{}
	for _, n := range strings.Split(list, ",") {
		if n = strings.TrimSpace(n); n == "" {
			continue
		}
		if !slices.ContainsFunc(all, func(it T) bool { return name(it) == n }) {
			return nil, n
		}
		want[n] = true
	}
	for _, it := range all {
		if want[name(it)] {
			picked = append(picked, it)
		}
	}
	return picked, ""
}

// inTurn is cs in the order of turn i (a catch-up round, a paced rate): as given on even turns,
// reversed on odd ones, so that no contender always runs first. Runs in a fixed order once put
// every paced kmirror run first, right after the catch-ups: in the first paced run the source
// broker used 84-104% of a core against 66-74% in the second at the same 10,000 records/s,
// whichever mirror ran first, and the p99 of the first was up to twice the second's.
func inTurn(cs []contender, i int) []contender {
	out := slices.Clone(cs)
	if i%2 == 1 {
		slices.Reverse(out)
	}
	return out
}
