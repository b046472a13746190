package telemetry

import (
	"context"
	"fmt"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/IBM/sarama"
)

// TracingConfig configures trace export (the telemetry.tracing section of the configuration).
type TracingConfig struct {
	// Endpoint is the OTLP receiver: host:port (127.0.0.1:4317 for gRPC, 127.0.0.1:4318 for
	// HTTP) or, for either protocol, a URL (http://collector:4318/v1/traces). Empty turns
	// tracing off.
	Endpoint string
	// Protocol is "grpc" (the default when empty) or "http" (OTLP/HTTP protobuf).
	Protocol string
	// Insecure sends without TLS. A URL endpoint's scheme decides this for itself.
	Insecure bool
	// SampleRatio is the share of new traces recorded, 0 to 1. A record whose traceparent says
	// "sampled" is always followed, one that says "not sampled" never is (parent-based sampling),
	// so kmirror joins exactly the traces its producers chose to record.
	SampleRatio float64
	// PropagateToTarget makes a traced record's copy carry kmirror's span context in place of
	// the traceparent/tracestate it arrived with (see Tracing.PropagateToTarget).
	PropagateToTarget bool
}

// ResourceInfo describes this process in every span it exports.
type ResourceInfo struct {
	// ServiceVersion is service.version (the kmirror release).
	ServiceVersion string
	// SourceAlias and TargetAlias are the clusters' aliases (kmirror.source.alias,
	// kmirror.target.alias), so traces of several mirrors can be told apart.
	SourceAlias, TargetAlias string
	// InstanceID is service.instance.id (host and pid, or the pod name).
	InstanceID string
}

// Resource attributes beyond the semantic conventions' service.*.
const (
	AttrSourceAlias = attribute.Key("kmirror.source.alias")
	AttrTargetAlias = attribute.Key("kmirror.target.alias")
)

// instrumentationName is the tracer's name: the module that produces the spans.
const instrumentationName = "github.com/kmirror/kmirror"

// NewTracerProvider builds the process's tracer provider: an OTLP exporter (gRPC or HTTP) behind a
// batch span processor, a parent-based TraceIDRatio sampler, and a resource with
// service.name=kmirror, service.version, service.instance.id and the two cluster aliases.
//
// When cfg.Endpoint is empty, tracing is off: the provider is the OpenTelemetry no-op provider,
// whose spans are never recorded and cost no allocation, and shutdown does nothing. Otherwise the
// provider is an *sdktrace.TracerProvider. Call shutdown (with a deadline) after the data path has
// stopped: it flushes the spans still buffered. Nothing is installed globally.
func NewTracerProvider(ctx context.Context, cfg TracingConfig, res ResourceInfo) (trace.TracerProvider, func(context.Context) error, error) {
	if cfg.Endpoint == "" {
		return noop.NewTracerProvider(), func(context.Context) error { return nil }, nil
	}
	if cfg.SampleRatio < 0 || cfg.SampleRatio > 1 {
		return nil, nil, fmt.Errorf("telemetry.tracing.sample_ratio %v: want a number from 0 to 1", cfg.SampleRatio)
	}
	exp, err := newExporter(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	r, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		attribute.String("service.name", "kmirror"),
		attribute.String("service.version", res.ServiceVersion),
		attribute.String("service.instance.id", res.InstanceID),
		AttrSourceAlias.String(res.SourceAlias),
		AttrTargetAlias.String(res.TargetAlias),
	))
	if err != nil {
		return nil, nil, fmt.Errorf("telemetry.tracing: build resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(time.Second)),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SampleRatio))),
		sdktrace.WithResource(r),
	)
	return tp, tp.Shutdown, nil
}

