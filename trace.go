package outbox

import (
	"context"
	"strings"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// The W3C trace context (https://www.w3.org/TR/trace-context/) of an event:
// captured from the writer's span when it is enqueued (TraceFromContext, or
// the HTTP request's traceparent and tracestate headers), stored with it,
// published as ce-traceparent and ce-tracestate, and restored into a
// subscriber's ctx (Event.TraceContext), so that one trace shows the request
// that wrote the event, its publish and its handling.

// The CloudEvents distributed-tracing extension's attributes, in NATS binary
// mode.
const (
	HeaderTraceParent = "ce-traceparent"
	HeaderTraceState  = "ce-tracestate"
	// HeaderDeliverAt carries deliver_at (RFC 3339) when the event was
	// delayed.
	HeaderDeliverAt = "ce-deliverat"
)

var w3c propagation.TraceContext

// TraceFromContext returns the W3C trace context of ctx's span (empty when
// ctx carries no valid span context): what Enqueue stores for events that
// carry none of their own. An application that enqueues with EnqueueTx
// sets e.TraceParent, e.TraceState from it.
func TraceFromContext(ctx context.Context) (traceparent, tracestate string) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return "", ""
	}
	c := propagation.MapCarrier{}
	w3c.Inject(ctx, c)
	return c["traceparent"], c["tracestate"]
}

// TraceContext returns ctx with e's trace context as its remote span context
// (a span started from it is a child of the span that wrote the event); ctx
// itself when e has none or it does not parse.
func (e *Event) TraceContext(ctx context.Context) context.Context {
	if e.TraceParent == "" {
		return ctx
	}
	c := propagation.MapCarrier{"traceparent": e.TraceParent}
	if e.TraceState != "" {
		c["tracestate"] = e.TraceState
	}
	return w3c.Extract(ctx, c)
}

// ReceivedTraceContext is what a receiver keeps of a trace context it was
// handed (a request's headers, a caller's span), as W3C asks: nothing when
// the traceparent does not parse, the traceparent alone when only the
// tracestate does not (too long, or bytes a header cannot carry).
func ReceivedTraceContext(traceparent, tracestate string) (string, string) {
	if ValidateTraceContext(traceparent, "") != nil {
		return "", ""
	}
	if ValidateTraceContext(traceparent, tracestate) != nil {
		return traceparent, ""
	}
	return traceparent, tracestate
}

// ValidateTraceContext checks a traceparent (version 00 form: 2 hex digits,
// a 32-digit trace id, a 16-digit parent id and 2 digits of flags, lower
// case, neither id all zeros, version not ff) and a tracestate (at most
// MaxTraceStateLen bytes of printable ASCII, no white space at either end,
// only with a traceparent). Both may be empty.
func ValidateTraceContext(traceparent, tracestate string) error {
	if traceparent == "" {
		if tracestate != "" {
			return invalid("tracestate", "given without a traceparent")
		}
		return nil
	}
	if reason := badTraceParent(traceparent); reason != "" {
		return invalid("traceparent", "%q is not a W3C traceparent: %s", traceparent, reason)
	}
	switch {
	case len(tracestate) > MaxTraceStateLen:
		return invalid("tracestate", "%d bytes, at most %d", len(tracestate), MaxTraceStateLen)
	case tracestate != strings.TrimSpace(tracestate):
		return invalid("tracestate", "white space at either end (a header value loses it)")
	}
	for i := 0; i < len(tracestate); i++ {
		if c := tracestate[i]; c < 0x20 || c > 0x7e {
			return invalid("tracestate", "byte %#02x not allowed (printable ASCII)", c)
		}
	}
	return nil
}

func badTraceParent(s string) string {
	if len(s) != 55 || s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return "want 00-<32 hex>-<16 hex>-<2 hex>"
	}
	for i := 0; i < len(s); i++ {
		if i == 2 || i == 35 || i == 52 {
			continue
		}
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return "lower-case hex digits only"
		}
	}
	switch {
	case s[:2] == "ff":
		return "version ff is invalid"
	case s[3:35] == strings.Repeat("0", 32):
		return "the trace id is all zeros"
	case s[36:52] == strings.Repeat("0", 16):
		return "the parent id is all zeros"
	}
	return ""
}
