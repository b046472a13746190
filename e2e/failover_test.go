//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// The failover tests hold kmirror's group offset translation to its promise: a consumer group
// that moves from europe to us, at the offsets `kmirror failover` commits for it, reads every
// record it had not read on europe and none it had (copies a restart made again are duplicates,
// counted apart) — over plain records, transactions (markers, aborted records) and compacted
// logs (offsets without records), after a kill -9 of kmirror. MirrorMaker 2 runs the same
// scenario beside it for comparison; its figures are printed, not asserted.

const (
	plainRecords = 150_000
	plainBehind  = 100_000

	groupCaughtUp = "failover-caught-up" // read everything on europe and committed
	groupBehind   = "failover-behind"    // plainBehind records behind plain's head, halfway into txn and compacted
	groupNever    = "failover-never"     // joined europe, never committed
)

// failoverTopicNames are the scenario's europe topics.
func failoverTopicNames() []string { return []string{"compacted", "plain", "txn"} }

// failoverSettings are the settings the failover tests give kmirror beyond baseConfig: the
// groups to sync, how often the daemon syncs them, and a map flush quick enough for a test.
func failoverSettings(syncInterval string) string {
	return fmt.Sprintf(`
offset_map:
  flush_interval: 500ms
groups:
  include: ["failover-.*"]
  sync_interval: %s
`, syncInterval)
}

// failoverScenario is europe with the scenario's topics and groups, mirrored to us by kmirror
// (killed -9 once under load) and by MirrorMaker 2.
type failoverScenario struct {
	europe, us *cluster
	cfg        string // kmirror's configuration file
	k          *kmirror
	mm2        *mirrorMaker2
	source     map[string]sourceIndex    // by topic, read once the writers stopped
	positions  map[string]groupPositions // europe's committed offsets, by group
	telemetry  string                    // kmirror's telemetry listener
}

// telemetryAddr is where kmirror's telemetry listens in the failover test: beside the clusters'
// ports when KMIRROR_E2E_PORT_BASE moves them.
func telemetryAddr() string {
	port := 19466
	if b := os.Getenv("KMIRROR_E2E_PORT_BASE"); b != "" {
		var base int
		if _, err := fmt.Sscan(b, &base); err == nil {
			port = base + 466
		}
	}
	return fmt.Sprintf("127.0.0.1:%d", port)
}

// startFailoverScenario builds the scenario: compacted written and compacted before any mirror
// starts; kmirror and MirrorMaker 2 started; plainRecords records into plain and transactions
// into txn while kmirror copies, kmirror killed -9 and restarted once plain is under way; the
// groups committed on europe once the writers are done; kmirror caught up.
func startFailoverScenario(t *testing.T) *failoverScenario {
	t.Helper()
	s := &failoverScenario{europe: startEurope(t), us: startCluster(t, "us")}
	writeCompacted(t, s.europe)
	s.europe.createTopic(t, "plain", 3, 1, nil)
	s.europe.createTopic(t, "txn", 3, 1, nil)
	// The daemon syncs the groups once an hour: here `kmirror failover` is the one to commit. Its
	// telemetry listener serves GET /offsets/translate.
	s.telemetry = telemetryAddr()
	s.cfg = writeConfig(t, strings.Replace(baseConfig(s.europe, s.us, "plain|txn|compacted", failoverSettings("1h")),
		`listen: ""`, fmt.Sprintf("listen: %q", s.telemetry), 1))
	s.mm2 = startMirrorMaker2(t, s.europe, s.us, "plain, txn, compacted", "failover-.*")
	s.k = startKmirror(t, s.cfg)

	load := startLoad(t, s.europe.bootstrap, "plain", plainRecords, 15_000)
	txn := startTxnWriters(t, s.europe)
	// Killed past a third of plain, kmirror copies again from its last commit: the behind group's
	// position (a third into each partition) most likely lies among records copied twice.
	waitFor(t, "kmirror to copy plain", 2*time.Minute, func() bool { return s.us.count(t, "plain") >= 51_000 })
	s.k.kill()
	t.Logf("killed kmirror -9 with %d plain records on the target, %d produced; kmirror had committed %v", s.us.count(t, "plain"),
		load.count(), committedPositions(t, s.europe, "kmirror"))
	s.k = startKmirror(t, s.cfg)
	produced := load.wait(t)
	committed, aborted := txn.wait(t)
	t.Logf("wrote %d plain records and %d transactional ones (%d more aborted)", produced, committed, aborted)

	s.source = map[string]sourceIndex{}
	for _, topic := range failoverTopicNames() {
		s.source[topic] = indexSource(t, s.europe, topic)
	}
	if n := len(s.source["plain"]); n != produced {
		t.Fatalf("europe holds %d plain records, %d were written", n, produced)
	}
	if n := len(s.source["txn"]); n != committed {
		t.Fatalf("europe holds %d committed txn records, %d were committed", n, committed)
	}

	consumeAndCommit(t, s.europe, groupCaughtUp, s.source, nil, true)
	consumeAndCommit(t, s.europe, groupBehind, s.source, map[string]int{
		"plain": len(s.source["plain"]) - plainBehind, "txn": len(s.source["txn"]) / 2, "compacted": len(s.source["compacted"]) / 2,
	}, true)
	consumeAndCommit(t, s.europe, groupNever, s.source, nil, false)
	s.positions = map[string]groupPositions{}
	for _, g := range []string{groupCaughtUp, groupBehind, groupNever} {
		s.positions[g] = committedPositions(t, s.europe, g)
		t.Logf("group %s on europe: %v", g, s.positions[g])
	}

	waitKmirrorCaughtUp(t, s.europe, s.source)
	return s
}

