package config

import (
	"io/fs"
	"path/filepath"
	"testing"
)

// TestDeployConfigurationsLoad loads every kmirror configuration the Kubernetes manifests ship
// (deploy/kubernetes/**/kmirror.yaml, each flow's and each site's): a key misspelt or refused
// there would make the pods crash-loop, and the manifests' own validator cannot see inside a
// ConfigMap's file. The files they name (CA, passwords) exist only in the pods; they are not read.
func TestDeployConfigurationsLoad(t *testing.T) {
	root := filepath.Join("..", "..", "deploy", "kubernetes")
	n := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "kmirror.yaml" {
			return err
		}
		n++
		cfg, err := Load(path, nil)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			return nil
		}
		if cfg.Source.Alias == cfg.Target.Alias || cfg.Consumer.GroupID == "" {
			t.Errorf("%s: source %q, target %q, group %q", path, cfg.Source.Alias, cfg.Target.Alias, cfg.Consumer.GroupID)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 4 {
		t.Fatalf("found %d kmirror.yaml under deploy/kubernetes, want the 4 flows' and sites'", n)
	}
}
