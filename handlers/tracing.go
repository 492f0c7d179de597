package handlers

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/fitiqcore/outbox"
)

// The handling spans (see the package doc, Tracing): process gives the
// handler's ctx the event's trace context, and with WithTracerProvider
// starts the span before the routing and ends it when the handler has
// returned, before the ack, nak or dead letter, which do not change.

// tracerName is the instrumentation scope of the Router's spans.
const tracerName = "github.com/fitiqcore/outbox/handlers"

// The outbox's own span attributes (the messaging ones are semconv's).
const (
	attrEventType   = attribute.Key("outbox.event_type")     // the event's type
	attrEntitySeq   = attribute.Key("outbox.entity_seq")     // the event's place in its entity, when it has one
	attrDeliveries  = attribute.Key("outbox.delivery_count") // Delivery.NumDelivered: 1 on the first delivery
	attrMaxAttempts = attribute.Key("outbox.max_attempts")   // Delivery.MaxAttempts
	attrStreamSeq   = attribute.Key("outbox.stream_seq")     // Delivery.StreamSeq
	attrOutcome     = attribute.Key("outbox.outcome")        // ack, retry, dead_letter or released (see Outcome)
)

// The span attributes every handling has.
var (
	attrSystem    = semconv.MessagingSystemKey.String("nats")
	attrOperation = semconv.MessagingOperationName("handle")
)

// startSpan starts the span of the handling of e in d, by the durable
// consumer durable: a child of ctx's span context, the event's.
func startSpan(ctx context.Context, tr trace.Tracer, durable string, e *outbox.Event, d Delivery) (context.Context, trace.Span) {
	attrs := []attribute.KeyValue{
		attrSystem, semconv.MessagingOperationTypeProcess, attrOperation,
		semconv.MessagingConsumerGroupName(durable), semconv.MessagingDestinationName(d.Subject),
		semconv.MessagingMessageID(e.ID), semconv.MessagingMessageBodySize(len(e.Payload)),
		attrEventType.String(e.Type), attrDeliveries.Int64(int64(d.NumDelivered)),
		attrMaxAttempts.Int(d.MaxAttempts), attrStreamSeq.Int64(int64(d.StreamSeq)),
	}
	if e.EntityID != "" {
		attrs = append(attrs, attrEntitySeq.Int64(int64(e.EntitySeq)))
	}
	return tr.Start(ctx, "handle "+e.Type, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...))
}

// endSpan ends the span of a handling that returned err, which the Router
// answers with outcome.
func endSpan(span trace.Span, outcome string, err error) {
	span.SetAttributes(attrOutcome.String(outcome))
	if err == nil {
		span.SetStatus(codes.Ok, "")
	} else {
		span.SetAttributes(semconv.ErrorTypeKey.String(errorType(err)))
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// errorType is the error.type of a handling's error: no_handler, permanent,
// panic, or handler for any other error the handler returned.
func errorType(err error) string {
	switch {
	case errors.Is(err, ErrNoHandler):
		return "no_handler"
	case isPermanent(err):
		return "permanent"
	case errors.Is(err, ErrPanic):
		return "panic"
	}
	return "handler"
}
