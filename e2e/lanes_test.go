//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestFetchLanesOpenAsPartitionsGrow: kmirror starts with 200 source partitions, one fetch lane;
// then topics matched later bring the source broker's partitions to 1,200, more than one fetch
// session holds well (config.FetchSessionPartitions: 1,000). Another fetch lane opens for them
// (logged), with default settings, and every record of every topic is copied once, in order, the
// first topic's partitions flowing throughout.
func TestFetchLanesOpenAsPartitionsGrow(t *testing.T) {
	europe := startCluster(t, "europe")
	us := startCluster(t, "us")
	europe.createTopic(t, "grow.a", 200, 1, nil)
	k := startKmirror(t, writeConfig(t, baseConfig(europe, us, `grow\..*`, "")))
	const opened = "another fetch loop reads it"

	first := startLoad(t, europe.bootstrap, "grow.a", 4_000, 0).wait(t)
	waitFor(t, "grow.a mirrored", 2*time.Minute, func() bool { return us.count(t, "grow.a") >= int64(first) })
	if strings.Contains(k.log(), opened) {
		t.Fatalf("a fetch lane opened for 200 partitions:\n%s", k.tail(20))
	}

	europe.createTopic(t, "grow.b", 500, 1, nil)
	europe.createTopic(t, "grow.c", 500, 1, nil)
	more := startLoad(t, europe.bootstrap, "grow.a", 4_000, 2_000)
	more.stopAtCleanup(t)
	b := startLoad(t, europe.bootstrap, "grow.b", 10_000, 0).wait(t)
	c := startLoad(t, europe.bootstrap, "grow.c", 10_000, 0).wait(t)
	second := more.wait(t)
	waitFor(t, "grow.b and grow.c mirrored", 3*time.Minute, func() bool {
		return us.count(t, "grow.b") >= int64(b) && us.count(t, "grow.c") >= int64(c) &&
			us.count(t, "grow.a") >= int64(first+second)
	})
	if !strings.Contains(k.log(), opened) {
		t.Fatalf("no fetch lane opened for 1,200 partitions of one broker:\n%s", k.tail(30))
	}
	k.stop()

	rep := compareReport(t, europe, us, map[string]string{"grow.a": "grow.a", "grow.b": "grow.b", "grow.c": "grow.c"})
	s := rep.Sum()
	logFigures(t, rep, fmt.Sprintf("200 partitions at the start, 1,200 after two topics were added; %d lane-opening log lines",
		strings.Count(k.log(), opened)))
	if !rep.Complete() || s.Duplicates != 0 || s.Target != s.Source {
		t.Fatalf("source %d, target %d, duplicates %d:\n%s", s.Source, s.Target, s.Duplicates, rep)
	}
}
