package outbox_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"go.opentelemetry.io/otel/trace"
)

const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

func TestValidateTraceContext(t *testing.T) {
	for _, tt := range []struct {
		name, parent, state, field string
	}{
		{"none", "", "", ""},
		{"parent", parent, "", ""},
		{"parent and state", parent, "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7", ""},
		{"state alone", "", "congo=t61rcWkgMzE", "tracestate"},
		{"short", parent[:54], "", "traceparent"},
		{"upper case", strings.ToUpper(parent), "", "traceparent"},
		{"version ff", "ff" + parent[2:], "", "traceparent"},
		{"zero trace id", "00-" + strings.Repeat("0", 32) + parent[35:], "", "traceparent"},
		{"zero parent id", parent[:36] + strings.Repeat("0", 16) + parent[52:], "", "traceparent"},
		{"state too long", parent, strings.Repeat("a", outbox.MaxTraceStateLen+1), "tracestate"},
		{"state with a space at its end", parent, "a=b ", "tracestate"},
		{"state with a control byte", parent, "a=\x01", "tracestate"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := outbox.ValidateTraceContext(tt.parent, tt.state)
			if tt.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ve *outbox.ValidationError
			if !errors.As(err, &ve) || ve.Field != tt.field {
				t.Fatalf("got %v, want an error naming %s", err, tt.field)
			}
		})
	}
}

// The trace context captured from a span comes back as the remote parent of
// a subscriber's ctx: same trace id, the writer's span as parent.
func TestTraceContextRoundTrip(t *testing.T) {
	if p, s := outbox.TraceFromContext(context.Background()); p != "" || s != "" {
		t.Fatalf("no span, got %q %q", p, s)
	}
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ts, _ := trace.ParseTraceState("rojo=00f067aa0ba902b7")
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, TraceState: ts})
	ctx := trace.ContextWithSpanContext(context.Background(), sc)
	e := &outbox.Event{}
	e.TraceParent, e.TraceState = outbox.TraceFromContext(ctx)
	if e.TraceParent != parent || e.TraceState != "rojo=00f067aa0ba902b7" {
		t.Fatalf("got %q %q", e.TraceParent, e.TraceState)
	}
	got := trace.SpanContextFromContext(e.TraceContext(context.Background()))
	if !got.IsRemote() || got.TraceID() != tid || got.SpanID() != sid || !got.IsSampled() || got.TraceState().String() != ts.String() {
		t.Fatalf("restored %+v", got)
	}
	// The message carries it.
	e.ID, e.Type, e.CreatedAt = "0190c5f4-8f0e-7c00-8000-000000000001", "mood.logged", time.Now()
	m := e.Message("outbox", "", 1, nil)
	back, err := outbox.FromMessage(m.Header, m.Data)
	if err != nil {
		t.Fatal(err)
	}
	if back.TraceParent != e.TraceParent || back.TraceState != e.TraceState ||
		m.Header.Get(outbox.HeaderTraceParent) != parent || m.Header.Get(outbox.HeaderTraceState) != e.TraceState {
		t.Fatalf("message headers %v", m.Header)
	}
}

func TestDeliverAt(t *testing.T) {
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	o := outbox.Options{Now: func() time.Time { return now }}
	for _, tt := range []struct {
		name string
		at   time.Time
		want time.Time // after Prepare
		bad  bool
	}{
		{"none", time.Time{}, time.Time{}, false},
		{"in an hour", now.Add(time.Hour), now.Add(time.Hour), false},
		{"366 days ahead", now.Add(outbox.MaxDeliverAhead), now.Add(outbox.MaxDeliverAhead), false},
		{"past 366 days", now.Add(outbox.MaxDeliverAhead + time.Second), time.Time{}, true},
		{"an hour ago: kept, means now", now.Add(-time.Hour), now.Add(-time.Hour), false},
		{"year 1: none", time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), time.Time{}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := &outbox.Event{Type: "reminder.due", DeliverAt: tt.at}
			err := e.Prepare(o)
			if tt.bad {
				var ve *outbox.ValidationError
				if !errors.As(err, &ve) || ve.Field != "deliver_at" {
					t.Fatalf("got %v, want an error naming deliver_at", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !e.DeliverAt.Equal(tt.want) {
				t.Fatalf("deliver_at %s, want %s", e.DeliverAt, tt.want)
			}
			m := e.Message("outbox", "", 1, nil)
			back, err := outbox.FromMessage(m.Header, m.Data)
			if err != nil {
				t.Fatal(err)
			}
			if !back.DeliverAt.Equal(e.DeliverAt) || (e.DeliverAt.IsZero() != (m.Header.Get(outbox.HeaderDeliverAt) == "")) {
				t.Fatalf("ce-deliverat %q, decoded %s", m.Header.Get(outbox.HeaderDeliverAt), back.DeliverAt)
			}
		})
	}
}

func TestReceivedTraceContext(t *testing.T) {
	for _, tt := range []struct{ parent, state, wantParent, wantState string }{
		{parent, "a=b", parent, "a=b"},
		{parent, strings.Repeat("a", outbox.MaxTraceStateLen+1), parent, ""},
		{parent, "a=\x01", parent, ""},
		{"00-nothex", "a=b", "", ""},
		{"", "a=b", "", ""},
	} {
		p, s := outbox.ReceivedTraceContext(tt.parent, tt.state)
		if p != tt.wantParent || s != tt.wantState {
			t.Errorf("ReceivedTraceContext(%q, %.10q) = %q, %q; want %q, %q", tt.parent, tt.state, p, s, tt.wantParent, tt.wantState)
		}
	}
}
