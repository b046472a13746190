package status

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Path is where the daemon serves the Report.
const Path = "/status"

// Report is the status of one flow at one moment, as /status serves it.
type Report struct {
	// At is when the report was made.
	At      time.Time `json:"at"`
	Version string    `json:"version"`
	// Source and Target are the clusters' aliases.
	Source string `json:"source"`
	Target string `json:"target"`
	// Group is the source consumer group this member belongs to.
	Group string `json:"group"`
	// DeliveryMode is delivery.mode: at_least_once or exactly_once.
	DeliveryMode string `json:"delivery_mode"`
	// Ready says whether the flow mirrors (what /readyz says); NotReady is why not.
	Ready    bool   `json:"ready"`
	NotReady string `json:"not_ready,omitempty"`
	// Include and Exclude are topics.include and topics.exclude as the flow applies them now.
	Include []string `json:"include"`
	Exclude []string `json:"exclude,omitempty"`

	// Partitions counts the source partitions this member mirrors; LagRecords sums their
	// backlogs, RPOSeconds is the largest of their RPOs, Stalled counts the stalled ones.
	Partitions int     `json:"partitions"`
	LagRecords int64   `json:"lag_records"`
	RPOSeconds float64 `json:"rpo_seconds"`
	Stalled    int     `json:"stalled"`
	Topics     []Topic `json:"topics"`

	// Heartbeat is nil when heartbeats.enabled is off.
	Heartbeat *Heartbeat `json:"heartbeat,omitempty"`
	// GroupSync is nil when the group offset sync does not run (no offset map, or groups.include
	// empty).
	GroupSync *GroupSync `json:"group_sync,omitempty"`
	// Errors are the latest errors, latest first.
	Errors []Error `json:"errors"`
}

// Topic is one mirrored source topic's partitions of this member.
type Topic struct {
	Source     string      `json:"source"`
	Target     string      `json:"target"`
	LagRecords int64       `json:"lag_records"`
	RPOSeconds float64     `json:"rpo_seconds"`
	Stalled    int         `json:"stalled"`
	Partitions []Partition `json:"partitions"`
}

// Partition is one source partition this member mirrors.
type Partition struct {
	Partition int32 `json:"partition"`
	// LagRecords are the offsets between the mirrored position and the source's log end;
	// LagBytes their estimated size.
	LagRecords int64 `json:"lag_records"`
	LagBytes   int64 `json:"lag_bytes"`
	// RPOSeconds is the age of the oldest record not yet mirrored: what a loss of the source now
	// would lose, in time (0 when caught up).
	RPOSeconds float64 `json:"rpo_seconds"`
	// Stalled is set while records wait and none was acknowledged for telemetry.stall_after.
	Stalled      bool      `json:"stalled"`
	StalledSince time.Time `json:"stalled_since,omitzero"`
	// Assigned is when this member got the partition; Measured when its backlog was last
	// measured (zero: not yet).
	Assigned time.Time `json:"assigned"`
	Measured time.Time `json:"measured,omitzero"`
}

// Heartbeat is the latest heartbeat of the flow mirrored to the target.
type Heartbeat struct {
	// Topic is the flow's heartbeat topic on the source.
	Topic string `json:"topic"`
	// EmittedAt is when it was written to the source, MirroredAt when the target acknowledged
	// its copy (zero: none yet); LatencySeconds the difference; AgeSeconds how old it was at the
	// report (the flow's end-to-end freshness even when every topic is idle).
	EmittedAt      time.Time `json:"emitted_at,omitzero"`
	MirroredAt     time.Time `json:"mirrored_at,omitzero"`
	LatencySeconds float64   `json:"latency_seconds"`
	AgeSeconds     float64   `json:"age_seconds"`
}

// GroupSync is the state of the consumer-group offset sync.
type GroupSync struct {
	Include []string `json:"include"`
	// LastRound is when the last round ended (zero: none yet); Groups how many groups it went
	// through; Untranslatable how many partitions' positions were not yet mirrored.
	LastRound      time.Time `json:"last_round,omitzero"`
	Groups         int       `json:"groups"`
	Untranslatable int       `json:"untranslatable"`
	// Failed names the groups whose last sync failed, with the error.
	Failed map[string]string `json:"failed"`
}

// Error is one error the flow met; Count is how many times in a row, At the latest.
type Error struct {
	At    time.Time `json:"at"`
	Where string    `json:"where"`
	Error string    `json:"error"`
	Count int       `json:"count"`
}

// Handler serves the report status makes, as JSON.
func Handler(status func() Report) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(status())
	})
}

// Fetch asks the daemon whose telemetry endpoint listens at addr (host:port, or a URL) for its
// report.
func Fetch(ctx context.Context, addr string) (Report, error) {
	url := addr
	if !strings.Contains(addr, "://") {
		if strings.HasPrefix(addr, ":") {
			addr = "127.0.0.1" + addr // telemetry.listen ":9464" listens on every address
		}
		url = "http://" + addr
	}
	url = strings.TrimSuffix(url, "/") + Path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Report{}, fmt.Errorf("status address %q: %w", addr, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return Report{}, fmt.Errorf("ask the daemon at %s (telemetry.listen; is kmirror running there?): %w", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return Report{}, fmt.Errorf("read %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return Report{}, fmt.Errorf("GET %s: %s: %s (a kmirror older than this command serves no %s)",
			url, resp.Status, strings.TrimSpace(string(body)), Path)
	}
	var r Report
	if err := json.Unmarshal(body, &r); err != nil {
		return Report{}, fmt.Errorf("GET %s: not a kmirror status: %w", url, err)
	}
	return r, nil
}
