// Package benchmarks holds kmirror's performance measurements: Go benchmarks of the whole
// pipeline on in-process clusters (this package), and programs that compare kmirror with
// MirrorMaker 2, with a bare franz-go mirror (baremirror/, the reference for what a Go client
// reaches on the machine), with a bare sarama mirror (baresarama/, what sarama's high-level
// clients reach, kmirror's client library) and with the clusters' own ceiling on real Kafka
// brokers (compare, run by run.sh and make bench; scale, make bench-scale).
//
// compare also measures the mirrors across a WAN. This machine's kernel has no netem, so the
// round trip comes from package wan: a toxiproxy proxy per remote broker holding each byte for
// half the RTT each way, with the remote broker advertising the proxy's address on a listener of
// its own (scripts/kafka/cluster.sh up --remote-listener), so that only the mirror is behind the
// WAN. The mirror runs near the target (the source behind the proxy: remote consume) or near the
// source (the target behind it: remote produce), at each RTT of --rtts, against the same mirror
// without a proxy (loopback), with franz-go alone on each path as the path's own ceiling.
//
// Performance targets live here, never in timed unit tests.
package benchmarks
