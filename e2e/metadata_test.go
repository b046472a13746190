//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// topicsPlan runs `kmirror topics plan` and returns what it printed.
func topicsPlan(t *testing.T, cfgPath string) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(repoRoot(t), "bin", "kmirror"), "topics", "plan", "--config", cfgPath).CombinedOutput()
	if err != nil {
		t.Fatalf("kmirror topics plan: %v\n%s", err, out)
	}
	return string(out)
}

// TestSourceConfigChangesReachTheTarget: a target topic an operator created with another
// retention and a setting of its own is shown by `topics plan` with the difference, unchanged;
// kmirror then sets the source's retention (one diff line), keeps the target's own setting, and
// a later retention change on the source reaches the target within a refresh interval; records
// are mirrored throughout.
func TestSourceConfigChangesReachTheTarget(t *testing.T) {
	europe := startCluster(t, "europe")
	us := startCluster(t, "us")
	day, week, halfDay, hourSegments := "86400000", "604800000", "43200000", "3600000"
	europe.createTopic(t, "living", 2, 1, map[string]*string{"retention.ms": &day})
	us.createTopic(t, "living", 2, 1, map[string]*string{"retention.ms": &week, "segment.ms": &hourSegments})
	kcatProduce(t, europe.bootstrap, "living", 0, []string{"a", "b", "c"})
	kcatProduce(t, europe.bootstrap, "living", 1, []string{"d", "e"})
	cfg := writeConfig(t, baseConfig(europe, us, "living", ""))

	plan := topicsPlan(t, cfg)
	if !strings.Contains(plan, "living:\n  configs (target → source):\n    retention.ms: "+week+" → "+day+"\n") {
		t.Fatalf("topics plan does not show the retention difference:\n%s", plan)
	}
	if got := us.topicConfig(t, "living", "retention.ms"); got != week {
		t.Fatalf("topics plan changed the target's retention.ms to %s", got)
	}

	k := startKmirror(t, cfg)
	waitFor(t, "the source's retention.ms on the target", 30*time.Second, func() bool { return us.topicConfig(t, "living", "retention.ms") == day })
	if !strings.Contains(k.log(), `"changes":["retention.ms: `+week+` → `+day+`"]`) {
		t.Fatalf("no diff line for the first sync in the log:\n%s", k.tail(20))
	}
	if got := us.topicConfig(t, "living", "segment.ms"); got != hourSegments {
		t.Fatalf("the target's own segment.ms became %q", got)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	changed := time.Now()
	resp, err := europe.admin(t).AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "retention.ms", Value: &halfDay}}, "living")
	if err == nil {
		err = resp[0].Err
	}
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the changed retention.ms on the target", 30*time.Second, func() bool { return us.topicConfig(t, "living", "retention.ms") == halfDay })
	took := time.Since(changed)
	if took > 2*time.Second+5*time.Second { // refresh_interval 2s, and the polling above
		t.Fatalf("the change took %s to reach the target, more than a refresh interval", took)
	}
	if !strings.Contains(k.log(), `"changes":["retention.ms: `+day+` → `+halfDay+`"]`) {
		t.Fatalf("no diff line for the change in the log:\n%s", k.tail(20))
	}
	lines := strings.Count(k.log(), "synced target topic configs from the source")

	kcatProduce(t, europe.bootstrap, "living", 0, []string{"f", "g"})
	waitFor(t, "the records mirrored", 30*time.Second, func() bool { return us.count(t, "living") == 7 })
	if plan = topicsPlan(t, cfg); !strings.Contains(plan, "living: in sync\n") {
		t.Fatalf("after the sync the plan is not in sync:\n%s", plan)
	}
	k.stop()
	rep := compareReport(t, europe, us, map[string]string{"living": "living"})
	if !rep.Exact() {
		t.Fatalf("records: %s", rep)
	}
	logFigures(t, rep, fmt.Sprintf("retention.ms change reached the target in %s (refresh_interval 2s); %d diff lines", took.Round(100*time.Millisecond), lines))
}

