//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kmirror/kmirror/pkg/verify"
)

// The exactly-once fault tests break the clusters around a transactional kmirror the ways the
// at-least-once fault tests do — a target leader killed -9, the link between the sites cut, a
// target whose authorizer refuses what exactly_once needs — with kmirror's default settings
// apart from delivery.mode exactly_once, and hold it to its promise: a read_committed consumer
// of the target sees every source record exactly once, in source order. A failed transaction
// may stop kmirror with status 1 (by design: it resumes from the positions on the target); the
// tests then start it again, as systemd would, and count those exits in the figures.

// TestExactlyOnceTargetBrokerKilled kills (-9) the target broker leading most of the mirrored
// partitions (a 3-node target: the topic kmirror creates, the transaction state and the offsets
// topics have 3 replicas) under load, brings it back 20 s later and lets the load run 15 s more.
// Transactions whose partitions or coordinator were on the lost broker may fail: kmirror may
// exit 1 and is restarted. Read_committed, every source record is on the target once, in order.
func TestExactlyOnceTargetBrokerKilled(t *testing.T) {
	europe := startCluster(t, "europe")
	us := startCluster(t, "us", "--nodes", "3")
	r := startFaultRun(t, europe, us, "eostleader", 6, 1, nil, endless, 4_000, 10_000, eosSettings)
	exits := 0
	keep := func() {
		var again bool
		if r.k, again = restartIfFailed(t, r.k, r.cfg, "kmirror"); again {
			exits++
		}
	}
	keepFor := func(d time.Duration) {
		for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			keep()
		}
	}
	keepFor(5 * time.Second) // a few transactions committed with every broker up

	node, led := us.busiestLeader(t, r.topic)
	before := us.count(t, r.topic)
	us.script(t, "stop-node", "us", fmt.Sprint(node))
	t.Logf("killed target node %d -9 (leader of %d of 6 partitions) with target log end %d, %d produced",
		node, led, before, r.load.count())
	keepFor(20 * time.Second)
	us.script(t, "start-node", "us", fmt.Sprint(node))
	t.Logf("restarted target node %d after 20s: target log end %d, %d produced, %d kmirror exits with status 1 so far",
		node, us.count(t, r.topic), r.load.count(), exits)
	back := time.Now()
	keepFor(15 * time.Second)
	produced := r.stopLoad()
	took := waitCommitted(t, r, 3*time.Minute, keep)
	sinceBack := time.Since(back)
	r.k.stop()
	checkExactlyOnce(t, r, fmt.Sprintf("produced %d, target node %d (leader of %d of 6) killed -9 for 20s, %d exits with status 1, caught up %s after the load (%s after the node came back)",
		produced, node, led, exits, took.Round(100*time.Millisecond), sinceBack.Round(100*time.Millisecond)))
}

