package groups

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"
)

// Planner plans one group: Syncer.Plan, or nil while there is nothing to plan with.
type Planner func(ctx context.Context, group, topic string) (Report, error)

// TranslateHandler serves GET /offsets/translate?group=G[&topic=T]: the group's plan as JSON (the
// same as `kmirror offsets translate --json`). It changes nothing on either cluster.
func TranslateHandler(plan func() Planner) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		group := r.URL.Query().Get("group")
		if group == "" {
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": "name the group: /offsets/translate?group=G[&topic=T]"})
			return
		}
		p := plan()
		if p == nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": "not translating: the mirror is not running, or offset_map.enabled is off"})
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		defer cancel()
		rep, err := p(ctx, group, r.URL.Query().Get("topic"))
		if err != nil {
			code := http.StatusBadGateway
			if errors.Is(err, ErrOwnGroup) {
				code = http.StatusBadRequest
			}
			w.WriteHeader(code)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
			return
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	})
}
