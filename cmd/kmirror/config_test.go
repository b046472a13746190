package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// runCommand runs kmirror's root command in-process with args and returns what it printed.
func runCommand(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	root := newRootCommand()
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&out)
	err := root.ExecuteContext(t.Context())
	return out.String(), err
}

// TestConfigSchemaAndReferenceAreTheCommittedFiles: what the binary prints is what docs/ holds,
// so an editor pointed at either gets the same schema.
func TestConfigSchemaAndReferenceAreTheCommittedFiles(t *testing.T) {
	for _, tc := range []struct{ sub, file string }{
		{"schema", "../../docs/kmirror.schema.json"},
		{"reference", "../../docs/configuration.md"},
	} {
		got, err := runCommand(t, "config", tc.sub)
		if err != nil {
			t.Fatalf("config %s: %v", tc.sub, err)
		}
		want, err := os.ReadFile(tc.file)
		if err != nil {
			t.Fatal(err)
		}
		if got != string(want) {
			t.Errorf("kmirror config %s differs from %s (run go generate ./pkg/config)", tc.sub, tc.file)
		}
	}
	got, err := runCommand(t, "config", "defaults")
	if err != nil || !strings.Contains(got, "\n  compression: none\n") || !strings.Contains(got, "fetch_wait_per_partition: 200us") {
		t.Errorf("config defaults: err %v, output:\n%s", err, got)
	}
}

// TestValidateAcceptsTheMinimalConfig: configs/minimal.yaml is a whole configuration.
func TestValidateAcceptsTheMinimalConfig(t *testing.T) {
	out, err := runCommand(t, "validate", "--config", "../../configs/minimal.yaml")
	if err != nil {
		t.Fatalf("validate configs/minimal.yaml: %v\n%s", err, out)
	}
	for _, want := range []string{"configuration is valid", `topics.include: [orders.*]`, `source.bootstrap: [127.0.0.1:19012]`} {
		if !strings.Contains(out, want) {
			t.Errorf("validate output lacks %q:\n%s", want, out)
		}
	}
}
