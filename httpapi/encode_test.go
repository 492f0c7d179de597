package httpapi

import (
	"bytes"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
)

// The answer's appender against encoding/json: for every event, the bytes
// writeJSON wrote (json.Encoder without HTML escaping, Event.MarshalJSON),
// or, for an event encoding/json cannot write, the same refusal.

// sameAnswer fails t unless appendEvent writes e as marshal does, alone
// and in a batch.
func sameAnswer(t *testing.T, e *outbox.Event) {
	t.Helper()
	want, wantErr := marshal(e)
	got, ok := appendEvent(nil, e)
	if ok != (wantErr == nil) {
		t.Fatalf("appendEvent(%#v): ok %v, but encoding/json: %v", e, ok, wantErr)
	}
	if !ok {
		return
	}
	if got = append(got, '\n'); !bytes.Equal(got, want) {
		t.Fatalf("appendEvent(%#v):\n got  %s\n want %s", e, got, want)
	}
	events := []*outbox.Event{e, e}
	wantBatch, err := marshal(batch{Events: events})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct {
		write func(*Server, http.ResponseWriter)
		want  []byte
	}{
		{func(s *Server, w http.ResponseWriter) { s.writeEvent(w, http.StatusCreated, e) }, want},
		{func(s *Server, w http.ResponseWriter) { s.writeEvents(w, http.StatusCreated, events) }, wantBatch},
	} {
		rec := httptest.NewRecorder()
		w.write(&Server{}, rec)
		if rec.Code != http.StatusCreated || rec.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("answered %d %q", rec.Code, rec.Header().Get("Content-Type"))
		}
		if b := rec.Body.Bytes(); !bytes.Equal(b, w.want) {
			t.Fatalf("answered\n %s\nwant\n %s", b, w.want)
		}
	}
}

func TestAppendEventMatchesMarshal(t *testing.T) {
	at := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	full := outbox.Event{
		ID: "0192f0a0-0000-7000-8000-000000000001", Type: "mood.created", EntityID: "m-1", UserID: "u1",
		Priority: 9, IsNewRecord: true, MaxAttempts: 1000, Metadata: json.RawMessage(`{"k":"v","n":[1,2.5e-7]}`),
		Payload: []byte(`{"score":4,"html":"<a href='x'>&amp;</a>"}`), ContentType: "application/json",
		Retry:  &outbox.RetryPolicy{InitialInterval: 1500 * time.Microsecond, MaxInterval: 7 * 24 * time.Hour, Multiplier: 2.5},
		Status: outbox.StatusFailed, EntitySeq: 1 << 63, Seq: math.MaxUint64,
		CreatedAt: at, AcceptedAt: at.Add(time.Nanosecond), LastAttemptAt: at.In(time.FixedZone("", 5*3600+1800)),
		NextAttemptAt: at.In(time.FixedZone("X", -3600)), CompletedAt: at.Truncate(time.Second),
		AttemptCount: 3, LastError: "boom: \"quoted\" \\ \n\t\r\b\f \x01 \x7f < > & \u2028 \u2029 \xff é 😀",
	}
	with := func(f func(e *outbox.Event)) *outbox.Event {
		e := full
		r := *full.Retry
		e.Retry = &r
		f(&e)
		return &e
	}
	tests := []*outbox.Event{
		{},
		&full,
		with(func(e *outbox.Event) { e.Retry, e.Metadata, e.LastError = nil, nil, "" }),
		with(func(e *outbox.Event) {
			e.LastAttemptAt, e.NextAttemptAt, e.CompletedAt = time.Time{}, time.Time{}, time.Time{}
		}),
		with(func(e *outbox.Event) { e.Priority, e.MaxAttempts, e.AttemptCount = -1, math.MinInt64, math.MaxInt64 }),
		with(func(e *outbox.Event) { e.Metadata = json.RawMessage(" { \"a\" : [ 1 , \"b c\" ] } ") }),
		with(func(e *outbox.Event) { e.Metadata = json.RawMessage(`{"a":`) }),        // not JSON: encoding/json fails
		with(func(e *outbox.Event) { e.Metadata = json.RawMessage("{\"\xff\":1}") }), // invalid UTF-8, kept
		with(func(e *outbox.Event) { e.Payload = []byte(" [ 1 , {\"a\" : \"\xff\"} ] ") }),
		with(func(e *outbox.Event) { e.Payload = []byte(` [ 1 , {"a" : "b c"} ] `) }),
		with(func(e *outbox.Event) { e.Payload = []byte(`"\udc00"`) }),
		with(func(e *outbox.Event) { e.Payload = []byte("{not json") }),
		with(func(e *outbox.Event) { e.Payload, e.ContentType = []byte{0, 1, 2, 255}, "application/octet-stream" }),
		with(func(e *outbox.Event) {
			e.Payload, e.ContentType = []byte(`{"a":1}`), "application/cloudevents+json; charset=utf-8"
		}),
		with(func(e *outbox.Event) { e.Payload, e.ContentType = []byte(`{"a":1}`), " Application/JSON " }),
		with(func(e *outbox.Event) { e.Payload, e.ContentType = []byte(`{"a":1}`), "text/plain" }),
		with(func(e *outbox.Event) { e.Payload = []byte{} }),
		with(func(e *outbox.Event) { e.Payload = nil }),
		with(func(e *outbox.Event) { e.Retry.Multiplier = 1e21 }),
		with(func(e *outbox.Event) { e.Retry.Multiplier = 1e-7 }),
		with(func(e *outbox.Event) { e.Retry.Multiplier = -0.000001 }),
		with(func(e *outbox.Event) { e.Retry.Multiplier = 123456789.123 }),
		with(func(e *outbox.Event) { e.Retry.Multiplier = math.NaN() }), // encoding/json fails
		with(func(e *outbox.Event) { e.Retry.Multiplier = math.Inf(1) }),
		with(func(e *outbox.Event) { e.Retry = &outbox.RetryPolicy{} }),
		with(func(e *outbox.Event) { e.Retry.InitialInterval = -time.Nanosecond }),
		with(func(e *outbox.Event) { e.CreatedAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }), // encoding/json fails
		with(func(e *outbox.Event) { e.CompletedAt = time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC) }),
		with(func(e *outbox.Event) { e.AcceptedAt = at.In(time.FixedZone("", 24*3600)) }),
		with(func(e *outbox.Event) { e.AcceptedAt = at.In(time.Local) }),
		with(func(e *outbox.Event) { e.CreatedAt = time.Date(1, 1, 1, 0, 0, 0, 0, time.FixedZone("", 3600)) }),
		with(func(e *outbox.Event) { e.ID, e.Type, e.Status = "\x00\x1f", "a\u2028b", "\xed\xa0\x80" }),
	}
	for _, e := range tests {
		sameAnswer(t, e)
	}
	// And every event the seeds of the decoder decode to.
	for _, body := range equivSeeds {
		if e, err := decodeSingle([]byte(body)); err == nil {
			sameAnswer(t, e)
		}
	}
}

