package mirror

import (
	"testing"
	"time"

	"github.com/kmirror/kmirror/pkg/offsetmap"
)

// TestExactlyOnceMapNeverLagsThePositions: under exactly-once the source positions reach the
// target inside each transaction, so a kill -9 at any moment leaves the positions group where
// the last committed transaction put them; the offset map must already cover them then, or the
// restart resumes after a hole no run fills. With the flusher's interval an hour (a kill always
// falls before its next write), the map read after the positions must cover every committed
// position at every moment while records are mirrored: the record before each position
// translates exactly, and the map knows every copy up to the position.
func TestExactlyOnceMapNeverLagsThePositions(t *testing.T) {
	p := newPair(t)
	const parts, bursts, each = 3, 10, 60
	createTopic(t, p.europe, "orders", parts, nil)
	cfg := withExactlyOnce(t, p.config("orders"))
	cfg.OffsetMap.FlushInterval = time.Hour
	positionsGroup := cfg.Delivery.Positions(cfg.Consumer.GroupID, cfg.Source.Alias)
	m := start(t, cfg)
	checks, checked := 0, int64(0)
	check := func() int64 {
		t.Helper()
		pos := committed(t, p.us, positionsGroup, "orders") // the positions first, then the map
		x := mapIndex(t, p.us, cfg.OffsetMapTopic())
		var sum int64
		for part, at := range pos {
			sum += at
			if at <= 0 {
				continue
			}
			tr := x.Translate("orders", part, at-1, "")
			if tr.Status != offsetmap.Exact || tr.Mirrored < at {
				t.Fatalf("orders/%d: the positions group is at %d, the map translates %d as %s (%s), mirrored up to %d: "+
					"the map lags the committed positions, and a kill now leaves a hole", part, at, at-1, tr.Status, tr.Reason, tr.Mirrored)
			}
		}
		checks++
		checked = max(checked, sum)
		return sum
	}
	for i := range bursts {
		produce(t, p.europe, numbered("orders", parts, i*each, each)...)
		want := int64((i + 1) * each)
		waitFor(t, "a burst's positions committed", 30*time.Second, func() bool { return check() == want })
	}
	t.Logf("%d checks of the map against the positions, up to %d positions committed", checks, checked)
	if err := m.stop(t); err != nil {
		t.Fatal(err)
	}
}
