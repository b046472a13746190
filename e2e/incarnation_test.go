//go:build e2e

package e2e

import (
	"context"
	"encoding/base64"
	"regexp"
	"testing"
	"time"

	"github.com/kmirror/kmirror/pkg/verify"
)

// TestNewIncarnationWhileRunningIsMirroredOnceInOrder deletes a mirrored source topic while
// kmirror runs and creates it again under the same name with the same partition count and more
// records per partition (2,000) than the old incarnation had (1,500): the offsets kmirror had
// reached exist in the new incarnation too, so a fetch from the old position reads records of
// the new one, skipping its first 1,500 per partition. kmirror must see the new topic ID first
// and mirror the new incarnation from its log start: every record once, in order, in both
// delivery modes.
func TestNewIncarnationWhileRunningIsMirroredOnceInOrder(t *testing.T) {
	for _, mode := range []struct{ name, extra string }{
		{"at_least_once", ""},
		{"exactly_once", eosSettings},
	} {
		t.Run(mode.name, func(t *testing.T) {
			europe := startCluster(t, "europe")
			us := startCluster(t, "us")
			const topic, partitions, oldPer, newPer = "inc", 2, 1500, 2000
			europe.createTopic(t, topic, partitions, 1, nil)
			cfg := writeConfig(t, baseConfig(europe, us, topic, mode.extra))
			if n := startLoad(t, europe.bootstrap, topic, partitions*oldPer, 0).wait(t); n != partitions*oldPer {
				t.Fatalf("produced %d", n)
			}
			k := startKmirror(t, cfg)
			waitFor(t, "the old incarnation mirrored", 2*time.Minute, func() bool {
				return us.count(t, topic) >= partitions*oldPer
			})
			time.Sleep(3 * time.Second) // the positions of the old incarnation committed
			before := us.endOffsetsOf(t, topic)
			oldID := europe.topicID(t, topic)

			recreate(t, europe, topic, partitions)
			n := startLoad(t, europe.bootstrap, topic, partitions*newPer, 0).wait(t)
			newID := europe.topicID(t, topic)
			t.Logf("re-created %s: topic ID %s → %s, %d records in the new incarnation", topic, oldID, newID, n)
			// Not fatal when it times out: the comparison below says what is missing.
			for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
				if gone, how := k.exited(); gone {
					t.Fatalf("kmirror exited: %s\n%s", how, k.tail(30))
				}
				if mirroredSince(t, us, topic, before) >= int64(n) {
					break
				}
			}
			time.Sleep(5 * time.Second) // anything more (duplicates, or records from the old position) lands now
			k.stop()

			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			rep, err := verify.CompareSince(ctx, europe.bootstrap, us.bootstrap, map[string]string{topic: topic},
				map[string]map[int32]int64{topic: before})
			if err != nil {
				t.Fatal(err)
			}
			logFigures(t, rep, "new incarnation only")
			s := rep.Sum()
			if s.Source != n || s.Lost != 0 || s.Foreign != 0 || s.Reordered != 0 || s.Duplicates != 0 || !rep.Complete() {
				t.Errorf("the new incarnation is not mirrored exactly once in order:\n%s", rep)
			}
			// One line names the topic and both IDs.
			re := regexp.MustCompile(`deleted and created again.*` + regexp.QuoteMeta(oldID) + `.*` + regexp.QuoteMeta(newID))
			if !re.MatchString(k.log()) {
				t.Errorf("no log line names the re-created topic with its old ID %s and new ID %s\n%s", oldID, newID, k.tail(30))
			}
		})
	}
}

// mirroredSince counts the target's records (transaction markers included) after before.
func mirroredSince(t *testing.T, c *cluster, topic string, before map[int32]int64) int64 {
	var n int64
	for p, end := range c.endOffsetsOf(t, topic) {
		n += end - before[p]
	}
	return n
}

// topicID returns topic's ID as the cluster reports it.
func (c *cluster) topicID(t *testing.T, topic string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	md, err := c.admin(t).Metadata(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	d, ok := md.Topics[topic]
	if !ok || d.Err != nil {
		t.Fatalf("no metadata for %s: %v", topic, d.Err)
	}
	// Kafka's own form (and sarama's): URL-safe base64 without padding.
	return base64.RawURLEncoding.EncodeToString(d.ID[:])
}
