//go:build e2e

package e2e

import (
	"testing"
	"time"
)

// TestGiveUpKeepsOrderOnRestart stops the only target broker for 40 s under load with
// producer.delivery_timeout at 10 s (this test is about the give-up path, so it shortens the
// delivery budget): kmirror must give up and exit non-zero. Once the target and kmirror are back,
// nothing may be lost and the first copy of every source record must stand in source order: a
// record that failed must never be followed on the target by later records of its partition
// (duplicates are allowed only as a whole re-run from the committed offset).
func TestGiveUpKeepsOrderOnRestart(t *testing.T) {
	europe := startCluster(t, "europe")
	us := startCluster(t, "us")
	r := startFaultRun(t, europe, us, "giveup", 6, 1, nil, 100_000, 2_000, 5_000, `
producer:
  delivery_timeout: 10s
`)

	before := us.count(t, "giveup")
	us.script(t, "stop-node", "us", "1")
	t.Logf("stopped the single target node with %d records on the target", before)
	down := time.Now()
	r.sleep(40*time.Second, "while the target was down")
	gaveUp, how := r.k.exited()
	us.script(t, "start-node", "us", "1")
	if !gaveUp {
		// A graceful stop may still be draining into the target that just came back.
		select {
		case <-r.k.done:
			gaveUp, how = r.k.exited()
		case <-time.After(60 * time.Second):
		}
	}
	switch {
	case !gaveUp:
		t.Fatalf("kmirror still runs %s after the target went down, with producer.delivery_timeout 10s: it must give up and exit non-zero",
			time.Since(down).Round(time.Second))
	case r.k.cmd.ProcessState.ExitCode() == 0:
		t.Fatalf("%s after the target went down, want a non-zero status (records were not delivered)", how)
	}
	t.Logf("gave up: %s %s after the target went down", how, r.k.ended.Sub(down).Round(100*time.Millisecond))
	t.Logf("kmirror errors:\n%s", r.k.errors())

	r.k, r.exited = startKmirror(t, r.cfg), "" // from here on, exiting is a failure again
	r.finish(time.Now(), 3*time.Minute, "target down 40s, kmirror gave up and restarted")
}