func newExporter(ctx context.Context, cfg TracingConfig) (*otlptrace.Exporter, error) {
	isURL := strings.Contains(cfg.Endpoint, "://")
	var exp *otlptrace.Exporter
	var err error
	switch cfg.Protocol {
	case "grpc", "":
		opts := []otlptracegrpc.Option{}
		if isURL {
			opts = append(opts, otlptracegrpc.WithEndpointURL(cfg.Endpoint))
		} else {
			opts = append(opts, otlptracegrpc.WithEndpoint(cfg.Endpoint))
			if cfg.Insecure {
				opts = append(opts, otlptracegrpc.WithInsecure())
			}
		}
		exp, err = otlptracegrpc.New(ctx, opts...)
	case "http":
		opts := []otlptracehttp.Option{}
		if isURL {
			opts = append(opts, otlptracehttp.WithEndpointURL(cfg.Endpoint))
		} else {
			opts = append(opts, otlptracehttp.WithEndpoint(cfg.Endpoint))
			if cfg.Insecure {
				opts = append(opts, otlptracehttp.WithInsecure())
			}
		}
		exp, err = otlptracehttp.New(ctx, opts...)
	default:
		return nil, fmt.Errorf("telemetry.tracing.protocol %q: want grpc or http", cfg.Protocol)
	}
	if err != nil {
		return nil, fmt.Errorf("telemetry.tracing: OTLP %s exporter to %s: %w", cfg.Protocol, cfg.Endpoint, err)
	}
	return exp, nil
}

// Tracing is what the data path needs to trace: kmirror's tracer, whether tracing is on at all,
// and W3C trace-context propagation through record headers.
//
// The zero value is valid and off. The data path checks Enabled once per record before doing
// anything else, so with tracing off a record costs one predictable branch.
type Tracing struct {
	// Tracer starts kmirror's spans; a no-op tracer when tracing is off.
	Tracer trace.Tracer
	// Enabled is false when tracing is off: the data path then skips tracing entirely.
	Enabled bool
	// PropagateToTarget rewrites the trace-context headers of a traced record's copy (Inject)
	// so that a consumer of the target continues kmirror's span. It is off unless asked for:
	// the rewrite collapses duplicate traceparent/tracestate headers and lower-cases their
	// keys, so the copy's headers are no longer the source's, byte for byte.
	PropagateToTarget bool

	propagator propagation.TraceContext
	shutdown   func(context.Context) error
}

// NewTracing builds the process's Tracing from NewTracerProvider. With no endpoint it is off.
func NewTracing(ctx context.Context, cfg TracingConfig, res ResourceInfo) (*Tracing, error) {
	tp, shutdown, err := NewTracerProvider(ctx, cfg, res)
	if err != nil {
		return nil, err
	}
	return &Tracing{
		Tracer:            tp.Tracer(instrumentationName),
		Enabled:           cfg.Endpoint != "",
		PropagateToTarget: cfg.PropagateToTarget,
		shutdown:          shutdown,
	}, nil
}

// TracingWith wraps an existing tracer provider (an in-memory one in tests, or one an embedding
// program already configured). Tracing is on, PropagateToTarget off; the caller owns the
// provider's shutdown.
func TracingWith(tp trace.TracerProvider) *Tracing {
	return &Tracing{Tracer: tp.Tracer(instrumentationName), Enabled: true}
}

// Shutdown flushes the spans still buffered and stops the exporter. It does nothing when tracing
// is off or the provider belongs to the caller (TracingWith).
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil || t.shutdown == nil {
		return nil
	}
	return t.shutdown(ctx)
}

// Extract returns ctx carrying the remote span context found in a consumed record's W3C
// traceparent/tracestate headers; without a valid traceparent, ctx is returned as it is and a
// span started from it is a new root.
func (t *Tracing) Extract(ctx context.Context, headers []*sarama.RecordHeader) context.Context {
	return t.propagator.Extract(ctx, ConsumerHeaders(headers))
}

// Inject writes the span context of ctx into a produced record's headers as traceparent (and
// tracestate when there is one), replacing headers of those names rather than adding a second
// one; a stale tracestate is removed when the new context has none. Without a valid span context
// in ctx the headers are left unchanged.
func (t *Tracing) Inject(ctx context.Context, headers *[]sarama.RecordHeader) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return
	}
	h := (*ProducerHeaders)(headers)
	if sc.TraceState().Len() == 0 {
		h.Delete(tracestateHeader)
	}
	t.propagator.Inject(ctx, h)
}

