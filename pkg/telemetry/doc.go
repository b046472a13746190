// Package telemetry owns what kmirror tells the outside world about itself:
//
//   - Metrics: kmirror's own Prometheus metrics (throughput, lag, latency, ring occupancy,
//     errors, rebalances, commits, topic discovery, build info, readiness), built on a
//     Registerer the caller injects;
//   - SaramaCollector: sarama's go-metrics registries bridged into Prometheus at scrape time;
//   - NewTracerProvider and Tracing: OpenTelemetry traces exported over OTLP (to Jaeger, for
//     instance) and W3C trace context carried in Kafka record headers;
//   - Server: the HTTP endpoint serving /metrics, /healthz, /readyz and, when enabled,
//     /debug/pprof;
//   - NewLogger: the zap logger.
//
// It must never use the global Prometheus registry or the global OpenTelemetry provider and
// propagator, never put an unbounded value (an offset, a key, a record's content) in a metric
// label, never look a label up, lock or allocate per record on the data path, never cost the
// data path anything when tracing is off, and never block or fail the data path because an
// observer (a scraper, a collector) is slow or gone.
package telemetry
