// Package version holds what the build was made from, set at link time by the Makefile and the
// release tool (-X github.com/kmirror/kmirror/pkg/version.Version=... and .Commit, .Date).
//
// Invariant: Version is a semantic version only when the tree was exactly at a v* tag; any other
// build says so ("v0.2.0-3-gabc1234", "-dirty", or "dev"), so a binary never claims a release it
// was not built from.
package version

import (
	"fmt"
	"runtime"
)

// Version is the release this binary was built from: the git tag (v0.2.0) for a release,
// git describe's form (v0.2.0-3-gabc1234[-dirty]) past a tag, "dev" when nothing set it.
var Version = "dev"

// Commit is the full git commit the binary was built from; "unknown" when nothing set it.
var Commit = "unknown"

// Date is the build date (RFC 3339, UTC); releases use the commit's time so that two builds of
// one tag are identical. "unknown" when nothing set it.
var Date = "unknown"

// String is the one line `kmirror version` prints.
func String() string {
	return fmt.Sprintf("kmirror %s (commit %s, built %s, %s, %s/%s)",
		Version, Commit, Date, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
