package relay_test

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/internal/natstest"
	"github.com/fitiqcore/outbox/internal/poll"
	"github.com/fitiqcore/outbox/relay"
)

// The W3C trace context of the request that wrote the events (sampled).
const (
	reqTraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	reqTraceState  = "rojo=00f067aa0ba902b7"
)

// recording returns a TracerProvider whose spans rec records, synchronously
// (no exporter goroutine), shut down at the end of the test.
func recording(t *testing.T) (*sdktrace.TracerProvider, *tracetest.SpanRecorder) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() {
		if err := tp.Shutdown(context.Background()); err != nil {
			t.Errorf("TracerProvider.Shutdown: %v", err)
		}
	})
	return tp, rec
}

// attrs returns a span's attributes by key.
func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

// TestPublishSpans runs the relay on the real store and a real JetStream:
// with a TracerProvider each publish attempt is one span in the trace of the
// request that wrote the event (its parent and its link), or a root span
// for an event without a trace context, ended with the publish's outcome;
// without one there is no span, and the trace context still reaches the
// stream as it was stored.
func TestPublishSpans(t *testing.T) {
	want, err := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	if err != nil {
		t.Fatal(err)
	}
	wantParent, err := trace.SpanIDFromHex("00f067aa0ba902b7")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		off         bool   // no TracerProvider
		typ         string // good.* types have a stream, others none
		traced      bool   // the event carries the request's trace context
		wantStatus  outbox.Status
		wantCode    codes.Code
		wantOutcome string
	}{
		{"in the request's trace", false, "good.mood.logged", true, outbox.StatusCompleted, codes.Ok, "published"},
		{"no trace context: a root span", false, "good.mood.logged", false, outbox.StatusCompleted, codes.Ok, "published"},
		{"no stream for the subject: the error ends the span", false, "bad.mood.logged", true, outbox.StatusFailed, codes.Error, "failed"},
		{"no TracerProvider: no span", true, "good.mood.logged", true, outbox.StatusCompleted, codes.Unset, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp, rec := recording(t)
			cfg := relay.Config{TracerProvider: tp}
			if tt.off {
				cfg.TracerProvider = nil
			}
			h := newHarness(t, setup{cfg: cfg})
			h.createStream("t.good.>")
			e := &outbox.Event{Type: tt.typ, EntityID: "mood-1", Priority: 4, MaxAttempts: 1, Payload: []byte(`{"score":4}`)}
			if tt.traced {
				e.TraceParent, e.TraceState = reqTraceParent, reqTraceState
			}
			h.enqueue(e)
			poll.Until(t, 10*time.Second, "the event "+string(tt.wantStatus), func() bool { return h.get(e.ID).Status == tt.wantStatus })

			spans := rec.Ended()
			if tt.off {
				if len(spans) != 0 || len(rec.Started()) != 0 {
					t.Errorf("%d spans started, %d ended without a TracerProvider, want none", len(rec.Started()), len(spans))
				}
				got := natstest.Read(t, h.js, stream)
				if len(got) != 1 || got[0].TraceParent != reqTraceParent || got[0].TraceState != reqTraceState {
					t.Errorf("the stream holds %+v, want the event with the request's trace context", got)
				}
				return
			}
			if len(spans) != 1 {
				t.Fatalf("%d spans ended, want 1 (one publish attempt)", len(spans))
			}
			s := spans[0]
			if s.Name() != "publish "+tt.typ || s.SpanKind() != trace.SpanKindProducer {
				t.Errorf("span %q of kind %s, want %q of kind producer", s.Name(), s.SpanKind(), "publish "+tt.typ)
			}
			if tt.traced {
				if s.SpanContext().TraceID() != want || s.Parent().SpanID() != wantParent || !s.Parent().IsRemote() {
					t.Errorf("span in trace %s with parent %s (remote %v), want trace %s with the request's span %s as parent",
						s.SpanContext().TraceID(), s.Parent().SpanID(), s.Parent().IsRemote(), want, wantParent)
				}
				if l := s.Links(); len(l) != 1 || l[0].SpanContext.TraceID() != want || l[0].SpanContext.SpanID() != wantParent ||
					l[0].SpanContext.TraceState().String() != reqTraceState {
					t.Errorf("links %+v, want one to the request's span %s in trace %s (tracestate %s)", l, wantParent, want, reqTraceState)
				}
			} else if s.Parent().IsValid() || len(s.Links()) != 0 || s.SpanContext().TraceID() == want {
				t.Errorf("span with parent %v, links %v, trace %s: want a root span of its own", s.Parent(), s.Links(), s.SpanContext().TraceID())
			}
			if st := s.Status(); st.Code != tt.wantCode {
				t.Errorf("status %s (%q), want %s", st.Code, st.Description, tt.wantCode)
			}
			a := attrs(s)
			for k, v := range map[attribute.Key]attribute.Value{
				"messaging.system":            attribute.StringValue("nats"),
				"messaging.operation.type":    attribute.StringValue("send"),
				"messaging.operation.name":    attribute.StringValue("publish"),
				"messaging.message.id":        attribute.StringValue(e.ID),
				"messaging.message.body.size": attribute.IntValue(len(e.Payload)),
				"outbox.event_type":           attribute.StringValue(tt.typ),
				"outbox.attempt":              attribute.IntValue(1),
				"outbox.max_attempts":         attribute.IntValue(1),
				"outbox.entity_seq":           attribute.Int64Value(1),
				"outbox.priority":             attribute.IntValue(4),
				"outbox.outcome":              attribute.StringValue(tt.wantOutcome),
			} {
				if a[k] != v {
					t.Errorf("attribute %s = %v, want %v", k, a[k].Emit(), v.Emit())
				}
			}
			if tt.wantCode == codes.Error {
				if a["error.type"] != attribute.StringValue("rejected") || a["outbox.unknown_outcome"] != attribute.BoolValue(false) {
					t.Errorf("error.type %q, outbox.unknown_outcome %v, want rejected, false", a["error.type"].Emit(), a["outbox.unknown_outcome"].Emit())
				}
				if ev := s.Events(); len(ev) != 1 || ev[0].Name != "exception" {
					t.Errorf("span events %+v, want the error recorded", ev)
				}
			}
		})
	}
}

