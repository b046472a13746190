package main

import (
	"image/color"
	"os"
	"path/filepath"
	"testing"
)

func TestChartWritesAPNG(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.png")
	runs := map[string][]point{
		"kmirror":      {{0, 0}, {1, 100}, {2, 500}, {3, 1000}},
		"bare":         {{0, 0}, {1, 150}, {2, 600}, {2.8, 1000}},
		"mirrormaker2": {{0, 0}, {5, 100}, {10, 600}, {15, 1000}},
	}
	if err := chart(path, runs); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 1000 || string(b[1:4]) != "PNG" {
		t.Fatalf("not a PNG: %d bytes, %v", len(b), err)
	}
	if os.Getenv("KMIRROR_KEEP_CHART") != "" {
		os.WriteFile(os.Getenv("KMIRROR_KEEP_CHART"), b, 0o644)
	}
}

func TestEachContenderHasAColourOfItsOwn(t *testing.T) {
	seen := map[color.Color]string{}
	for _, c := range contenders {
		col := colorOf(c.name)
		if other, ok := seen[col]; ok {
			t.Errorf("%s and %s share a colour", c.name, other)
		}
		seen[col] = c.name
	}
}
