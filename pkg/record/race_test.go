//go:build race

package record

// raceEnabled: under the race detector sync.Pool drops a share of what it is given on purpose,
// so allocation counts say nothing.
const raceEnabled = true