// TestExactlyOnceSiteCut is TestSiteCut in exactly_once: each cluster in its own network
// namespace (a site), kmirror at the target site, the link between them cut for 30 s while the
// source site keeps taking records (batches every 5 s through the cut, one more after it).
// kmirror must recover by itself (an exit with status 1 is restarted, and counted) and catch
// up; read_committed, every source record is on the target once, in order.
func TestExactlyOnceSiteCut(t *testing.T) {
	const topic = "eossitecut"
	inEurope, inUS, europe, us := startSites(t)
	siteHelper(t, nsEurope, "create", europe.bootstrap[0], "", topic)

	next := 0
	produce := func(n int) {
		t.Helper()
		var lines []string
		for i := next; i < next+n; i++ {
			lines = append(lines, fmt.Sprintf("k%d\tv%d-%s", i, i, strings.Repeat("s", 100)))
		}
		next += n
		for p := 0; p < 4; p++ {
			var part []string
			for i, l := range lines {
				if i%4 == p {
					part = append(part, l)
				}
			}
			cmd := exec.Command(inEurope[0], append(inEurope[1:], "kcat", "-P", "-b", europe.bootstrap[0], "-t", topic,
				"-p", strconv.Itoa(p), "-K", "\t", "-z", "lz4")...)
			cmd.Stdin = strings.NewReader(strings.Join(part, "\n") + "\n")
			if out, err := combinedOwned(t, cmd); err != nil {
				t.Fatalf("kcat in %s: %v\n%s", nsEurope, err, out)
			}
		}
	}
	produce(40_000)

	cfg := writeConfig(t, baseConfig(europe, us, topic, eosSettings))
	k := startKmirror(t, cfg, inUS...)
	exits := 0
	keep := func() {
		t.Helper()
		gone, how := k.exited()
		if !gone {
			return
		}
		if k.cmd.ProcessState.ExitCode() != 1 {
			t.Fatalf("kmirror: %s, not the status 1 of a failed transaction\n%s", how, k.errors())
		}
		t.Logf("restarted kmirror after it stopped by itself (%s): %s", how, k.errors())
		exits++
		k = startKmirror(t, cfg, inUS...)
	}
	behind := func() string {
		keep()
		return siteEOS(t, "positions", europe.bootstrap[0], us.bootstrap[0], topic)
	}
	waitFor(t, "the first 40000 records committed on the target", 2*time.Minute, func() bool { return behind() == "caught up" })

	mustRun(t, "ip", "netns", "exec", nsEurope, "ip", "link", "set", "kmeu0", "down")
	cut := time.Now()
	t.Logf("site cut: link down with target log end %s (40000 records, all committed)",
		siteHelper(t, nsUS, "count", us.bootstrap[0], "", topic))
	for i := 0; i < 6; i++ { // the source site keeps working during the cut
		produce(4_000)
		keep()
		time.Sleep(time.Until(cut.Add(time.Duration(i+1) * 5 * time.Second)))
	}
	time.Sleep(time.Until(cut.Add(30 * time.Second)))
	keep()
	mustRun(t, "ip", "netns", "exec", nsEurope, "ip", "link", "set", "kmeu0", "up")
	back := time.Now()
	t.Logf("site cut: link restored after %s; target log end %s, %d kmirror exits with status 1 so far",
		time.Since(cut).Round(100*time.Millisecond), siteHelper(t, nsUS, "count", us.bootstrap[0], "", topic), exits)
	produce(10_000) // and after it, while kmirror recovers
	var last string
	deadline := time.Now().Add(4 * time.Minute)
	for last = behind(); last != "caught up"; last = behind() {
		if time.Now().After(deadline) {
			t.Fatalf("site cut: the positions on the target did not reach the source's end within 4m of the link's return:\n%s", last)
		}
		time.Sleep(time.Second)
	}
	took := time.Since(back)
	t.Logf("site cut: positions caught up %s after the link came back", took.Round(time.Second))
	k.stop()
	res := siteEOS(t, "exact", europe.bootstrap[0], us.bootstrap[0], topic)
	committed, uncommitted, _ := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(res, "exact: "), "NOT EXACT: "), "; read_uncommitted:")
	t.Logf("figures: %s, produced %d, link cut 30s, %d exits with status 1, caught up %s after the link came back; read_uncommitted:%s",
		committed, next, exits, took.Round(100*time.Millisecond), uncommitted)
	if !strings.HasPrefix(res, "exact: ") {
		t.Fatalf("site cut: the target read_committed does not hold every source record exactly once, in order: %s", res)
	}
}

// siteEOS runs TestExactlyOnceSiteHelper inside the target site's namespace (which reaches both
// clusters) and returns its RESULT line.
func siteEOS(t *testing.T, action, src, dst, topic string) string {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", nsUS, os.Args[0], "-test.run=^TestExactlyOnceSiteHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), "E2E_EOS_SITE_ACTION="+action, "E2E_SITE_SRC="+src, "E2E_SITE_DST="+dst, "E2E_SITE_TOPIC="+topic)
	out, err := combinedOwned(t, cmd)
	if err != nil {
		t.Fatalf("exactly-once site helper %s in %s: %v\n%s", action, nsUS, err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "RESULT ") {
			return strings.TrimPrefix(l, "RESULT ")
		}
	}
	t.Fatalf("exactly-once site helper %s printed no result:\n%s", action, out)
	return ""
}