// waitKmirrorCaughtUp waits until the kmirror group on europe has committed past every record
// of source's topics (a partition ending in a transaction marker may keep the marker's offset:
// a read_committed consumer is never handed the marker).
func waitKmirrorCaughtUp(t *testing.T, europe *cluster, source map[string]sourceIndex) {
	t.Helper()
	var behind []string
	deadline := time.Now().Add(2 * time.Minute)
	for {
		behind = behind[:0]
		committed := committedPositions(t, europe, "kmirror")
		for _, topic := range sortedKeys(source) {
			for p, last := range source[topic].lastOffsets() {
				if c := committed[topic][p]; c <= last {
					behind = append(behind, fmt.Sprintf("%s/%d committed %d, last record %d", topic, p, c, last))
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

// figures reads group on us over the target topics (target names each source topic) and counts,
// per source topic, what the group skipped, re-read and read twice against its europe position.
func (s *failoverScenario) figures(t *testing.T, group string, target func(string) string) map[string]translationFigures {
	t.Helper()
	var topics []string
	for _, topic := range failoverTopicNames() {
		topics = append(topics, target(topic))
	}
	read := readAsGroup(t, s.us, group, topics)
	out := map[string]translationFigures{}
	for _, topic := range failoverTopicNames() {
		out[topic] = countTranslation(s.source[topic], s.positions[group][topic], read[target(topic)])
	}
	return out
}

// groupReport is a report of `kmirror offsets translate --json`, one of `kmirror failover
// --json`'s, and the body of GET /offsets/translate: read here from the JSON alone.
type groupReport struct {
	Group        string `json:"group"`
	TargetState  string `json:"target_state"`
	TargetActive bool   `json:"target_active"`
	// CommittedByOthers: another client commits the group's offsets on the target.
	CommittedByOthers bool              `json:"target_committed_by_others"`
	Partitions        []reportPartition `json:"partitions"`
}

type reportPartition struct {
	Topic           string `json:"topic"`
	Partition       int32  `json:"partition"`
	SourceOffset    int64  `json:"source_offset"`
	TargetOffset    int64  `json:"target_offset"`
	Status          string `json:"status"`
	Mirrored        int64  `json:"mirrored"`
	Behind          int64  `json:"behind"`
	Reason          string `json:"reason"`
	TargetTopic     string `json:"target_topic"`
	TargetCommitted int64  `json:"target_committed"`
	Action          string `json:"action"`
}

// kmirrorCLI runs bin/kmirror with args and returns its standard output and exit status.
func kmirrorCLI(t *testing.T, args ...string) ([]byte, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(repoRoot(t), "bin", "kmirror"), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := runOwned(t, cmd)
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("kmirror %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	if stderr.Len() > 0 {
		t.Logf("kmirror %s (stderr):\n%s", args[0], lastLines(stderr.String(), 20))
	}
	return stdout.Bytes(), cmd.ProcessState.ExitCode()
}

// failoverScenarioGroups fails over the scenario's groups. failover exits 1 naming a group with
// no committed offsets (nothing moved): the groups that committed on europe must move and exit 0
// on their own (the status returned); the one that never committed is asked for apart and must
// exit 1. The reports of all three are returned.
func failoverScenarioGroups(t *testing.T, cfg string) (map[string]groupReport, int) {
	t.Helper()
	reports, code := failover(t, cfg, []string{groupCaughtUp, groupBehind})
	never, neverCode := failover(t, cfg, []string{groupNever})
	maps.Copy(reports, never)
	if neverCode != 1 {
		t.Errorf("kmirror failover of %s, which never committed on europe, exited with status %d, want 1", groupNever, neverCode)
	}
	return reports, code
}

// failover runs `kmirror failover --json` for groups with extra flags and returns the reports
// by group and the exit status.
func failover(t *testing.T, cfg string, groups []string, extra ...string) (map[string]groupReport, int) {
	t.Helper()
	args := []string{"failover", "--config", cfg, "--wait", "2m", "--json"}
	for _, g := range groups {
		args = append(args, "--group", g)
	}
	out, code := kmirrorCLI(t, append(args, extra...)...)
	var body struct {
		Groups []groupReport `json:"groups"`
	}
	if err := json.Unmarshal(out, &body); err != nil {
		t.Fatalf("kmirror failover --json printed no report (exit %d): %v\n%s", code, err, out)
	}
	reports := map[string]groupReport{}
	for _, r := range body.Groups {
		reports[r.Group] = r
	}
	return reports, code
}

// translate runs `kmirror offsets translate --json` for group.
func translate(t *testing.T, cfg, group string) groupReport {
	t.Helper()
	out, code := kmirrorCLI(t, "offsets", "translate", "--config", cfg, "--group", group, "--json")
	var r groupReport
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("kmirror offsets translate --json printed no report (exit %d): %v\n%s", code, err, out)
	}
	return r
}

// translateOverHTTP asks the running kmirror: GET /offsets/translate?group=G[&topic=T].
func (s *failoverScenario) translateOverHTTP(t *testing.T, group, topic string) groupReport {
	t.Helper()
	u := fmt.Sprintf("http://%s/offsets/translate?group=%s", s.telemetry, url.QueryEscape(group))
	if topic != "" {
		u += "&topic=" + url.QueryEscape(topic)
	}
	resp, err := http.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	var r groupReport
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d, %v", u, resp.StatusCode, err)
	}
	return r
}

// sortedKeys returns the keys of a map of strings, sorted.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// TestGroupFailoverIsExact runs the scenario with kmirror and MirrorMaker 2, fails over three
// groups (caught up, far behind, never committed) with `kmirror failover` and expects, for each
// group and topic, nothing skipped and nothing re-read when the group reads us from the offsets
// kmirror committed; `kmirror offsets translate` must agree with them. MirrorMaker 2's figures
// for the offsets it synced are printed beside kmirror's and written to
// benchmarks/results/failover-translation.md.
func TestGroupFailoverIsExact(t *testing.T) {
	started := time.Now()
	s := startFailoverScenario(t)
	groups := []string{groupCaughtUp, groupBehind, groupNever}
	t.Logf("scenario ready after %s", time.Since(started).Round(time.Second))

	var rows []figureRow
	kmirrorFigures := map[string]map[string]translationFigures{}
	reports, code := failoverScenarioGroups(t, s.cfg)
	for _, g := range groups {
		r, ok := reports[g]
		if !ok {
			t.Errorf("kmirror failover reported nothing for group %s", g)
			continue
		}
		if want := countPartitions(s.positions[g]); len(r.Partitions) != want {
			t.Errorf("kmirror failover reported %d partitions of group %s, which has committed %d on europe", len(r.Partitions), g, want)
		}
		for _, p := range r.Partitions {
			t.Logf("failover %s %s/%d: source %d -> target %d, %s, %s (behind %d) %s", g, p.Topic, p.Partition,
				p.SourceOffset, p.TargetOffset, p.Status, p.Action, p.Behind, p.Reason)
			if p.Status != "exact" || p.Action != "committed" {
				t.Errorf("group %s %s/%d: translation %s (%s), %s; want exact, committed", g, p.Topic, p.Partition, p.Status, p.Reason, p.Action)
			}
		}
	}
	if code != 0 {
		t.Errorf("kmirror failover exited with status %d, want 0", code)
	}
	s.checkTranslateAgrees(t, groups, reports)
	for _, g := range groups {
		kmirrorFigures[g] = s.figures(t, g, func(topic string) string { return topic })
	}
	s.mm2.waitSynced(t, s.us, s.source, groups)
	for _, g := range groups {
		mm2 := s.figures(t, g, func(topic string) string { return "europe." + topic })
		for _, topic := range failoverTopicNames() {
			rows = append(rows, figureRow{group: g, topic: topic, kmirror: kmirrorFigures[g][topic], mm2: mm2[topic]})
		}
	}
	var sumK, sumM translationFigures
	for _, r := range rows {
		sumK.add(r.kmirror)
		sumM.add(r.mm2)
		t.Logf("%s %s: kmirror %s; MirrorMaker 2 %s", r.group, r.topic, r.kmirror, r.mm2)
		if r.kmirror.Skipped != 0 || r.kmirror.Reread != 0 || r.kmirror.Foreign != 0 {
			t.Errorf("group %s topic %s after kmirror failover: %s; want nothing skipped, re-read or foreign", r.group, r.topic, r.kmirror)
		}
	}
	t.Logf("group translation, every group and topic:\n%s", comparisonTable(rows))
	t.Logf("figures: kmirror %s; MirrorMaker 2 %s; run %s", sumK, sumM, time.Since(started).Round(time.Second))
	writeComparison(t, rows, "")
}

// checkTranslateAgrees holds `kmirror offsets translate --json` to what failover reported and
// committed: the same exact target offset for every partition, and that offset committed on us.
func (s *failoverScenario) checkTranslateAgrees(t *testing.T, groups []string, reports map[string]groupReport) {
	t.Helper()
	for _, g := range groups {
		committed := committedPositions(t, s.us, g)
		want := map[string]int64{}
		for _, p := range reports[g].Partitions {
			want[fmt.Sprintf("%s/%d", p.Topic, p.Partition)] = p.TargetOffset
		}
		tr := translate(t, s.cfg, g)
		if web := s.translateOverHTTP(t, g, ""); fmt.Sprint(web) != fmt.Sprint(tr) {
			t.Errorf("group %s: GET /offsets/translate says\n%+v\nkmirror offsets translate --json says\n%+v", g, web, tr)
		}
		var plain []reportPartition
		for _, p := range tr.Partitions {
			if p.Topic == "plain" {
				plain = append(plain, p)
			}
		}
		if web := s.translateOverHTTP(t, g, "plain"); fmt.Sprint(web.Partitions) != fmt.Sprint(plain) {
			t.Errorf("group %s: GET /offsets/translate?topic=plain says\n%+v\nwant translate's plain partitions\n%+v", g, web.Partitions, plain)
		}
		if len(tr.Partitions) != len(reports[g].Partitions) {
			t.Errorf("group %s: translate reports %d partitions, failover %d", g, len(tr.Partitions), len(reports[g].Partitions))
		}
		for _, p := range tr.Partitions {
			key := fmt.Sprintf("%s/%d", p.Topic, p.Partition)
			if p.Status != "exact" {
				t.Errorf("group %s %s: translate says %s (%s) after failover", g, key, p.Status, p.Reason)
				continue
			}
			if f, ok := want[key]; !ok || f != p.TargetOffset {
				t.Errorf("group %s %s: translate says target %d, failover reported %d (reported: %v)", g, key, p.TargetOffset, f, ok)
			}
			tt := p.TargetTopic
			if tt == "" {
				tt = p.Topic
			}
			if c, ok := committed[tt][p.Partition]; !ok || c != p.TargetOffset {
				t.Errorf("group %s %s: translate says target %d, us has %d committed (committed: %v)", g, key, p.TargetOffset, c, ok)
			}
		}
	}
}

func countPartitions(pos groupPositions) int {
	n := 0
	for _, ps := range pos {
		n += len(ps)
	}
	return n
}

// TestFailoverLeavesActiveAndAheadTargetGroups holds failover (and the daemon's sync, every 2 s)
// to what it must not do: commit for a group with a member on the target (the report says the
// group is active, its offsets stay), or move a target group that is ahead of the translation
// back (the report says "target ahead", its offsets stay) unless --force, which moves it to the
// exact translation.
func TestFailoverLeavesActiveAndAheadTargetGroups(t *testing.T) {
	const (
		active = "failover-active"
		ahead  = "failover-ahead"
	)
	europe := startCluster(t, "europe")
	us := startCluster(t, "us")
	europe.createTopic(t, "plain", 3, 1, nil)
	produced := startLoad(t, europe.bootstrap, "plain", 30_000, 0).wait(t)
	cfg := writeConfig(t, baseConfig(europe, us, "plain", failoverSettings("2s")))
	startKmirror(t, cfg)
	source := map[string]sourceIndex{"plain": indexSource(t, europe, "plain")}
	waitKmirrorCaughtUp(t, europe, source)

	// The target first: ahead at the end of each partition, active with a member (and offsets of
	// its own); then the groups on europe, halfway.
	ends := us.endOffsetsOf(t, "plain")
	commitOn(t, us, ahead, "plain", ends)
	commitOn(t, us, active, "plain", map[int32]int64{0: 100, 1: 100, 2: 100})
	joinGroup(t, us, active, "plain")
	for _, g := range []string{active, ahead} {
		consumeAndCommit(t, europe, g, source, map[string]int{"plain": produced / 2}, true)
	}
	time.Sleep(5 * time.Second) // two rounds of the daemon's sync, which must leave both alone too
	for g, want := range map[string]map[int32]int64{active: {0: 100, 1: 100, 2: 100}, ahead: ends} {
		if got := committedPositions(t, us, g)["plain"]; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("the daemon moved %s on us: %v, was %v", g, got, want)
		}
	}

	reports, code := failover(t, cfg, []string{active})
	r := reports[active]
	t.Logf("failover %s: exit %d, target state %s, active %v", active, code, r.TargetState, r.TargetActive)
	if code == 0 || !r.TargetActive || len(r.Partitions) != 3 {
		t.Errorf("failover of a group active on us: exit %d, target_active %v, %d partitions; want non-zero, true, 3", code, r.TargetActive, len(r.Partitions))
	}
	for _, p := range r.Partitions {
		if p.Action != "group active on target" || p.TargetCommitted != 100 {
			t.Errorf("%s %s/%d: action %q, target committed %d; want \"group active on target\", 100", active, p.Topic, p.Partition, p.Action, p.TargetCommitted)
		}
	}
	if got := committedPositions(t, us, active)["plain"]; fmt.Sprint(got) != fmt.Sprint(map[int32]int64{0: 100, 1: 100, 2: 100}) {
		t.Errorf("failover moved the active group %s on us: %v", active, got)
	}

	reports, code = failover(t, cfg, []string{ahead})
	r = reports[ahead]
	t.Logf("failover %s: exit %d, target state %s", ahead, code, r.TargetState)
	if code == 0 || len(r.Partitions) != 3 {
		t.Errorf("failover of a group ahead on us: exit %d, %d partitions; want non-zero, 3", code, len(r.Partitions))
	}
	for _, p := range r.Partitions {
		if p.Action != "target ahead" || p.TargetCommitted != ends[p.Partition] || p.Status != "exact" || p.TargetOffset >= ends[p.Partition] {
			t.Errorf("%s %s/%d: %s, target %d, action %q, target committed %d; want exact below %d, \"target ahead\", %d",
				ahead, p.Topic, p.Partition, p.Status, p.TargetOffset, p.Action, p.TargetCommitted, ends[p.Partition], ends[p.Partition])
		}
	}
	if got := committedPositions(t, us, ahead)["plain"]; fmt.Sprint(got) != fmt.Sprint(ends) {
		t.Errorf("failover moved %s on us back without --force: %v, was %v", ahead, got, ends)
	}

	reports, code = failover(t, cfg, []string{ahead}, "--force")
	r = reports[ahead]
	if code != 0 {
		t.Errorf("failover --force of %s: exit %d, want 0", ahead, code)
	}
	committed := committedPositions(t, us, ahead)["plain"]
	for _, p := range r.Partitions {
		if p.Action != "committed" || committed[p.Partition] != p.TargetOffset {
			t.Errorf("%s %s/%d after --force: action %q, us has %d committed; want \"committed\", %d", ahead, p.Topic, p.Partition, p.Action, committed[p.Partition], p.TargetOffset)
		}
	}
	f := countTranslation(source["plain"], committedPositions(t, europe, ahead)["plain"], readAsGroup(t, us, ahead, []string{"plain"})["plain"])
	t.Logf("figures: %s read on us after failover --force: %s", ahead, f)
	if f.Skipped != 0 || f.Reread != 0 || f.Foreign != 0 {
		t.Errorf("%s after failover --force: %s; want nothing skipped, re-read or foreign", ahead, f)
	}
}

// TestScaleOutTranslationStaysExact runs two kmirror members in one group, each writing the map
// of its own partitions and syncing its own partitions of the groups, kills one with SIGKILL under
// load and lets the other take its partitions over; once caught up, a group's translation is
// still exact: the daemon has synced it (failover finds it there) and the group reads on us
// with nothing skipped and nothing re-read.
func TestScaleOutTranslationStaysExact(t *testing.T) {
	const group = "failover-scale"
	europe := startCluster(t, "europe")
	us := startCluster(t, "us")
	europe.createTopic(t, "plain", 6, 1, nil)
	cfg := writeConfig(t, baseConfig(europe, us, "plain", failoverSettings("2s")))
	startKmirror(t, cfg)
	b := startKmirror(t, cfg)
	waitForMembers(t, europe, 2)
	load := startLoad(t, europe.bootstrap, "plain", 90_000, 15_000)
	waitFor(t, "both members to copy", 2*time.Minute, func() bool { return us.count(t, "plain") >= 30_000 })
	b.kill()
	// The group's position, per partition, lies halfway between what kmirror had committed and
	// what it had copied: where the survivor copies records again, the translation must point
	// past the first copies, at the last.
	kmirrorAt := committedPositions(t, europe, "kmirror")["plain"]
	copied := us.endOffsetsOf(t, "plain")
	t.Logf("killed one of two members -9 with %d records on the target, %d produced; kmirror had committed %v, copied %v",
		us.count(t, "plain"), load.count(), kmirrorAt, copied)
	position := map[int32]int64{}
	for p, end := range copied {
		position[p] = (kmirrorAt[p] + end) / 2
	}
	load.wait(t)
	waitForMembers(t, europe, 1)
	source := map[string]sourceIndex{"plain": indexSource(t, europe, "plain")}
	waitKmirrorCaughtUp(t, europe, source)
	commitOn(t, europe, group, "plain", position)
	waitFor(t, "the daemon to sync "+group+" onto us", time.Minute, func() bool {
		return len(committedPositions(t, us, group)["plain"]) == 6
	})

	reports, code := failover(t, cfg, []string{group})
	for _, p := range reports[group].Partitions {
		t.Logf("failover %s %s/%d: source %d -> target %d, %s, %s", group, p.Topic, p.Partition, p.SourceOffset, p.TargetOffset, p.Status, p.Action)
		if p.Status != "exact" || (p.Action != "unchanged" && p.Action != "committed") {
			t.Errorf("%s %s/%d: %s (%s), action %q; want exact, unchanged (the daemon synced it)", group, p.Topic, p.Partition, p.Status, p.Reason, p.Action)
		}
	}
	if code != 0 || len(reports[group].Partitions) != 6 {
		t.Errorf("failover of %s: exit %d, %d partitions; want 0, 6", group, code, len(reports[group].Partitions))
	}
	f := countTranslation(source["plain"], position, readAsGroup(t, us, group, []string{"plain"})["plain"])
	t.Logf("figures: %s read on us after a member was killed: %s", group, f)
	if f.Skipped != 0 || f.Reread != 0 || f.Foreign != 0 {
		t.Errorf("%s on us: %s; want nothing skipped, re-read or foreign", group, f)
	}
}
