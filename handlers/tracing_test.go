package handlers_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fitiqcore/outbox/internal/natstest"
	"github.com/fitiqcore/outbox/internal/poll"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
	"github.com/fitiqcore/outbox/handlers"
	"github.com/fitiqcore/outbox/httpapi"
	"github.com/fitiqcore/outbox/publisher"
	"github.com/fitiqcore/outbox/relay"
)

// The W3C trace context of the request that wrote the events (sampled).
const reqTraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

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

// spanNamed returns the ended span of that name, if there is one.
func spanNamed(rec *tracetest.SpanRecorder, name string) sdktrace.ReadOnlySpan {
	for _, s := range rec.Ended() {
		if s.Name() == name {
			return s
		}
	}
	return nil
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

// spanContexts records the span context of each ctx a handler was given.
type spanContexts struct {
	mu  sync.Mutex
	got []trace.SpanContext
}

func (c *spanContexts) add(ctx context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, trace.SpanContextFromContext(ctx))
}

func (c *spanContexts) all() []trace.SpanContext {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]trace.SpanContext(nil), c.got...)
}

// TestHandlerSpans: the handler's ctx carries the event's trace context,
// with or without a TracerProvider; with one, each handling is a Consumer
// span, a child of the event's trace context (or a root span for an event
// without one), in which the handler runs, ended with its error and the
// outcome the Router gives the message.
func TestHandlerSpans(t *testing.T) {
	reqTrace, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	reqSpan, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	tests := []struct {
		name        string
		off         bool // no WithTracerProvider
		traced      bool // the event carries a trace context
		err         error
		wantCode    codes.Code
		wantOutcome string
	}{
		{"no TracerProvider: the ctx carries the event's trace", true, true, nil, codes.Unset, ""},
		{"a child of the event's trace", false, true, nil, codes.Ok, handlers.OutcomeAck},
		{"no trace context: a root span", false, false, nil, codes.Ok, handlers.OutcomeAck},
		{"the handler's error ends the span", false, true, handlers.Permanent(errBoom), codes.Error, handlers.OutcomeDeadLetter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp, rec := recording(t)
			v := newEnv(t, false)
			var opts []handlers.Option
			if !tt.off {
				opts = append(opts, handlers.WithTracerProvider(tp))
			}
			r := v.router("traced", opts...)
			var seen spanContexts
			r.HandleFunc("mood.logged", func(ctx context.Context, e *outbox.Event) error {
				seen.add(ctx)
				return tt.err
			})
			v.start(r, "traced")
			e := event(t, "mood.logged", "user-1", 3)
			if tt.traced {
				e.TraceParent = reqTraceParent
			}
			v.publish(e)
			poll.Until(t, 10*time.Second, "the event handled", func() bool { return len(seen.all()) == 1 })
			v.settled("traced", 10*time.Second)
			sc := seen.all()[0]

			if tt.off {
				if !sc.IsValid() || !sc.IsRemote() || sc.TraceID() != reqTrace || sc.SpanID() != reqSpan {
					t.Errorf("the handler's ctx has span context %+v, want the event's (remote, trace %s, span %s)", sc, reqTrace, reqSpan)
				}
				if n := len(rec.Started()); n != 0 {
					t.Errorf("%d spans started without a TracerProvider", n)
				}
				return
			}
			poll.Until(t, 5*time.Second, "the handle span ended", func() bool { return spanNamed(rec, "handle mood.logged") != nil })
			s := spanNamed(rec, "handle mood.logged")
			if n := len(rec.Ended()); n != 1 {
				t.Errorf("%d spans, want 1", n)
			}
			if s.SpanKind() != trace.SpanKindConsumer {
				t.Errorf("span kind %s, want consumer", s.SpanKind())
			}
			if !sc.Equal(s.SpanContext()) {
				t.Errorf("the handler ran in span %s, want the handle span %s", sc.SpanID(), s.SpanContext().SpanID())
			}
			if tt.traced {
				if s.SpanContext().TraceID() != reqTrace || s.Parent().SpanID() != reqSpan || !s.Parent().IsRemote() {
					t.Errorf("span in trace %s with parent %s, want trace %s with parent %s (remote)",
						s.SpanContext().TraceID(), s.Parent().SpanID(), reqTrace, reqSpan)
				}
			} else if s.Parent().IsValid() {
				t.Errorf("span with parent %s, want a root span", s.Parent().SpanID())
			}
			if st := s.Status(); st.Code != tt.wantCode {
				t.Errorf("status %s (%q), want %s", st.Code, st.Description, tt.wantCode)
			}
			a := attrs(s)
			for k, want := range map[attribute.Key]attribute.Value{
				"messaging.system":              attribute.StringValue("nats"),
				"messaging.operation.type":      attribute.StringValue("process"),
				"messaging.operation.name":      attribute.StringValue("handle"),
				"messaging.consumer.group.name": attribute.StringValue("traced"),
				"messaging.destination.name":    attribute.StringValue(prefix + ".mood.logged"),
				"messaging.message.id":          attribute.StringValue(e.ID),
				"messaging.message.body.size":   attribute.IntValue(len(e.Payload)),
				"outbox.event_type":             attribute.StringValue("mood.logged"),
				"outbox.entity_seq":             attribute.Int64Value(3),
				"outbox.delivery_count":         attribute.Int64Value(1),
				"outbox.outcome":                attribute.StringValue(tt.wantOutcome),
			} {
				if a[k] != want {
					t.Errorf("attribute %s = %v, want %v", k, a[k].Emit(), want.Emit())
				}
			}
			if tt.err != nil {
				if a["error.type"] != attribute.StringValue("permanent") {
					t.Errorf("error.type %q, want permanent", a["error.type"].Emit())
				}
				if ev := s.Events(); len(ev) != 1 || ev[0].Name != "exception" {
					t.Errorf("span events %+v, want the error recorded", ev)
				}
			}
		})
	}
}