// TestExactlyOnceSiteHelper is not a test of its own: TestExactlyOnceSiteCut starts it inside
// the target site's namespace. "positions" prints "caught up" when the positions kmirror
// committed on the target reach the source's end in every partition, else what is behind;
// "exact" waits for no open transaction and compares both clusters read_committed (and
// read_uncommitted, to count the aborted copies), printing "exact: <figures>" or
// "NOT EXACT: <figures>; <report>".
func TestExactlyOnceSiteHelper(t *testing.T) {
	action := os.Getenv("E2E_EOS_SITE_ACTION")
	if action == "" {
		t.Skip("helper for TestExactlyOnceSiteCut, run inside a network namespace")
	}
	src, dst, topic := os.Getenv("E2E_SITE_SRC"), os.Getenv("E2E_SITE_DST"), os.Getenv("E2E_SITE_TOPIC")
	europe, us := &cluster{name: "europe", bootstrap: []string{src}}, &cluster{name: "us", bootstrap: []string{dst}}
	switch action {
	case "positions":
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ends, errEnds := europe.admin(t).ListEndOffsets(ctx, topic)
		pos, errPos := us.admin(t).FetchOffsets(ctx, positionsGroup)
		if err := errors.Join(errEnds, errPos, ends.Error()); err != nil {
			fmt.Println("RESULT", strings.ReplaceAll(err.Error(), "\n", "; "))
			return
		}
		var behind []string
		ends.Each(func(o kadm.ListedOffset) {
			if c, ok := pos.Lookup(topic, o.Partition); !ok || c.Err != nil || c.At != o.Offset {
				behind = append(behind, fmt.Sprintf("partition %d: position %d, source end %d", o.Partition, c.At, o.Offset))
			}
		})
		if len(behind) == 0 {
			fmt.Println("RESULT caught up")
		} else {
			fmt.Println("RESULT", strings.Join(behind, "; "))
		}
	case "exact":
		waitNoOpenTransaction(t, us, topic)
		topics := map[string]string{topic: topic}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		rep, err := verify.Compare(ctx, europe.bootstrap, us.bootstrap, topics)
		if err != nil {
			t.Fatal(err)
		}
		seen, err := verify.CompareWith(ctx, europe.bootstrap, us.bootstrap, topics,
			verify.Options{TargetOpts: []kgo.Opt{kgo.FetchIsolationLevel(kgo.ReadUncommitted())}})
		if err != nil {
			t.Fatal(err)
		}
		s, u := rep.Sum(), seen.Sum()
		figures := fmt.Sprintf("source %d, target %d, lost %d, duplicates %d, changed %d, out of order %d, bad re-runs %d; read_uncommitted: target %d, duplicates %d (aborted copies), lost %d",
			s.Source, s.Target, s.Lost, s.Duplicates, s.Foreign, s.Reordered, s.BadReruns, u.Target, u.Duplicates, u.Lost)
		if rep.Exact() {
			fmt.Println("RESULT exact:", figures)
		} else {
			fmt.Println("RESULT NOT EXACT:", figures+";", strings.ReplaceAll(rep.String(), "\n", ";"))
		}
	}
}

// aclUser is kmirror's SCRAM user on the authorizing target, and the principal its ACLs name.
const aclUser = "User:kmirror"

// authorizingUS starts the us cluster with a SASL_SSL listener (SCRAM-SHA-512, a certificate made
// by the test, the SCRAM user kmirror) and KRaft's StandardAuthorizer refusing whatever no ACL
// allows. The PLAINTEXT and CONTROLLER listeners authenticate nobody (User:ANONYMOUS), who is the
// super user: the brokers and controllers talk to each other there, and the test administers the
// cluster (ACLs) and reads it there. It returns the cluster (PLAINTEXT bootstrap) and the
// SASL_SSL listener's address.
func authorizingUS(t *testing.T, serverPEM string) (*cluster, string) {
	t.Helper()
	return secureUS(t, serverPEM, `authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:ANONYMOUS
allow.everyone.if.no.acl.found=false
`)
}

// grant creates ACLs allowing aclUser ops on the resources b names (pattern literal unless b
// sets one), failing the test on any error.
func grant(t *testing.T, adm *kadm.Client, what string, b *kadm.ACLBuilder, ops ...kadm.ACLOperation) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := adm.CreateACLs(ctx, b.Allow(aclUser).AllowHosts().Operations(ops...))
	if err == nil {
		for _, r := range res {
			if r.Err != nil {
				err = fmt.Errorf("%v %s %s: %w (%s)", r.Type, r.Name, r.Operation, r.Err, r.ErrMessage)
				break
			}
		}
	}
	if err != nil {
		t.Fatalf("grant %s: %v", what, err)
	}
	t.Logf("granted %s %v on %s", aclUser, ops, what)
}

// validate runs kmirror validate --connect on cfg and returns its exit status and output.
func validate(t *testing.T, cfg string) (int, string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(repoRoot(t), "bin", "kmirror"), "validate", "--connect", "--config", cfg, "--timeout", "45s")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &exit):
		return exit.ExitCode(), string(out)
	default:
		t.Fatalf("kmirror validate: %v\n%s", err, out)
		return 0, ""
	}
}

