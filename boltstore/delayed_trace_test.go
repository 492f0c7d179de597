package boltstore_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
	"go.opentelemetry.io/otel/trace"
)

// A delayed event is pending from its deliver_at: it is not stale, and does
// not make the outbox "full" by max_pending_age, while it waits (found in
// review: with max_pending_age 1h, one event delayed a day refused every
// post after an hour).
func TestDelayedEventIsNeitherStaleNorOld(t *testing.T) {
	clk := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	now := func() time.Time { return clk }
	s := mustOpen(t, &boltstore.Options{Now: now, StaleAfter: time.Minute, MaxPendingAge: time.Hour})
	ctx := context.Background()
	delayed := &outbox.Event{Type: "reminder.due", EntityID: "r-1", DeliverAt: clk.Add(24 * time.Hour)}
	if _, err := s.Enqueue(ctx, delayed); err != nil {
		t.Fatal(err)
	}
	clk = clk.Add(2 * time.Hour)
	if _, err := s.Enqueue(ctx, &outbox.Event{Type: "mood.logged"}); err != nil {
		t.Fatalf("an event delayed a day made the outbox full: %v", err)
	}
	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Stale != 0 || st.HasIssues {
		t.Errorf("stats %+v: the delayed event counts as stale", st)
	}
	// Past its time and past stale_after, it is stale like any other.
	clk = clk.Add(23 * time.Hour)
	if _, err := s.SweepOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if st, _ = s.Stats(ctx); st.Stale != 2 {
		t.Errorf("%d stale an hour past the deliver_at, want 2", st.Stale)
	}
	if err := checkInvariants(s); err != nil {
		t.Fatal(err)
	}
}

// Enqueue takes the trace context of ctx's span; a tracestate over
// outbox.MaxTraceStateLen (OpenTelemetry allows 32 members) is dropped and
// the traceparent kept, rather than failing the caller's enqueue.
func TestEnqueueTakesTheSpansTraceContext(t *testing.T) {
	s := mustOpen(t, nil)
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	for _, tt := range []struct {
		name, state, want string
	}{
		{"short tracestate", "rojo=00f067aa0ba902b7", "rojo=00f067aa0ba902b7"},
		{"long tracestate", strings.Repeat("v", 250), ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var members []string
			if tt.name == "long tracestate" {
				for i := range 4 {
					members = append(members, fmt.Sprintf("k%d=%s", i, tt.state))
				}
			} else {
				members = []string{tt.state}
			}
			ts, err := trace.ParseTraceState(strings.Join(members, ","))
			if err != nil {
				t.Fatal(err)
			}
			ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
				TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, TraceState: ts}))
			e := &outbox.Event{Type: "mood.logged"}
			if _, err := s.Enqueue(ctx, e); err != nil {
				t.Fatal(err)
			}
			if e.TraceParent != "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" || e.TraceState != tt.want {
				t.Errorf("stored %q %q, want tracestate %q", e.TraceParent, e.TraceState, tt.want)
			}
		})
	}
}