// TestTraceFromRequestToHandler is the trace the issue asks for, across
// the real parts: a client's request span, its traceparent sent to the HTTP
// API, the event stored with it in the bbolt store, published by the relay
// to JetStream and handled by a Router. One trace holds the request, the
// publish and the handling; the publish and the handling are children of
// the request (the message carries the event's trace context), and the
// handler runs in the handle span.
func TestTraceFromRequestToHandler(t *testing.T) {
	tp, rec := recording(t)
	const durable = "mood-service"

	ns := natstest.Start(t)
	nc, js := ns.Connect(t)
	store, err := boltstore.Open(filepath.Join(t.TempDir(), "outbox.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	api := httptest.NewServer(httpapi.New(store, httpapi.Options{}))
	t.Cleanup(api.Close)
	pub, err := publisher.Connect(publisher.Config{
		URL: ns.URL(), SubjectPrefix: prefix, Stream: publisher.StreamConfig{Manage: true, Name: stream},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pub.Close)
	if err := pub.Ready(context.Background()); err != nil { // creates the stream the Router reads
		t.Fatal(err)
	}
	rl, err := relay.New(store, pub, relay.Config{TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rl.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay.Run: %v", err)
		}
	})

	r, err := handlers.NewRouter(js, stream, durable, handlers.WithTracerProvider(tp), handlers.WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	var seen spanContexts
	var scores []int
	var mu sync.Mutex
	handlers.HandleJSON(r, moodLogged, func(ctx context.Context, _ *outbox.Event, m MoodLogged) error {
		seen.add(ctx)
		mu.Lock()
		scores = append(scores, m.Score)
		mu.Unlock()
		return nil
	})
	(&env{t: t, nc: nc, js: js}).start(r, durable)

	// The client.
	reqCtx, reqSpan := tp.Tracer("client").Start(context.Background(), "request", trace.WithSpanKind(trace.SpanKindClient))
	req, err := http.NewRequestWithContext(reqCtx, http.MethodPost, api.URL+"/v1/events",
		strings.NewReader(`{"type":"mood.logged","entity_id":"user-42","payload":{"score":7}}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	propagation.TraceContext{}.Inject(reqCtx, propagation.HeaderCarrier(req.Header))
	res, err := api.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	reqSpan.End()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("POST /v1/events: %s %s", res.Status, body)
	}

	poll.Until(t, 10*time.Second, "the publish and handle spans ended", func() bool {
		return spanNamed(rec, "publish mood.logged") != nil && spanNamed(rec, "handle mood.logged") != nil
	})
	request, publish, handle := spanNamed(rec, "request"), spanNamed(rec, "publish mood.logged"), spanNamed(rec, "handle mood.logged")
	traceID := request.SpanContext().TraceID()
	for _, s := range []sdktrace.ReadOnlySpan{publish, handle} {
		if s.SpanContext().TraceID() != traceID {
			t.Errorf("%s in trace %s, want the request's %s", s.Name(), s.SpanContext().TraceID(), traceID)
		}
		if s.Parent().SpanID() != request.SpanContext().SpanID() {
			t.Errorf("%s has parent %s, want the request span %s", s.Name(), s.Parent().SpanID(), request.SpanContext().SpanID())
		}
	}
	if l := publish.Links(); len(l) != 1 || l[0].SpanContext.SpanID() != request.SpanContext().SpanID() {
		t.Errorf("publish links %+v, want one to the request span", l)
	}
	if publish.SpanKind() != trace.SpanKindProducer || handle.SpanKind() != trace.SpanKindConsumer {
		t.Errorf("publish is a %s span, handle a %s span: want producer, consumer", publish.SpanKind(), handle.SpanKind())
	}
	if publish.Status().Code != codes.Ok || handle.Status().Code != codes.Ok {
		t.Errorf("publish status %s, handle status %s, want ok", publish.Status().Code, handle.Status().Code)
	}
	got := seen.all()
	if len(got) != 1 || !got[0].IsValid() || !got[0].Equal(handle.SpanContext()) {
		t.Errorf("the handler's ctx had span contexts %v, want the handle span's %v", got, handle.SpanContext())
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(scores) != "[7]" {
		t.Errorf("the handler got scores %v, want [7]", scores)
	}
}