const (
	traceparentHeader = "traceparent"
	tracestateHeader  = "tracestate"
)

// ConsumerHeaders adapts a consumed record's headers (sarama.ConsumerMessage.Headers) to
// propagation.TextMapCarrier, read-only. Keys match case-insensitively, as W3C trace context asks
// of HTTP headers; Kafka header keys are case-sensitive, but a producer writing "Traceparent"
// still means the same thing.
type ConsumerHeaders []*sarama.RecordHeader

var _ propagation.TextMapCarrier = ConsumerHeaders(nil)

// Get returns the value of the first header named key, or "".
func (h ConsumerHeaders) Get(key string) string {
	for _, x := range h {
		if x != nil && keyIs(x.Key, key) {
			return string(x.Value)
		}
	}
	return ""
}

// Set does nothing: a consumed record is never modified.
func (h ConsumerHeaders) Set(string, string) {}

// Keys returns the header keys.
func (h ConsumerHeaders) Keys() []string {
	out := make([]string, 0, len(h))
	for _, x := range h {
		if x != nil {
			out = append(out, string(x.Key))
		}
	}
	return out
}

// ProducerHeaders adapts a record's outgoing headers (sarama.ProducerMessage.Headers) to
// propagation.TextMapCarrier. Use it through a pointer to the message's slice,
// (*ProducerHeaders)(&msg.Headers), which converts without allocating.
//
// Set replaces a header of the same key (case-insensitively) rather than adding one, and drops
// any further duplicates, so a mirrored record never carries two traceparents: a consumer on the
// target would otherwise pick one at random.
type ProducerHeaders []sarama.RecordHeader

var _ propagation.TextMapCarrier = (*ProducerHeaders)(nil)

// Get returns the value of the first header named key, or "".
func (h *ProducerHeaders) Get(key string) string {
	for _, x := range *h {
		if keyIs(x.Key, key) {
			return string(x.Value)
		}
	}
	return ""
}

// Set writes key=value, replacing the first header named key and removing any others.
func (h *ProducerHeaders) Set(key, value string) {
	hs := *h
	for i := range hs {
		if keyIs(hs[i].Key, key) {
			// A new RecordHeader, not a write into the old Value: the old bytes may be shared with
			// the consumed record.
			hs[i] = sarama.RecordHeader{Key: []byte(key), Value: []byte(value)}
			*h = append(hs[:i+1], deleteKey(hs[i+1:], key)...)
			return
		}
	}
	*h = append(hs, sarama.RecordHeader{Key: []byte(key), Value: []byte(value)})
}

// Delete removes every header named key.
func (h *ProducerHeaders) Delete(key string) {
	*h = deleteKey(*h, key)
}

// Keys returns the header keys.
func (h *ProducerHeaders) Keys() []string {
	out := make([]string, len(*h))
	for i, x := range *h {
		out[i] = string(x.Key)
	}
	return out
}

// deleteKey removes the headers named key in place, keeping the order of the others.
func deleteKey(hs []sarama.RecordHeader, key string) []sarama.RecordHeader {
	out := hs[:0]
	for _, x := range hs {
		if !keyIs(x.Key, key) {
			out = append(out, x)
		}
	}
	clear(hs[len(out):]) // drop references to the removed headers' bytes
	return out
}

// HasTraceparent reports whether a consumed record carries a W3C traceparent header. It allocates
// nothing, so the data path can skip extraction for records that carry no trace.
func HasTraceparent(headers []*sarama.RecordHeader) bool {
	for _, x := range headers {
		if x != nil && keyIs(x.Key, traceparentHeader) {
			return true
		}
	}
	return false
}

// keyIs compares a header key with an ASCII name, ignoring case, without allocating.
func keyIs(k []byte, name string) bool {
	if len(k) != len(name) {
		return false
	}
	for i := range k {
		a, b := k[i], name[i]
		if a == b {
			continue
		}
		if la := a | 0x20; la != b|0x20 || la < 'a' || la > 'z' {
			return false
		}
	}
	return true
}
