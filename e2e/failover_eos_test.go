//go:build e2e

package e2e

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kmirror/kmirror/pkg/offsetmap"
)

// The failover of consumer groups when kmirror runs exactly-once: the target topics then hold
// kmirror's own transaction markers and, after a kill -9, the aborted copies of the transaction
// it left open, none of which a read_committed consumer sees, so target offsets differ from the
// source's in more ways than at-least-once. `kmirror offsets translate` and `kmirror failover`
// must still move a group to the offsets where it reads, on us, exactly the records it had not
// read on europe, in order: nothing skipped, nothing read twice.

const (
	eosPlainRecords = 40_000
	eosPlainBehind  = 25_000
)

// TestExactlyOnceGroupFailoverIsExact runs kmirror in exactly_once mode over plain records and
// interleaved committed and aborted transactions — once undisturbed, once killed -9 under load
// (the transaction it left open is aborted when it starts again, leaving aborted copies on the
// target) — positions three groups on europe (caught up, behind, never committed), then
// translates and fails them over to us with the CLI. Read on us with franz-go (read_committed)
// from the offsets failover committed, each group's records per partition must be the source's
// records from its europe position on, in source order, each once.
func TestExactlyOnceGroupFailoverIsExact(t *testing.T) {
	t.Run("steady", func(t *testing.T) { testExactlyOnceFailover(t, false) })
	t.Run("kill-9", func(t *testing.T) { testExactlyOnceFailover(t, true) })
}

func testExactlyOnceFailover(t *testing.T, kill bool) {
	started := time.Now()
	europe, us := startCluster(t, "europe"), startCluster(t, "us")
	europe.createTopic(t, "plain", 3, 1, nil)
	europe.createTopic(t, "txn", 3, 1, nil)
	s := &failoverScenario{europe: europe, us: us, telemetry: telemetryAddr()}
	s.cfg = writeConfig(t, strings.Replace(baseConfig(europe, us, "plain|txn", failoverSettings("1h")+eosSettings),
		`listen: ""`, fmt.Sprintf("listen: %q", s.telemetry), 1))
	s.k = startKmirror(t, s.cfg)
	// The load starts once kmirror's transactional producers are open (its first heartbeat is
	// on us), so that it commits a transaction every delivery.transaction.max_age while the load
	// runs: kmirror's markers then lie between the groups' positions, not only at the end.
	waitFor(t, "kmirror to mirror its first heartbeat", 2*time.Minute, func() bool { return us.count(t, "kmirror.heartbeats.europe") > 0 })

	load := startLoad(t, europe.bootstrap, "plain", eosPlainRecords, 10_000)
	txn := startTxnWriters(t, europe)
	if kill {
		// Killed in the middle of a transaction, kmirror leaves it open; the next start aborts
		// it: the target holds copies no read_committed consumer reads, at offsets the map must
		// skip.
		waitFor(t, "kmirror to copy plain", 2*time.Minute, func() bool { return us.count(t, "plain") >= 15_000 })
		s.k.kill()
		t.Logf("killed kmirror -9 with the target's plain log at %d, %d produced", us.count(t, "plain"), load.count())
		s.k = startKmirror(t, s.cfg)
	}
	produced := load.wait(t)
	committed, aborted := txn.wait(t)
	t.Logf("wrote %d plain records and %d transactional ones (%d more aborted)", produced, committed, aborted)

	topics := []string{"plain", "txn"}
	s.source = map[string]sourceIndex{}
	for _, topic := range topics {
		s.source[topic] = indexSource(t, europe, topic)
	}
	if n := len(s.source["plain"]); n != produced {
		t.Fatalf("europe holds %d plain records, %d were written", n, produced)
	}
	groups := []string{groupCaughtUp, groupBehind, groupNever}
	consumeAndCommit(t, europe, groupCaughtUp, s.source, nil, true)
	consumeAndCommit(t, europe, groupBehind, s.source, map[string]int{
		"plain": len(s.source["plain"]) - eosPlainBehind, "txn": len(s.source["txn"]) / 2,
	}, true)
	consumeAndCommit(t, europe, groupNever, s.source, nil, false)
	s.positions = map[string]groupPositions{}
	for _, g := range groups {
		s.positions[g] = committedPositions(t, europe, g)
		t.Logf("group %s on europe: %v", g, s.positions[g])
	}
	waitPositionsCaughtUp(t, us, s.source)
	checkMapCoversEveryRecord(t, us, s.source, topics)
	for _, topic := range topics {
		end := us.count(t, topic)
		t.Logf("%s: %d records on europe, target log end %d (with kmirror's markers and aborted copies)", topic, len(s.source[topic]), end)
		if end <= int64(len(s.source[topic])) {
			t.Fatalf("%s on us ends at %d, no further than the %d records copied: no transaction markers, the test's premise is wrong", topic, end, len(s.source[topic]))
		}
	}

	// Before the failover: every committed position translates exactly.
	for _, g := range groups {
		r := translate(t, s.cfg, g)
		if want := countPartitions(s.positions[g]); len(r.Partitions) != want {
			t.Errorf("offsets translate reported %d partitions of group %s, which has committed %d on europe", len(r.Partitions), g, want)
		}
		for _, p := range r.Partitions {
			if p.Status != "exact" {
				t.Errorf("offsets translate: group %s %s/%d at %d: %s (%s), want exact", g, p.Topic, p.Partition, p.SourceOffset, p.Status, p.Reason)
			}
		}
	}
	reports, code := failoverScenarioGroups(t, s.cfg)
	for _, g := range groups {
		r, ok := reports[g]
		if !ok {
			t.Errorf("kmirror failover reported nothing for group %s", g)
			continue
		}
		for _, p := range r.Partitions {
			t.Logf("failover %s %s/%d: source %d -> target %d, %s, %s", g, p.Topic, p.Partition, p.SourceOffset, p.TargetOffset, p.Status, p.Action)
			if p.Status != "exact" || p.Action != "committed" {
				t.Errorf("group %s %s/%d: translation %s (%s), %s; want exact, committed", g, p.Topic, p.Partition, p.Status, p.Reason, p.Action)
			}
		}
	}
	if code != 0 {
		t.Errorf("kmirror failover exited with status %d, want 0", code)
	}
	s.checkTranslateAgrees(t, groups, reports)
	s.k.stop()

	var sum translationFigures
	for _, g := range groups {
		read := readAsGroup(t, us, g, topics)
		for _, topic := range topics {
			f := countTranslation(s.source[topic], s.positions[g][topic], read[topic])
			sum.add(f)
			order := sequelMismatch(s.source[topic], s.positions[g][topic], read[topic])
			t.Logf("%s %s after failover: %s; order: %s", g, topic, f, orDefault(order, "the source's"))
			if f.Skipped != 0 || f.Reread != 0 || f.Duplicates != 0 || f.Foreign != 0 || order != "" {
				t.Errorf("group %s topic %s after kmirror failover (exactly-once): %s; order: %s; want nothing skipped, re-read, duplicated or foreign, in source order",
					g, topic, f, orDefault(order, "the source's"))
			}
		}
	}
	t.Logf("figures: exactly-once failover (kill -9: %v) of 3 groups over plain and txn: %s; run %s", kill, sum, time.Since(started).Round(time.Second))
}

