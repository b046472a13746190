package version

import (
	"runtime"
	"testing"
)

func TestStringNamesVersionCommitAndDate(t *testing.T) {
	Version, Commit, Date = "v0.2.0-3-gabc1234", "abc1234def", "2026-12-06T01:00:00Z"
	t.Cleanup(func() { Version, Commit, Date = "dev", "unknown", "unknown" })
	want := "kmirror v0.2.0-3-gabc1234 (commit abc1234def, built 2026-12-06T01:00:00Z, " +
		runtime.Version() + ", " + runtime.GOOS + "/" + runtime.GOARCH + ")"
	if got := String(); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}
