package outbox_test

import (
	"bytes"
	"testing"

	"github.com/fitiqcore/outbox"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
)

// FuzzFromMessage: a subscriber decodes whatever arrives on its subjects,
// from any publisher. FromMessage returns an event or an error wrapping
// ErrInvalidEvent, never panics; what it accepts has a UUID id and a valid
// type, and survives a round trip through Message unchanged. Seeds:
// testdata/fuzz/FuzzFromMessage.
func FuzzFromMessage(f *testing.F) {
	e := &outbox.Event{ID: uuid.NewString(), Type: "mood.created", EntityID: "m-1", UserID: "u1", Priority: 3,
		MaxAttempts: 5, Metadata: []byte(`{"a":1}`), Payload: []byte(`{"s":4}`), ContentType: outbox.ContentTypeJSON, EntitySeq: 9}
	m := e.Message("outbox", "", 2, &outbox.RetryPolicy{InitialInterval: 1e9, MaxInterval: 6e10, Multiplier: 5})
	h := func(k string) string { return m.Header.Get(k) }
	f.Add(h(outbox.HeaderSpecVersion), h(outbox.HeaderID), h(outbox.HeaderType), h(outbox.HeaderSubject), h(outbox.HeaderUserID),
		h(outbox.HeaderPriority), h(outbox.HeaderAttempt), h(outbox.HeaderMaxAttempts), h(outbox.HeaderEntitySeq),
		h(outbox.HeaderIsNewRecord), h(outbox.HeaderTime), h(outbox.HeaderMetadata), h(outbox.HeaderRetryInitial),
		h(outbox.HeaderRetryMax), h(outbox.HeaderRetryMultiply), h(outbox.HeaderContentType), m.Data)
	f.Add("1.0", "not-a-uuid", "a.*", "", "", "x", "", "", "-1", "maybe", "yesterday", "{", "1s", "", "", "", []byte(nil))
	f.Fuzz(func(t *testing.T, spec, id, typ, entity, user, prio, attempt, maxAttempts, entitySeq, isNew, tm, meta,
		rInit, rMax, rMult, ct string, data []byte) {
		hdr := nats.Header{}
		for k, v := range map[string]string{
			outbox.HeaderSpecVersion: spec, outbox.HeaderID: id, outbox.HeaderType: typ, outbox.HeaderSubject: entity,
			outbox.HeaderUserID: user, outbox.HeaderPriority: prio, outbox.HeaderAttempt: attempt,
			outbox.HeaderMaxAttempts: maxAttempts, outbox.HeaderEntitySeq: entitySeq, outbox.HeaderIsNewRecord: isNew,
			outbox.HeaderTime: tm, outbox.HeaderMetadata: meta, outbox.HeaderRetryInitial: rInit,
			outbox.HeaderRetryMax: rMax, outbox.HeaderRetryMultiply: rMult, outbox.HeaderContentType: ct,
		} {
			if v != "" {
				hdr.Set(k, v)
			}
		}
		got, err := outbox.FromMessage(hdr, data)
		if err != nil {
			return
		}
		if _, err := uuid.Parse(got.ID); err != nil {
			t.Fatalf("accepted id %q", got.ID)
		}
		if err := outbox.ValidateType(got.Type); err != nil {
			t.Fatalf("accepted type %q: %v", got.Type, err)
		}
		again, err := outbox.FromMessage(got.Message("p", "", got.AttemptCount, nil).Header, got.Payload)
		if err != nil {
			t.Fatalf("re-encoded message does not decode: %v", err)
		}
		if again.ID != got.ID || again.Type != got.Type || again.EntityID != got.EntityID || again.UserID != got.UserID ||
			again.Priority != got.Priority || again.MaxAttempts != got.MaxAttempts || again.EntitySeq != got.EntitySeq && got.EntityID != "" ||
			!bytes.Equal(again.Metadata, got.Metadata) || !bytes.Equal(again.Payload, got.Payload) {
			t.Fatalf("round trip changed the event:\n%+v\n%+v", got, again)
		}
	})
}
