package mirror

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/kmirror/kmirror/pkg/status"
)

// TestStatusNamesEveryPartitionWithItsLagRPOAndStall: while the target takes produce requests
// and never answers, /status names each mirrored partition with its records not yet mirrored
// (30 each, 60 in all), an RPO above zero and the stall, and says why the flow is not ready;
// the table `kmirror status` prints shows the same. Once the target answers, every partition is
// at lag 0, not stalled, and the flow is ready.
func TestStatusNamesEveryPartitionWithItsLagRPOAndStall(t *testing.T) {
	p := newPair(t)
	createTopic(t, p.europe, "orders", 2, nil)
	produce(t, p.europe, numbered("orders", 2, 0, 60)...)
	unfreeze := freezeProduce(t, p)

	cfg := p.config("orders")
	cfg.Telemetry.StallAfter = 2 * time.Second
	cfg.Target.ReadTimeout = time.Minute
	m := startWith(t, cfg, Options{Log: zaptest.NewLogger(t)}).m
	t.Cleanup(unfreeze) // before the stop: cleanups run last first

	srv := httptest.NewServer(status.Handler(m.Status))
	defer srv.Close()
	var rep status.Report
	waitFor(t, "/status to show both partitions stalled with their 60 records", 30*time.Second, func() bool {
		var err error
		rep, err = status.Fetch(t.Context(), srv.URL)
		return err == nil && rep.Partitions == 2 && rep.Stalled == 2 && rep.LagRecords == 60
	})
	if len(rep.Topics) != 1 || rep.Topics[0].Source != "orders" || rep.Topics[0].Target != "orders" {
		t.Fatalf("topics %+v, want orders → orders", rep.Topics)
	}
	for _, part := range rep.Topics[0].Partitions {
		if part.LagRecords != 30 || !part.Stalled || part.RPOSeconds <= 0 || part.StalledSince.IsZero() {
			t.Errorf("partition %+v, want 30 records behind, stalled, RPO above 0", part)
		}
	}
	if rep.Ready || !strings.Contains(rep.NotReady, "stalled") || rep.DeliveryMode != "at_least_once" || rep.Source != "europe" {
		t.Errorf("report %+v: want not ready (stalled), at_least_once, europe", rep)
	}
	var table bytes.Buffer
	status.Print(&table, rep)
	for _, want := range []string{"europe -> us", "NOT READY", "lag 60 records", "orders  orders  0", "orders  orders  1", "STALLED since"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("the table does not show %q:\n%s", want, table.String())
		}
	}
	if b, err := json.Marshal(rep); err != nil || !bytes.Contains(b, []byte(`"lag_records":30`)) || !bytes.Contains(b, []byte(`"rpo_seconds"`)) {
		t.Errorf("JSON %s (%v)", b, err)
	}

	unfreeze()
	waitFor(t, "every partition caught up, not stalled, ready", 30*time.Second, func() bool {
		rep = m.Status()
		return rep.Ready && rep.Partitions == 2 && rep.LagRecords == 0 && rep.Stalled == 0
	})
	t.Logf("caught up:\n%s", func() string { var b bytes.Buffer; status.Print(&b, rep); return b.String() }())
}