// authorizedProps turns on the StandardAuthorizer with the plain listener's anonymous principal
// (kmirror, the test's admin) as the super user; withSCRAM adds a SASL_PLAINTEXT listener with
// SCRAM-SHA-512 for the users the ACLs are about.
func authorizedProps(t *testing.T, withSCRAM bool) string {
	t.Helper()
	props := "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer\nsuper.users=User:ANONYMOUS\n"
	if withSCRAM {
		props += `listeners=PLAINTEXT://@ADDR@:@PLAIN_PORT@,CONTROLLER://@ADDR@:@CONTROLLER_PORT@,SECURE://@ADDR@:@SECURE_PORT@
advertised.listeners=PLAINTEXT://@ADDR@:@PLAIN_PORT@,SECURE://@ADDR@:@SECURE_PORT@
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SECURE:SASL_PLAINTEXT
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.secure.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
`
	}
	p := filepath.Join(t.TempDir(), "authorizer.properties")
	if err := os.WriteFile(p, []byte(props), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestReadACLsReachTheTarget: on KRaft brokers with the StandardAuthorizer, a user's READ, ALL
// and WRITE ACLs on a source topic (and another user's DESCRIBE) are shown by `topics plan` and
// become, on the target topic renamed by the prefix policy, one READ (READ and ALL→READ,
// deduplicated) and the DESCRIBE, never WRITE or ALL; the user, over SCRAM, then reads the
// mirrored records on the target and is refused a write.
func TestReadACLsReachTheTarget(t *testing.T) {
	europe := startCluster(t, "europe", "--extra-config", authorizedProps(t, false))
	us := startCluster(t, "us", "--extra-config", authorizedProps(t, true), "--scram", "SCRAM-SHA-512=[name=alice,password="+scramPassword+"]")
	host, port, _ := net.SplitHostPort(us.bootstrap[0])
	p, _ := strconv.Atoi(port)
	secureAddr := net.JoinHostPort(host, strconv.Itoa(p+2))

	europe.createTopic(t, "guarded", 1, 1, nil)
	kcatProduce(t, europe.bootstrap, "guarded", 0, []string{"r1", "r2", "r3", "r4"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b := kadm.NewACLs().Allow("User:alice").AllowHosts("*").Topics("guarded").ResourcePatternType(kadm.ACLPatternLiteral).
		Operations(kadm.OpRead, kadm.OpAll, kadm.OpWrite)
	d := kadm.NewACLs().Allow("User:bob").AllowHosts("*").Topics("guarded").ResourcePatternType(kadm.ACLPatternLiteral).
		Operations(kadm.OpDescribe)
	for _, acls := range []*kadm.ACLBuilder{b, d} {
		res, err := europe.admin(t).CreateACLs(ctx, acls)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			if r.Err != nil {
				t.Fatalf("create source ACL: %v", r.Err)
			}
		}
	}
	prefixed := strings.Replace(baseConfig(europe, us, "guarded", ""), "  refresh_interval: 2s\n",
		"  refresh_interval: 2s\n  replication_policy: prefix\n", 1)
	withoutACLs := writeConfig(t, prefixed)
	cfg := writeConfig(t, strings.Replace(prefixed, "  replication_policy: prefix\n", "  replication_policy: prefix\n  sync_acls: true\n", 1))
	targetACLs := func() []string {
		desc, err := us.admin(t).DescribeACLs(ctx, kadm.NewACLs().Topics("europe.guarded").ResourcePatternType(kadm.ACLPatternAny).
			Operations(kadm.OpAny).Allow().AllowHosts().Deny().DenyHosts())
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range desc {
			if r.Err != nil {
				t.Fatal(r.Err)
			}
			for _, a := range r.Described {
				out = append(out, fmt.Sprintf("%s %s %s %s", a.Principal, a.Operation, a.Permission, a.Pattern))
			}
		}
		slices.Sort(out)
		return out
	}

	// Mirrored without ACL sync first: the target topic exists, with no ACL.
	k := startKmirror(t, withoutACLs)
	waitFor(t, "the records mirrored", 60*time.Second, func() bool { return us.count(t, "europe.guarded") == 4 })
	k.stop()
	if got := targetACLs(); len(got) != 0 {
		t.Fatalf("ACLs on the target without topics.sync_acls: %v", got)
	}
	plan := topicsPlan(t, cfg)
	if !strings.Contains(plan, "guarded → europe.guarded:\n  add ACLs:\n    User:alice from *: ALLOW READ (source ALL, READ)\n"+
		"    User:bob from *: ALLOW DESCRIBE (source DESCRIBE)\n") {
		t.Fatalf("topics plan does not show the ACLs to add:\n%s", plan)
	}
	if got := targetACLs(); len(got) != 0 {
		t.Fatalf("topics plan created ACLs: %v", got)
	}

	k = startKmirror(t, cfg)
	want := []string{"User:alice READ ALLOW LITERAL", "User:bob DESCRIBE ALLOW LITERAL"}
	waitFor(t, "the ACLs on the target", 30*time.Second, func() bool { return len(targetACLs()) >= 2 })
	time.Sleep(3 * time.Second) // another refresh: nothing more may come
	k.stop()
	got := targetACLs()
	if !slices.Equal(got, want) {
		t.Fatalf("target ACLs %v, want %v", got, want)
	}
	if !strings.Contains(k.log(), "synced target topic ACLs from the source") ||
		!strings.Contains(k.log(), "User:alice from *: ALLOW READ (source ALL, READ)") {
		t.Fatalf("no ACL diff line in the log:\n%s", k.tail(20))
	}
	if plan = topicsPlan(t, cfg); !strings.Contains(plan, "europe.guarded: in sync\n") {
		t.Fatalf("after the sync the plan is not in sync:\n%s", plan)
	}

	alice := func(opts ...kgo.Opt) *kgo.Client {
		cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(secureAddr),
			kgo.SASL(scram.Auth{User: "alice", Pass: scramPassword}.AsSha512Mechanism())}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		return cl
	}
	reader := alice(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"europe.guarded": {0: kgo.NewOffset().AtStart()}}))
	read := 0
	for read < 4 && ctx.Err() == nil {
		fs := reader.PollFetches(ctx)
		for _, e := range fs.Errors() {
			t.Fatalf("alice reading the target topic: %v", e.Err)
		}
		read += fs.NumRecords()
	}
	if read != 4 {
		t.Fatalf("alice read %d of 4 records on the target", read)
	}
	// Without idempotence: an idempotent producer would be refused earlier, on the cluster.
	werr := alice(kgo.DisableIdempotentWrite(), kgo.RecordRetries(1)).ProduceSync(ctx, &kgo.Record{Topic: "europe.guarded", Value: []byte("x")}).FirstErr()
	if werr == nil || !strings.Contains(werr.Error(), kerr.TopicAuthorizationFailed.Message) {
		t.Fatalf("alice writing to the target topic: %v, want TOPIC_AUTHORIZATION_FAILED", werr)
	}
	t.Logf("figures: source ACLs alice READ+ALL+WRITE, bob DESCRIBE → target %v; alice read %d of 4 records over SCRAM, her write refused (%v)", got, read, kerr.TopicAuthorizationFailed.Message)
}
