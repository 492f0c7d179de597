package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// serviceName is the relay's service.name in the spans it exports.
const serviceName = "fitiqcore-outbox-relay"

// newTracerProvider is the OpenTelemetry SDK exporting to
// tracing.otlp_endpoint over OTLP/HTTP, in batches; nil when tracing is
// off. An endpoint without a path is a collector's base URL: the spans go
// to its /v1/traces. Sampling follows the parent: a publish is sampled when the request
// that wrote its event was, and an event without a trace context gets a
// sampled root span.
func newTracerProvider(c TracingConfig, log *slog.Logger) (*sdktrace.TracerProvider, error) {
	if c.OTLPEndpoint == "" {
		return nil, nil
	}
	endpoint := c.OTLPEndpoint
	if u, err := url.Parse(endpoint); err == nil && (u.Path == "" || u.Path == "/") {
		u.Path = "/v1/traces" // a collector's base URL, as OTEL_EXPORTER_OTLP_ENDPOINT is
		endpoint = u.String()
	}
	// The SDK reports export failures through the global handler: into
	// the relay's log.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warn("tracing: exporting spans failed", "err", err) }))
	exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(endpoint))
	if err != nil {
		return nil, fmt.Errorf("tracing.otlp_endpoint: %w", err)
	}
	return sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", serviceName))),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())),
	), nil
}

// shutdownTracing exports the spans still queued, for at most 5s.
func shutdownTracing(tp *sdktrace.TracerProvider, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := tp.Shutdown(ctx); err != nil {
		log.Warn("tracing: exporting the last spans failed", "err", err)
	}
}
