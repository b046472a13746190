// Package telemetry owns what kmirror tells the outside world about itself: the zap logger, the
// Prometheus metrics (kmirror's own and sarama's go-metrics, bridged), OpenTelemetry traces
// exported over OTLP (to Jaeger, for instance), and the HTTP endpoint that serves /metrics,
// /healthz, /readyz and, when enabled, /debug/pprof.
//
// It must never use the global Prometheus registry or a global tracer provider, never put an
// unbounded value (an offset, a key) in a metric label, and never cost the data path anything
// when tracing is off.
package telemetry
