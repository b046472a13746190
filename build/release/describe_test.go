package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDescribeReleasesOnlyCleanTaggedTrees walks one repository through the states a release can
// be asked from and checks what describe stamps or refuses in each.
func TestDescribeReleasesOnlyCleanTaggedTrees(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	sh := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
			"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com", "GIT_CONFIG_GLOBAL=/dev/null")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v: %s", args, err, out)
		}
	}
	write := func(name, data string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(snapshot bool, want, wantErr string) {
		t.Helper()
		b, err := describe(ctx, dir, snapshot)
		switch {
		case wantErr != "":
			if err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Errorf("snapshot=%v: error %v, want one saying %q", snapshot, err, wantErr)
			}
		case err != nil:
			t.Errorf("snapshot=%v: %v", snapshot, err)
		case !regexp.MustCompile("^" + want + "$").MatchString(b.Version):
			t.Errorf("snapshot=%v: version %q, want %s", snapshot, b.Version, want)
		case len(b.Commit) != 40 || b.Date.IsZero():
			t.Errorf("snapshot=%v: commit %q, date %v", snapshot, b.Commit, b.Date)
		}
	}

	sh("init", "-q", "-b", "main")
	write("a", "1")
	sh("add", "a")
	sh("commit", "-qm", "first")
	expect(false, "", "not at a v* tag")
	expect(true, "dev", "")

	sh("tag", "-a", "v0.2.0", "-m", "v0.2.0")
	expect(false, "v0.2.0", "")
	sh("tag", "nightly") // a tag that is not a version names no release
	expect(false, "v0.2.0", "")

	write("a", "2")
	expect(false, "", "uncommitted changes")
	expect(true, `v0\.2\.0-dirty`, "")

	sh("commit", "-qam", "second")
	expect(false, "", "not at a v* tag")
	expect(true, `v0\.2\.0-1-g[0-9a-f]{7,}`, "")
	write("b", "untracked")
	expect(false, "", "uncommitted changes")
	expect(true, `v0\.2\.0-1-g[0-9a-f]{7,}-dirty`, "")
}
