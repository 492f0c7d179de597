package relay

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/fitiqcore/outbox"
)

// The publish spans (see the package doc, Tracing). Without a
// TracerProvider r.tracer is nil, and the reader, the waiter and the
// completer test that before anything else: tracing off costs one nil check
// per publish, no allocation.

// tracerName is the instrumentation scope of the relay's spans.
const tracerName = "github.com/fitiqcore/outbox/relay"

// The outbox's own span attributes (the messaging ones are semconv's).
const (
	attrAttempt     = attribute.Key("outbox.attempt")      // 1-based attempt of this publish
	attrMaxAttempts = attribute.Key("outbox.max_attempts") // the event's max_attempts
	attrEventType   = attribute.Key("outbox.event_type")   // the event's type
	attrEntitySeq   = attribute.Key("outbox.entity_seq")   // the event's place in its entity, when it has one
	attrPriority    = attribute.Key("outbox.priority")     // 0..9
	// attrOutcome is what the relay made of the answer: published,
	// retried, failed, unavailable (Kind's words), abandoned (no answer
	// came before the drain at shutdown timed out) or unrecorded (the store
	// failed before the outcome could be recorded).
	attrOutcome   = attribute.Key("outbox.outcome")
	attrDuplicate = attribute.Key("outbox.duplicate")       // the ack said the stream held it already
	attrUnknown   = attribute.Key("outbox.unknown_outcome") // the stream may hold the event (Outcome.Unknown)
)

// The span attributes every publish has.
var (
	attrSystem    = semconv.MessagingSystemKey.String("nats")
	attrOperation = semconv.MessagingOperationName("publish")
)

func newTracer(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		return nil
	}
	return tp.Tracer(tracerName, trace.WithSchemaURL(semconv.SchemaURL))
}

// startSpan starts the span of the attempt-th publish of e; nil without a
// TracerProvider.
func (r *Relay) startSpan(e *outbox.Event, attempt int) trace.Span {
	if r.tracer == nil {
		return nil
	}
	ctx := e.TraceContext(context.Background())
	attrs := []attribute.KeyValue{
		attrSystem, semconv.MessagingOperationTypeSend, attrOperation,
		semconv.MessagingMessageID(e.ID), semconv.MessagingMessageBodySize(len(e.Payload)),
		attrEventType.String(e.Type), attrAttempt.Int(attempt), attrMaxAttempts.Int(e.MaxAttempts),
		attrPriority.Int(e.Priority),
	}
	if e.EntityID != "" {
		attrs = append(attrs, attrEntitySeq.Int64(int64(e.EntitySeq)))
	}
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(attrs...)}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc}))
	}
	_, span := r.tracer.Start(ctx, "publish "+e.Type, opts...)
	return span
}

// endSpan ends the span of a publish with its outcome. A nil span (no
// TracerProvider) is left alone.
func endSpan(span trace.Span, o Outcome) {
	if span == nil {
		return
	}
	span.SetAttributes(attrOutcome.String(o.Kind.String()))
	if o.Kind == Published {
		if o.Duplicate {
			span.SetAttributes(attrDuplicate.Bool(true))
		}
		span.SetStatus(codes.Ok, "")
		span.End()
		return
	}
	endFailed(span, o.Err, o.Unknown)
}

// endUnanswered ends the span of a publish whose outcome the relay does not
// record: outcome is abandoned (no answer came before the relay stopped
// waiting) or unrecorded (the store failed), err what the publish got back
// (nil for an ack: the publish itself succeeded).
func endUnanswered(span trace.Span, outcome string, err error) {
	if span == nil {
		return
	}
	span.SetAttributes(attrOutcome.String(outcome))
	if err == nil {
		span.SetStatus(codes.Ok, "")
		span.End()
		return
	}
	endFailed(span, err, errors.Is(err, outbox.ErrUnknownOutcome))
}

func endFailed(span trace.Span, err error, unknown bool) {
	span.SetAttributes(semconv.ErrorTypeKey.String(errorType(err)), attrUnknown.Bool(unknown))
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
	span.End()
}

// errorType is the error.type of a publish error: the classification it
// wraps, as the publisher's Classify gave it.
func errorType(err error) string {
	switch {
	case errors.Is(err, outbox.ErrUnavailable):
		return "unavailable"
	case errors.Is(err, outbox.ErrPermanent):
		return "permanent"
	case errors.Is(err, outbox.ErrUnknownOutcome):
		return "unknown_outcome"
	case errors.Is(err, outbox.ErrRejected):
		return "rejected"
	}
	return "_OTHER" // the conventions' value for an error of no known type
}

// errAbandoned is the error of a publish whose answer the relay stopped
// waiting for at shutdown.
var errAbandoned = fmt.Errorf("relay: no answer before the drain timed out: %w", outbox.ErrUnknownOutcome)
