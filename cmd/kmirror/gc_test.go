package main

import (
	"os"
	"runtime/debug"
	"testing"

	"go.uber.org/zap"
)

func TestGCPercentComesFromTheConfigUnlessGOGCIsSet(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))

	t.Setenv("GOGC", "") // restored after the test
	os.Unsetenv("GOGC")
	applyGCPercent(321, zap.NewNop())
	if got := debug.SetGCPercent(100); got != 321 {
		t.Fatalf("GC percent = %d, want runtime.gc_percent's 321", got)
	}

	t.Setenv("GOGC", "150")
	applyGCPercent(321, zap.NewNop())
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("GC percent = %d with GOGC set in the environment; want it left alone (100)", got)
	}
}
