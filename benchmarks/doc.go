// Package benchmarks holds kmirror's performance measurements: Go benchmarks of the whole
// pipeline on in-process clusters (this package), and scripts that compare kmirror with
// MirrorMaker 2, with a bare franz-go mirror (baremirror/, the reference for what a Go client
// reaches on the machine) and with the clusters' own ceiling on real Kafka brokers (run.sh).
//
// Performance targets live here, never in timed unit tests.
package benchmarks