// verdictLines returns the lines of validate's output about the named check (its verdict and
// its fix).
func verdictLines(out, check string) string {
	var keep []string
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "target  "+check) {
			keep = append(keep, strings.TrimSpace(l))
			if i+1 < len(lines) && strings.Contains(lines[i+1], "fix: ") {
				keep = append(keep, strings.TrimSpace(lines[i+1]))
			}
		}
	}
	return strings.Join(keep, "\n")
}

// TestExactlyOnceNeedsTransactionalACLs mirrors into a target whose authorizer allows only what
// the ACLs say, over SASL_SSL with SCRAM-SHA-512 (the source stays open). kmirror's user first
// has what at-least-once delivery needs on the target — Describe, Create and IdempotentWrite on
// the cluster; Create, Describe, DescribeConfigs, Alter and Write on the mirrored topic; Create,
// Describe, DescribeConfigs, Read and Write on the offset-map topic — and validate --connect
// passes in at_least_once. In exactly_once it must fail (exit 1) on "transactional write", with a
// fix naming the transactional-id prefix. With the ACLs that fix names (Write and Describe on
// transactional ids with the prefix, a PREFIXED ACL) and Read and Describe on the positions
// group (and Read on the mirrored topic, which TxnOffsetCommit needs), validate passes, and a
// short exactly-once run over that listener copies 5000 records exactly once, read_committed.
func TestExactlyOnceNeedsTransactionalACLs(t *testing.T) {
	const topic, prefix = "eosacl", "kmirror-europe" // the prefix: <consumer.group_id>-<source.alias>, the default
	dir := t.TempDir()
	caFile, serverPEM := testCA(t, dir, false)
	europe := startCluster(t, "europe")
	us, secureAddr := authorizingUS(t, serverPEM)
	pw := filepath.Join(dir, "password")
	if err := os.WriteFile(pw, []byte(scramPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	europe.createTopic(t, topic, 4, 1, nil)
	kcatProduce(t, europe.bootstrap, topic, 0, []string{"a\t1"}, "-K", "\t") // something to describe and read

	secure := &cluster{name: "us", bootstrap: []string{secureAddr}}
	config := func(extra string) string {
		body := baseConfig(europe, secure, topic, extra)
		withAuth := strings.Replace(body, "target:\n  alias: us\n", fmt.Sprintf(
			"target:\n  alias: us\n  tls: {enabled: true, ca_file: %s}\n  sasl: {mechanism: SCRAM-SHA-512, username: kmirror, password_file: %s}\n",
			caFile, pw), 1)
		if withAuth == body {
			t.Fatal("baseConfig's target section changed: cannot add tls and sasl to it")
		}
		return writeConfig(t, withAuth)
	}
	atLeastOnce, exactlyOnce := config(""), config(eosSettings)

	adm := us.admin(t)
	grant(t, adm, "the cluster", kadm.NewACLs().Clusters(), kadm.OpDescribe, kadm.OpCreate, kadm.OpIdempotentWrite)
	grant(t, adm, "topic "+topic, kadm.NewACLs().Topics(topic),
		kadm.OpCreate, kadm.OpDescribe, kadm.OpDescribeConfigs, kadm.OpAlter, kadm.OpWrite)
	// The flow's heartbeat topic is mirrored too (heartbeats are on by default).
	grant(t, adm, "topics prefixed kmirror.heartbeats.", kadm.NewACLs().Topics("kmirror.heartbeats.").ResourcePatternType(kadm.ACLPatternPrefixed),
		kadm.OpCreate, kadm.OpDescribe, kadm.OpDescribeConfigs, kadm.OpAlter, kadm.OpAlterConfigs, kadm.OpWrite, kadm.OpRead)
	offsetMap := "__kmirror.offset-map.europe"
	grant(t, adm, "topic "+offsetMap, kadm.NewACLs().Topics(offsetMap),
		kadm.OpCreate, kadm.OpDescribe, kadm.OpDescribeConfigs, kadm.OpRead, kadm.OpWrite)

	// ACLs reach the broker through the metadata log, a moment after CreateACLs returns.
	code, out := validate(t, atLeastOnce)
	for try := 0; code != 0 && try < 5; try++ {
		time.Sleep(2 * time.Second)
		code, out = validate(t, atLeastOnce)
	}
	if code != 0 {
		t.Fatalf("validate --connect in at_least_once with the at-least-once ACLs: status %d\n%s", code, out)
	}
	t.Logf("validate --connect, at_least_once, at-least-once ACLs: status 0")

	code, out = validate(t, exactlyOnce)
	txn := verdictLines(out, "transactional write")
	t.Logf("validate --connect, exactly_once, at-least-once ACLs: status %d\n%s\n%s", code, txn, verdictLines(out, "positions group"))
	if code != 1 || !strings.Contains(txn, "FAILED") || !strings.Contains(txn, fmt.Sprintf("prefix %q", prefix)) ||
		!strings.Contains(out, "verdict: FAILED") {
		t.Fatalf("validate --connect in exactly_once without transactional-id ACLs: want status 1 with \"transactional write\" FAILED and a fix naming the prefix %q; got status %d\n%s",
			prefix, code, out)
	}

	grant(t, adm, "transactional ids prefixed "+prefix,
		kadm.NewACLs().TransactionalIDs(prefix).ResourcePatternType(kadm.ACLPatternPrefixed), kadm.OpWrite, kadm.OpDescribe)
	grant(t, adm, "group "+positionsGroup, kadm.NewACLs().Groups(positionsGroup), kadm.OpRead, kadm.OpDescribe)
	// TxnOffsetCommit also needs Read on every topic whose positions it commits: the positions
	// are stored under the target topic's name. Without it every transaction of the run fails
	// ("not authorized to access this topic"), so validate must say so: with the target topic
	// there (created by the super user), "read target topics (positions)" fails until Read is
	// granted.
	us.createTopic(t, topic, 4, 1, nil)
	code, out = validate(t, exactlyOnce)
	for try := 0; !strings.Contains(verdictLines(out, "transactional write"), " ok ") && try < 5; try++ {
		time.Sleep(2 * time.Second) // the transactional ACLs reach the broker a moment later
		code, out = validate(t, exactlyOnce)
	}
	read := verdictLines(out, "read target topics")
	t.Logf("validate --connect, exactly_once, without Read on the target topic: status %d\n%s", code, read)
	if code != 1 || !strings.Contains(read, "FAILED") || !strings.Contains(read, "grant Read on the target topics") {
		t.Fatalf("validate --connect in exactly_once without Read on the target topic: want status 1 with \"read target topics\" FAILED "+
			"and the fix; got status %d\n%s", code, out)
	}
	grant(t, adm, "topic "+topic+" (positions committed under its name)", kadm.NewACLs().Topics(topic), kadm.OpRead)
	code, out = validate(t, exactlyOnce)
	for try := 0; code != 0 && try < 5; try++ {
		time.Sleep(2 * time.Second)
		code, out = validate(t, exactlyOnce)
	}
	if code != 0 {
		t.Fatalf("validate --connect in exactly_once with the transactional ACLs: status %d\n%s", code, out)
	}
	t.Logf("validate --connect, exactly_once, with the transactional ACLs: status 0\n%s\n%s",
		verdictLines(out, "transactional write"), verdictLines(out, "positions group"))

	// A short exactly-once run over the SASL_SSL listener; the test reads the target over
	// PLAINTEXT (the super user), read_committed.
	r := &faultRun{t: t, topic: topic, europe: europe, us: us, cfg: exactlyOnce}
	r.load = startLoad(t, europe.bootstrap, topic, 5_000-1, 1_000) // with the record above: 5000
	r.load.stopAtCleanup(t)
	r.k = startKmirror(t, exactlyOnce)
	running := map[string]*kmirror{"kmirror": r.k}
	produced := r.load.wait(t) + 1
	took := waitCommitted(t, r, 2*time.Minute, func() { requireRunning(t, "over the authorizing target", running) })
	r.k.stop()
	refused := strings.Count(r.k.log(), "AUTHORIZATION_FAILED") + strings.Count(r.k.log(), "not authorized")
	checkExactlyOnce(t, r, fmt.Sprintf("produced %d, mirrored over SASL_SSL/SCRAM-SHA-512 with StandardAuthorizer ACLs, caught up %s after the load, %d authorization errors in kmirror's log",
		produced, took.Round(100*time.Millisecond), refused))
	if refused > 0 {
		t.Errorf("kmirror's log holds %d authorization errors with every ACL validate asks for granted:\n%s", refused, r.k.errors())
	}
}
