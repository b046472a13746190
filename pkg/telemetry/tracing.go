package telemetry

import (
	"context"
	"fmt"
	"time"

	"github.com/IBM/sarama"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// TracingConfig configures trace export.
type TracingConfig struct {
	// Endpoint is the OTLP collector's host:port; empty turns tracing off.
	Endpoint string
	// Protocol is "grpc" or "http".
	Protocol string
	// Insecure sends without TLS.
	Insecure bool
	// SampleRatio is the share of new traces recorded; a sampled parent is always followed.
	SampleRatio float64
}

// ResourceInfo describes this process in every span it exports.
type ResourceInfo struct {
	ServiceVersion, SourceAlias, TargetAlias, InstanceID string
}

// Tracing is kmirror's tracer and the propagator of W3C trace context through record headers.
type Tracing struct {
	// Tracer starts kmirror's spans; a no-op tracer when tracing is off.
	Tracer trace.Tracer
	// Enabled is false when tracing is off: the data path then skips tracing entirely.
	Enabled    bool
	propagator propagation.TextMapPropagator
	shutdown   func(context.Context) error
}

// NewTracing builds the tracer provider: an OTLP exporter behind a batch span processor, a
// parent-based ratio sampler and a resource naming the service, its version, instance and the
// clusters it mirrors between.
func NewTracing(ctx context.Context, cfg TracingConfig, info ResourceInfo) (*Tracing, error) {
	t := &Tracing{propagator: propagation.TraceContext{}}
	if cfg.Endpoint == "" {
		t.Tracer = noop.NewTracerProvider().Tracer("kmirror")
		t.shutdown = func(context.Context) error { return nil }
		return t, nil
	}
	var exp *otlptrace.Exporter
	var err error
	switch cfg.Protocol {
	case "http":
		opts := []otlptracehttp.Option{otlptracehttp.WithEndpoint(cfg.Endpoint)}
		if cfg.Insecure {
			opts = append(opts, otlptracehttp.WithInsecure())
		}
		exp, err = otlptracehttp.New(ctx, opts...)
	default:
		opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(cfg.Endpoint)}
		if cfg.Insecure {
			opts = append(opts, otlptracegrpc.WithInsecure())
		}
		exp, err = otlptracegrpc.New(ctx, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("telemetry.tracing: OTLP exporter to %s: %w", cfg.Endpoint, err)
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		attribute.String("service.name", "kmirror"),
		attribute.String("service.version", info.ServiceVersion),
		attribute.String("service.instance.id", info.InstanceID),
		attribute.String("kmirror.source.alias", info.SourceAlias),
		attribute.String("kmirror.target.alias", info.TargetAlias),
	))
	if err != nil {
		return nil, fmt.Errorf("telemetry.tracing: resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(time.Second)),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SampleRatio))),
		sdktrace.WithResource(res),
	)
	t.Tracer = tp.Tracer("github.com/kmirror/kmirror")
	t.Enabled = true
	t.shutdown = tp.Shutdown
	return t, nil
}

// Shutdown flushes the spans still buffered and stops the exporter.
func (t *Tracing) Shutdown(ctx context.Context) error { return t.shutdown(ctx) }

// Extract returns ctx with the trace context carried by a consumed record's headers, if any.
func (t *Tracing) Extract(ctx context.Context, headers []*sarama.RecordHeader) context.Context {
	return t.propagator.Extract(ctx, ConsumerHeaders(headers))
}

// Inject writes the trace context of ctx into a produced record's headers, replacing any
// traceparent/tracestate already there.
func (t *Tracing) Inject(ctx context.Context, headers *[]sarama.RecordHeader) {
	t.propagator.Inject(ctx, ProducerHeaders{Headers: headers})
}

// ConsumerHeaders reads W3C trace context from a consumed record's headers.
type ConsumerHeaders []*sarama.RecordHeader

// Get implements propagation.TextMapCarrier.
func (h ConsumerHeaders) Get(key string) string {
	for _, x := range h {
		if string(x.Key) == key {
			return string(x.Value)
		}
	}
	return ""
}

// Set implements propagation.TextMapCarrier; consumed records are read-only.
func (h ConsumerHeaders) Set(string, string) {}

// Keys implements propagation.TextMapCarrier.
func (h ConsumerHeaders) Keys() []string {
	out := make([]string, len(h))
	for i, x := range h {
		out[i] = string(x.Key)
	}
	return out
}

// ProducerHeaders writes W3C trace context into a produced record's headers.
type ProducerHeaders struct{ Headers *[]sarama.RecordHeader }

// Get implements propagation.TextMapCarrier.
func (h ProducerHeaders) Get(key string) string {
	for _, x := range *h.Headers {
		if string(x.Key) == key {
			return string(x.Value)
		}
	}
	return ""
}

// Set implements propagation.TextMapCarrier: it replaces the header if present, so a record
// never carries two traceparents.
func (h ProducerHeaders) Set(key, value string) {
	hs := *h.Headers
	for i := range hs {
		if string(hs[i].Key) == key {
			hs[i].Value = []byte(value)
			return
		}
	}
	*h.Headers = append(hs, sarama.RecordHeader{Key: []byte(key), Value: []byte(value)})
}

// Keys implements propagation.TextMapCarrier.
func (h ProducerHeaders) Keys() []string {
	out := make([]string, len(*h.Headers))
	for i, x := range *h.Headers {
		out[i] = string(x.Key)
	}
	return out
}

// HasTraceparent reports whether a consumed record carries a W3C traceparent header, cheaply
// (no allocation), so untraced records skip extraction.
func HasTraceparent(headers []*sarama.RecordHeader) bool {
	for _, x := range headers {
		if string(x.Key) == "traceparent" {
			return true
		}
	}
	return false
}

// TracingWith wraps an existing tracer provider (an in-memory one in tests, or one an embedding
// program already configured). The caller owns the provider's shutdown.
func TracingWith(tp trace.TracerProvider) *Tracing {
	return &Tracing{
		Tracer:     tp.Tracer("github.com/kmirror/kmirror"),
		Enabled:    true,
		propagator: propagation.TraceContext{},
		shutdown:   func(context.Context) error { return nil },
	}
}