// TestPublishSpansAlwaysEnd: every span the relay starts ends, also when
// the relay gives up on a publish's answer (the drain at shutdown timed out)
// or cannot record its outcome (the store failed and stopped the relay).
func TestPublishSpansAlwaysEnd(t *testing.T) {
	tests := []struct {
		name        string
		answer      answer
		failAfter   int // the store's Record fails after so many calls (the first records the start-up mark)
		wantOutcome map[string]bool
	}{
		{"the drain timed out", answer{hold: true}, 0, map[string]bool{"abandoned": true}},
		{"the store cannot record", ackIt, 1, map[string]bool{"published": true, "unrecorded": true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp, rec := recording(t)
			pub := newFakePublisher(nil, func(*outbox.Event, int) answer { return tt.answer })
			defer pub.release() // answers nobody reads: the channels are buffered
			store := newFakeStore(nil)
			store.failAfter = tt.failAfter
			if _, err := store.Enqueue(context.Background(), eachOwnEntity("traced", 50)...); err != nil {
				t.Fatal(err)
			}
			r, err := relay.New(store, pub, relay.Config{BatchSize: 10, DrainTimeout: 100 * time.Millisecond, TracerProvider: tp})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx) }()
			if tt.failAfter == 0 {
				poll.Until(t, 5*time.Second, "50 publishes unanswered", func() bool { return len(pub.sent("")) == 50 })
				cancel()
			}
			select {
			case err := <-done:
				if (err != nil) != (tt.failAfter != 0) {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("Run did not return")
			}
			started, ended := rec.Started(), rec.Ended()
			if len(started) == 0 || len(ended) != len(started) || len(started) != len(pub.sent("")) {
				t.Fatalf("%d publishes, %d spans started, %d ended: want one span per publish, every one ended",
					len(pub.sent("")), len(started), len(ended))
			}
			for _, s := range ended {
				a := attrs(s)
				o := a["outbox.outcome"].AsString()
				if !tt.wantOutcome[o] {
					t.Errorf("span %s ended with outcome %q, want one of %v", s.Name(), o, tt.wantOutcome)
				}
				if o == "abandoned" && (s.Status().Code != codes.Error || a["outbox.unknown_outcome"] != attribute.BoolValue(true) ||
					a["error.type"] != attribute.StringValue("unknown_outcome")) {
					t.Errorf("abandoned span: status %s, unknown %v, error.type %v: want an error of unknown outcome",
						s.Status().Code, a["outbox.unknown_outcome"].Emit(), a["error.type"].Emit())
				}
			}
		})
	}
}

// TestTracingOffCostsNothing: without a TracerProvider the relay's part of
// a publish in tracing (starting and ending its span) allocates nothing.
func TestTracingOffCostsNothing(t *testing.T) {
	e := &outbox.Event{ID: "0190a5b4-7c2e-7b8a-9c3d-4e5f60718293", Type: "mood.logged", EntityID: "m-1", EntitySeq: 1,
		TraceParent: reqTraceParent, MaxAttempts: 5}
	tp, _ := recording(t)
	for _, tt := range []struct {
		name string
		tp   trace.TracerProvider
		zero bool
	}{
		{"off", nil, true},
		{"on", tp, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, err := relay.New(newFakeStore(nil), newFakePublisher(nil, nil), relay.Config{TracerProvider: tt.tp})
			if err != nil {
				t.Fatal(err)
			}
			allocs := testing.AllocsPerRun(100, func() { relay.TracePublish(r, e) })
			switch {
			case tt.zero && allocs != 0:
				t.Errorf("%v allocations per publish with tracing off, want none", allocs)
			case !tt.zero && allocs == 0:
				t.Error("no allocation per publish with tracing on: the measure misses the spans")
			}
		})
	}
}
