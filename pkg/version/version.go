// Package version holds the build's version string, set at link time by the Makefile
// (-X github.com/kmirror/kmirror/pkg/version.Version=...).
package version

// Version is the kmirror release this binary was built from; "dev" for untagged builds.
var Version = "dev"