// FuzzAppendEvent holds appendEvent to encoding/json on any event.
func FuzzAppendEvent(f *testing.F) {
	f.Add("0192f0a0-0000-7000-8000-000000000001", "a.b", "e<1>", "u&1", 3, true, 5, []byte(`{"k":"v"}`), []byte(`{"a":[1,2]}`),
		"application/json", true, int64(time.Second), int64(time.Minute), 2.0, "pending", uint64(1), uint64(2),
		int64(1700000000), int64(1700000001), int64(0), int64(-62135596800), int64(253402300800), 3600, 0, "boom")
	f.Add("\xff", "\u2028", "\"", "\\", -1, false, 0, []byte(" { } "), []byte("\x00\xff"),
		"application/octet-stream", false, int64(0), int64(0), math.Inf(1), "", uint64(0), uint64(math.MaxUint64),
		int64(0), int64(0), int64(0), int64(0), int64(0), 0, -1, "")
	f.Fuzz(func(t *testing.T, id, typ, entity, user string, priority int, isNew bool, maxAttempts int, meta, payload []byte,
		ct string, hasRetry bool, initial, maxInterval int64, multiplier float64, status string, entitySeq, seq uint64,
		created, accepted, last, next, completed int64, zone, attempts int, lastErr string) {
		loc := time.FixedZone("", zone%(30*3600))
		when := func(sec int64) time.Time {
			if sec == 0 {
				return time.Time{}
			}
			return time.Unix(sec, sec%1e9).In(loc)
		}
		e := &outbox.Event{
			ID: id, Type: typ, EntityID: entity, UserID: user, Priority: priority, IsNewRecord: isNew,
			MaxAttempts: maxAttempts, Metadata: meta, Payload: payload, ContentType: ct, Status: outbox.Status(status),
			EntitySeq: entitySeq, Seq: seq, CreatedAt: when(created), AcceptedAt: when(accepted),
			LastAttemptAt: when(last), NextAttemptAt: when(next), CompletedAt: when(completed),
			AttemptCount: attempts, LastError: lastErr,
		}
		if hasRetry {
			e.Retry = &outbox.RetryPolicy{InitialInterval: time.Duration(initial), MaxInterval: time.Duration(maxInterval), Multiplier: multiplier}
		}
		if isNew {
			// deliver_at and the trace context (issue 12), from the inputs
			// there are, so that the corpus keeps its shape.
			e.DeliverAt, e.TraceParent, e.TraceState = when(last^next), lastErr, entity
		}
		sameAnswer(t, e)
	})
}
