package config

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoad feeds arbitrary bytes to the loader as a configuration file: it must either return a
// configuration that passes Validate or an error, and never panic.
func FuzzLoad(f *testing.F) {
	example, err := os.ReadFile(filepath.Join("..", "..", "configs", "kmirror.yaml"))
	if err == nil {
		f.Add(example)
	}
	f.Add([]byte(minimal))
	f.Add([]byte("source: {bootstrap: [\"a:1\"]}\ntarget: {bootstrap: [\"a:1\"]}\n"))
	f.Add([]byte("topics: {include: [\"(\"]}\n"))
	f.Add([]byte("ring: {workers: -1}\nproducer: {linger: forever}\n"))
	f.Add([]byte("source: [1, 2]\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, body []byte) {
		p := filepath.Join(dir, "fuzz.yaml")
		if err := os.WriteFile(p, body, 0o600); err != nil {
			t.Skip()
		}
		cfg, err := Load(p, nil)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if verr := cfg.Validate(); verr != nil {
			t.Fatalf("Load returned a configuration that does not validate: %v", verr)
		}
	})
}
