package outbox_test

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
)

// benchEvent is an event as the relay publishes most: an entity, a user, a
// JSON payload of 256 bytes, no policy of its own.
func benchEvent() *outbox.Event {
	return &outbox.Event{
		ID: uuid.NewString(), Type: "bench.publish", EntityID: "entity-12345", UserID: "user-42",
		Priority: 5, MaxAttempts: 10, ContentType: outbox.ContentTypeJSON, EntitySeq: 1234,
		Payload: make([]byte, 256), CreatedAt: time.Now(),
	}
}

var benchRetry = &outbox.RetryPolicy{InitialInterval: time.Second, MaxInterval: 5 * time.Minute, Multiplier: 2}

// BenchmarkMessage: building one event's message with the relay's default
// retry policy in the headers: Event.Message (everything formatted per call)
// and the Encoder of a stream (the constant headers formatted once), as the
// publisher does.
func BenchmarkMessage(b *testing.B) {
	e := benchEvent()
	b.Run("Event.Message", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = e.Message("bench", "", 3, benchRetry)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("Encoder", func(b *testing.B) {
		enc := outbox.NewEncoder("bench", "", benchRetry)
		b.ReportAllocs()
		for b.Loop() {
			_ = enc.Message(e, 3)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
}

// referenceMessage is Event.Message as it was before the Encoder, formatting
// every header per call: the contract the Encoder must keep byte for byte.
func referenceMessage(e *outbox.Event, subjectPrefix, source string, attempt int, retry *outbox.RetryPolicy) *nats.Msg {
	if source == "" {
		source = outbox.DefaultSource
	}
	h := nats.Header{}
	h.Set(outbox.HeaderSpecVersion, outbox.SpecVersion)
	h.Set(outbox.HeaderID, e.ID)
	h.Set(outbox.HeaderType, e.Type)
	h.Set(outbox.HeaderSource, source)
	h.Set(outbox.HeaderTime, e.CreatedAt.UTC().Format(time.RFC3339Nano))
	if e.EntityID != "" {
		h.Set(outbox.HeaderSubject, e.EntityID)
		h.Set(outbox.HeaderEntitySeq, strconv.FormatUint(e.EntitySeq, 10))
	}
	if e.ContentType != "" {
		h.Set(outbox.HeaderContentType, e.ContentType)
	}
	if e.UserID != "" {
		h.Set(outbox.HeaderUserID, e.UserID)
	}
	h.Set(outbox.HeaderPriority, strconv.Itoa(e.Priority))
	h.Set(outbox.HeaderAttempt, strconv.Itoa(attempt))
	h.Set(outbox.HeaderMaxAttempts, strconv.Itoa(e.MaxAttempts))
	h.Set(outbox.HeaderIsNewRecord, strconv.FormatBool(e.IsNewRecord))
	if len(e.Metadata) > 0 {
		h.Set(outbox.HeaderMetadata, string(e.Metadata))
	}
	if e.Retry != nil {
		retry = e.Retry
	}
	if retry != nil {
		h.Set(outbox.HeaderRetryInitial, retry.InitialInterval.String())
		h.Set(outbox.HeaderRetryMax, retry.MaxInterval.String())
		h.Set(outbox.HeaderRetryMultiply, strconv.FormatFloat(retry.Multiplier, 'g', -1, 64))
	}
	h.Set(outbox.HeaderMsgID, e.ID)
	return &nats.Msg{Subject: outbox.Subject(subjectPrefix, e.Type), Header: h, Data: e.Payload}
}

// TestEncoderKeepsTheHeaders: Event.Message and an Encoder build exactly the
// headers, subject and body they built before constant values were shared
// (header names and values are a contract with subscribers), for events with
// and without each optional field, numbers inside and outside the shared
// range, every content type, and every combination of source and policy.
func TestEncoderKeepsTheHeaders(t *testing.T) {
	own := &outbox.RetryPolicy{InitialInterval: 1500 * time.Millisecond, MaxInterval: time.Hour, Multiplier: 1.5}
	def := &outbox.RetryPolicy{InitialInterval: time.Second, MaxInterval: 10 * time.Minute, Multiplier: 2}
	at := time.Date(2026, 3, 4, 5, 6, 7, 8, time.FixedZone("x", 3600))
	long := strings.Repeat("m", 300) // past the encoder's stack buffer
	events := []struct {
		name    string
		e       outbox.Event
		attempt int
	}{
		{"minimal", outbox.Event{Type: "t", MaxAttempts: 1}, 1},
		{"full", outbox.Event{Type: "journal.updated", EntityID: "journal-9", UserID: "user 1", Priority: 9, IsNewRecord: true,
			MaxAttempts: outbox.MaxAttemptsLimit, Metadata: json.RawMessage(`{"k":"v"}`), Payload: []byte("body"),
			ContentType: outbox.ContentTypeJSON, EntitySeq: math.MaxUint64, CreatedAt: at}, outbox.MaxAttemptsLimit},
		{"own policy", outbox.Event{Type: "a.b", EntityID: "e", MaxAttempts: 3, Retry: own, ContentType: outbox.ContentTypeBinary, CreatedAt: at}, 2},
		{"other content type", outbox.Event{Type: "a.b", MaxAttempts: 3, ContentType: "text/plain; charset=utf-8"}, 3},
		{"numbers past the shared ones", outbox.Event{Type: "a.b", Priority: -1, MaxAttempts: 5000}, math.MaxInt32},
		{"long metadata and type", outbox.Event{Type: "a." + strings.Repeat("t", outbox.MaxTypeLen-2), EntityID: "e", EntitySeq: 7,
			Metadata: json.RawMessage(`{"k":"` + long + `"}`), MaxAttempts: 2, CreatedAt: at}, 1},
	}
	for _, tt := range events {
		tt.e.ID = uuid.NewString()
		for _, source := range []string{"", "urn:fitiq:api"} {
			for _, retry := range []*outbox.RetryPolicy{nil, def} {
				name := fmt.Sprintf("%s/source %q/default policy %v", tt.name, source, retry != nil)
				want := referenceMessage(&tt.e, "app", source, tt.attempt, retry)
				for _, got := range []*nats.Msg{
					tt.e.Message("app", source, tt.attempt, retry),
					outbox.NewEncoder("app", source, retry).Message(&tt.e, tt.attempt),
				} {
					if got.Subject != want.Subject || string(got.Data) != string(want.Data) || !reflect.DeepEqual(got.Header, want.Header) {
						t.Errorf("%s:\n got %s %v\nwant %s %v", name, got.Subject, got.Header, want.Subject, want.Header)
					}
					if _, err := outbox.FromMessage(got.Header, got.Data); err != nil {
						t.Errorf("%s: FromMessage: %v", name, err)
					}
				}
			}
		}
	}
}

// TestEncoderMessagesAreIndependent: the shared header values cannot leak
// from one message into another through nats.Header's methods.
func TestEncoderMessagesAreIndependent(t *testing.T) {
	enc := outbox.NewEncoder("app", "", &outbox.RetryPolicy{InitialInterval: time.Second, MaxInterval: time.Minute, Multiplier: 2})
	e := &outbox.Event{ID: uuid.NewString(), Type: "t", MaxAttempts: 1, ContentType: outbox.ContentTypeJSON}
	a, b := enc.Message(e, 1), enc.Message(e, 1)
	for _, k := range []string{outbox.HeaderSpecVersion, outbox.HeaderSource, outbox.HeaderContentType, outbox.HeaderPriority,
		outbox.HeaderAttempt, outbox.HeaderIsNewRecord, outbox.HeaderRetryInitial, outbox.HeaderMsgID, outbox.HeaderID} {
		a.Header.Add(k, "extra")
	}
	a.Header.Set(outbox.HeaderTime, "changed")
	c := enc.Message(e, 1)
	for _, m := range []*nats.Msg{b, c} {
		for k, vs := range m.Header {
			if len(vs) != 1 || vs[0] == "extra" || vs[0] == "changed" {
				t.Errorf("header %s of another message is %q", k, vs)
			}
		}
	}
}

// TestMessageAllocations: the relay's message costs six allocations with an
// Encoder (the message with its header values, the header map's four, the
// per-event strings) and eight through Event.Message; it cost eleven before
// constant header values were shared.
func TestMessageAllocations(t *testing.T) {
	e := benchEvent()
	enc := outbox.NewEncoder("bench", "", benchRetry)
	for _, tt := range []struct {
		name string
		max  float64
		fn   func()
	}{
		{"Encoder.Message", 6, func() { enc.Message(e, 3) }},
		{"Event.Message", 8, func() { e.Message("bench", "", 3, benchRetry) }},
	} {
		if n := testing.AllocsPerRun(200, tt.fn); n > tt.max {
			t.Errorf("%s: %v allocations per message, want at most %v", tt.name, n, tt.max)
		}
	}
}
