//go:build e2e

package e2e

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestScratchCommitsBeforeKill(t *testing.T) {
	europe := startCluster(t, "europe")
	us := startCluster(t, "us")
	europe.createTopic(t, "plain", 3, 1, nil)
	extra := os.Getenv("SCRATCH_EXTRA")
	cfg := writeConfig(t, strings.Replace(baseConfig(europe, us, "plain", extra), `listen: ""`, `listen: "127.0.0.1:23399"`, 1))
	k := startKmirror(t, cfg)
	load := startLoad(t, europe.bootstrap, "plain", 150_000, 15_000)
	for i := 0; i < 12; i++ {
		time.Sleep(time.Second)
		t.Logf("target %d produced %d committed %v", us.count(t, "plain"), load.count(), committedPositions(t, europe, "kmirror"))
	}
	load.wait(t)
	os.WriteFile("/tmp/e2efail-scratch-metrics.txt", []byte(scrape(t, "http://127.0.0.1:23399/metrics")), 0o644)
	k.kill()
	os.WriteFile("/tmp/e2efail-scratch-kmirror.log", []byte(k.log()), 0o644)
}
