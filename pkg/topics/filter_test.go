package topics

import "testing"

func TestFilterAnchorsPatternsAndNeverMatchesInternalTopics(t *testing.T) {
	f, err := NewFilter([]string{"orders.*", "logs", ".*"}, []string{"orders\\.tmp.*", "secret"})
	if err != nil {
		t.Fatal(err)
	}
	for topic, want := range map[string]bool{
		"orders.eu":           true,
		"orders.tmp.1":        false, // excluded
		"secret":              false, // excluded though ".*" includes it
		"__consumer_offsets":  false, // internal
		"__transaction_state": false,
		"__kmirror-offsets":   false,
		"logs":                true,
		"anything":            true,
	} {
		if got := f.Match(topic); got != want {
			t.Errorf("Match(%q) = %v, want %v", topic, got, want)
		}
	}

	only, _ := NewFilter([]string{"logs"}, nil)
	if only.Match("logs-old") || only.Match("app.logs") {
		t.Error("an include pattern must match the whole name, not a part of it")
	}
}

func TestNamerPolicies(t *testing.T) {
	id, _ := NewNamer("identity", "europe")
	if got := id("orders"); got != "orders" {
		t.Errorf("identity(orders) = %q", got)
	}
	pre, _ := NewNamer("prefix", "europe")
	if got := pre("orders"); got != "europe.orders" {
		t.Errorf("prefix(orders) = %q", got)
	}
	if _, err := NewNamer("mirror", "europe"); err == nil {
		t.Error("unknown policy accepted")
	}
}
