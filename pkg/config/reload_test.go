package config

import (
	"strings"
	"testing"
)

func TestDiffSaysWhatAReloadAppliesAndWhatNeedsARestart(t *testing.T) {
	running := Default()
	running.Source.Bootstrap = []string{"eu:9092"}
	running.Target.SASL = SASL{Mechanism: "SCRAM-SHA-512", Username: "kmirror", PasswordFile: "/a"}
	running.Source.SASL = SASL{Mechanism: "PLAIN", Username: "kmirror", Password: "x"}

	next := running
	next.Topics.Include = []string{"orders", "payments"}
	next.Target.SASL.PasswordFile = "/b"
	next.Target.TLS.CAFile = "/ca"
	next.Log.Level = "debug"
	changes := Diff(&running, &next)
	if err := Refused(changes); err != nil {
		t.Fatalf("credentials, include and the log level are reloadable: %v (%v)", err, changes)
	}
	if got := len(changes); got != 4 {
		t.Fatalf("changes %v, want 4", changes)
	}

	next.Source.Bootstrap = []string{"eu2:9092"}
	next.Source.SASL.Password = "y" // PLAIN: clients hold it
	next.Ring.Workers++
	err := Refused(Diff(&running, &next))
	if err == nil {
		t.Fatal("a new bootstrap, a PLAIN password and ring.workers were taken as reloadable")
	}
	for _, want := range []string{"source.bootstrap: the source clients are connected", "source.sasl.password: SASL PLAIN",
		"ring.workers: the workers", "nothing changed"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "topics.include") {
		t.Errorf("refusal names a reloadable key: %v", err)
	}
	if strings.Contains(err.Error(), `"y"`) {
		t.Errorf("refusal shows a value: %v", err)
	}
}
