// Package e2e is kmirror's end-to-end suite against real Apache Kafka brokers (KRaft, jars from
// Maven Central, started by scripts/kafka/cluster.sh) and the real kmirror binary, producing with
// independent clients (kcat, franz-go) and verifying per partition with franz-go.
//
// Run it with scripts/e2e.sh (make e2e); the tests carry the e2e build tag.
package e2e
