// Command gen writes the configuration reference generated from pkg/config:
// docs/configuration.md, docs/kmirror.schema.json and pkg/config/reference/docs_gen.go.
// Run it with `go generate ./pkg/config` (or `go run ./pkg/config/gen`) after changing a setting.
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/kmirror/kmirror/pkg/config/reference"
)

func main() {
	root, err := moduleRoot()
	if err == nil {
		err = reference.Write(root)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

// moduleRoot finds the directory of go.mod from the working directory up: go generate runs in
// pkg/config, go run wherever it is typed.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod in the working directory or above it: run from the kmirror repository")
		}
		dir = parent
	}
}