// waitPositionsCaughtUp waits until the source positions kmirror committed on the target
// (exactly_once: positionsGroup, under the target topics' names, here the same) are past every
// record of source's topics.
func waitPositionsCaughtUp(t *testing.T, us *cluster, source map[string]sourceIndex) {
	t.Helper()
	var behind []string
	deadline := time.Now().Add(2 * time.Minute)
	for {
		behind = behind[:0]
		pos := committedPositions(t, us, positionsGroup)
		for _, topic := range sortedKeys(source) {
			for p, last := range source[topic].lastOffsets() {
				if c := pos[topic][p]; c <= last {
					behind = append(behind, fmt.Sprintf("%s/%d position %d, last record %d", topic, p, c, last))
				}
			}
		}
		if len(behind) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("kmirror did not catch up within 2m: %s", strings.Join(behind, "; "))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// sequelMismatch compares the ids a group read on the target, per partition in the order read,
// with the source's records at or after the group's position in that partition, in source
// order: "" when they are the same sequence, otherwise where they first differ.
func sequelMismatch(source sourceIndex, position map[int32]int64, read map[int32][]string) string {
	type rec struct {
		id     string
		offset int64
	}
	want := map[int32][]rec{}
	for id, r := range source {
		if r.offset >= startOf(position, r.partition) {
			want[r.partition] = append(want[r.partition], rec{id, r.offset})
		}
	}
	parts := map[int32]bool{}
	for p := range want {
		parts[p] = true
	}
	for p := range read {
		parts[p] = true
	}
	var ps []int32
	for p := range parts {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	var out []string
	for _, p := range ps {
		w := want[p]
		sort.Slice(w, func(i, j int) bool { return w[i].offset < w[j].offset })
		got := read[p]
		i := 0
		for i < len(w) && i < len(got) && w[i].id == got[i] {
			i++
		}
		switch {
		case i == len(w) && i == len(got):
		case i < len(w) && i < len(got):
			out = append(out, fmt.Sprintf("partition %d: record %d read is %s, the source's is %s (offset %d)", p, i, got[i], w[i].id, w[i].offset))
		case i < len(w):
			out = append(out, fmt.Sprintf("partition %d: read %d records, the source has %d from the position on", p, len(got), len(w)))
		default:
			out = append(out, fmt.Sprintf("partition %d: read %d records, %d more than the source has from the position on", p, len(got), len(got)-len(w)))
		}
	}
	return strings.Join(out, "; ")
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// checkMapCoversEveryRecord reads the offset-map topic on us (franz-go, read_committed) and
// translates the offset of every record of topics on europe: once the positions have caught up,
// each must translate exactly. A map written after the positions it covers leaves, after a kill
// -9, a hole no restart fills (the restart resumes after it).
func checkMapCoversEveryRecord(t *testing.T, us *cluster, source map[string]sourceIndex, topics []string) {
	t.Helper()
	x := offsetmap.NewIndex()
	n := 0
	for _, rs := range readRecords(t, us, offsetmap.DefaultTopic("europe")) {
		for _, r := range rs {
			if err := x.Apply(r.Key, r.Value); err != nil {
				t.Fatalf("offset map record at %d: %v", r.Offset, err)
			}
			n++
		}
	}
	for _, topic := range topics {
		holes := map[int32][]int64{}
		for _, r := range source[topic] {
			if tr := x.Translate(topic, r.partition, r.offset, ""); tr.Status != offsetmap.Exact {
				holes[r.partition] = append(holes[r.partition], r.offset)
			}
		}
		missing := 0
		for p, offs := range holes {
			sort.Slice(offs, func(i, j int) bool { return offs[i] < offs[j] })
			missing += len(offs)
			t.Errorf("offset map: %s/%d: %d records not translated exactly, source offsets %d to %d", topic, p, len(offs), offs[0], offs[len(offs)-1])
		}
		t.Logf("offset map (%d records read): %s: %d of %d records translate exactly", n, topic, len(source[topic])-missing, len(source[topic]))
	}
}
