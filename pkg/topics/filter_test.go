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

func TestFilterRulesDecideBeforeIncludeAndExclude(t *testing.T) {
	f, err := NewFilter([]string{"orders"}, []string{"always"})
	if err != nil {
		t.Fatal(err)
	}
	f.Decide(func(topic string) (bool, bool) {
		switch topic {
		case "always", "__internal":
			return true, true
		case "orders":
			return false, true
		}
		return false, false
	})
	for topic, want := range map[string]bool{
		"always":     true,  // excluded and not included, but the rule mirrors it
		"orders":     false, // included, but the rule refuses it
		"__internal": false, // internal topics stay internal whatever a rule says
		"other":      false, // undecided: include and exclude decide
	} {
		if got := f.Match(topic); got != want {
			t.Errorf("Match(%q) = %v, want %v", topic, got, want)
		}
	}
}
