//go:build e2e

package e2e

import (
	"fmt"
	"testing"
	"time"
)

// TestIdlePartitionsResumeAndCommitExactly mirrors a load, lets the partitions go idle for long
// enough that the watcher and the committer stop visiting them (pkg/source: the watched set),
// mirrors a second load into the same partitions, waits past two commit intervals, and kills
// kmirror -9, default settings. Only the periodic commit can have recorded the second load's
// positions: a partition its wake-up did not bring back would be read again from the first
// load's end by the next kmirror, and its records copied twice. So after a restart the target
// holds every record once, in order.
func TestIdlePartitionsResumeAndCommitExactly(t *testing.T) {
	europe := startCluster(t, "europe")
	us := startCluster(t, "us")
	europe.createTopic(t, "idle", 6, 1, nil)
	cfg := writeConfig(t, baseConfig(europe, us, "idle", ""))
	k := startKmirror(t, cfg)

	first := startLoad(t, europe.bootstrap, "idle", 12_000, 4_000).wait(t)
	waitFor(t, "the first load mirrored", 2*time.Minute, func() bool { return us.count(t, "idle") >= int64(first) })
	time.Sleep(8 * time.Second) // idle: each partition leaves the watched set once committed

	second := startLoad(t, europe.bootstrap, "idle", 12_000, 4_000).wait(t)
	waitFor(t, "the second load mirrored", 2*time.Minute, func() bool { return us.count(t, "idle") >= int64(first+second) })
	time.Sleep(12 * time.Second) // two commit intervals (commit.interval 5s)
	k.kill()

	k2 := startKmirror(t, cfg)
	time.Sleep(15 * time.Second) // a re-read, if any, lands meanwhile
	k2.stop()
	rep := compareReport(t, europe, us, map[string]string{"idle": "idle"})
	s := rep.Sum()
	logFigures(t, rep, fmt.Sprintf("two loads of %d and %d records 8 s apart, kill -9 12 s after the second was mirrored", first, second))
	if !rep.Complete() || s.Duplicates != 0 || s.Target != s.Source {
		t.Fatalf("after the restart: source %d, target %d, duplicates %d (a position not committed after the partition woke up):\n%s",
			s.Source, s.Target, s.Duplicates, rep)
	}
}
