package boltstore_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
)

func TestReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "dir", "outbox.db")
	clk := newClock()
	opts := &boltstore.Options{Now: clk.Now, Timeout: 100 * time.Millisecond}
	s := mustOpenPath(t, path, opts)
	if s.Path() != path {
		t.Errorf("Path() = %q, want %q", s.Path(), path)
	}

	a1, a2, b1, b2, x := ev("a1", "A", 1), ev("a2", "A", 1), ev("b1", "B", 2), ev("b2", "B", 2), ev("x", "", 9)
	mustEnqueue(t, s, a1, a2, b1, b2, x)
	complete(t, s, t0, a1)
	retryAt := t0.Add(time.Minute)
	fail(t, s, boltstore.Failure{Seq: b1.Seq, At: t0, Err: "x", NextAttemptAt: retryAt})

	stats := mustStats(t, s)
	dueNow, nextNow := due(t, s, t0, 100)
	dueLater, _ := due(t, s, retryAt, 100)
	var stored []*outbox.Event
	for _, e := range []*outbox.Event{a1, a2, b1, b2, x} {
		stored = append(stored, mustGet(t, s, e.ID))
	}

	t.Run("second open is locked", func(t *testing.T) {
		start := time.Now()
		s2, err := boltstore.Open(path, &boltstore.Options{Timeout: 100 * time.Millisecond})
		if err == nil {
			s2.Close()
			t.Fatal("second Open succeeded")
		}
		if !errors.Is(err, boltstore.ErrLocked) {
			t.Fatalf("second Open: %v, want ErrLocked", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("second Open took %v with a 100ms timeout", d)
		}
	})

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpenPath(t, path, opts)

	if got := mustStats(t, s); !statsEqual(got, stats) {
		t.Errorf("Stats after reopen = %+v, want %+v", got, stats)
	}
	if got, next := due(t, s, t0, 100); !slices.Equal(seqs(got), seqs(dueNow)) || !next.Equal(nextNow) {
		t.Errorf("Due after reopen = %v (next %v), want %v (next %v)", label(got), next, label(dueNow), nextNow)
	}
	if got, _ := due(t, s, retryAt, 100); !slices.Equal(seqs(got), seqs(dueLater)) {
		t.Errorf("Due(later) after reopen = %v, want %v", label(got), label(dueLater))
	}
	for _, want := range stored {
		assertEventEqual(t, want, mustGet(t, s, want.ID))
	}

	// Sequences continue where they were.
	a3, c1 := ev("a3", "A", 0), ev("c1", "C", 0)
	mustEnqueue(t, s, a3, c1)
	if a3.Seq <= x.Seq || a3.EntitySeq != 3 || c1.EntitySeq != 1 {
		t.Errorf("after reopen: a3 seq %d entity_seq %d, c1 entity_seq %d", a3.Seq, a3.EntitySeq, c1.EntitySeq)
	}
	complete(t, s, t0, a2)
	assertDue(t, s, t0, x, a3, c1)
}

func TestOpenErrors(t *testing.T) {
	// A directory where the file should be.
	dir := t.TempDir()
	if _, err := boltstore.Open(dir, &boltstore.Options{Timeout: 100 * time.Millisecond}); err == nil {
		t.Fatal("Open of a directory succeeded")
	}
}

// TestCodecRoundTrip stores a fully populated event and reads it back.
func TestCodecRoundTrip(t *testing.T) {
	clk := newClock()
	s := mustOpen(t, &boltstore.Options{Now: clk.Now})

	payload := make([]byte, 300)
	for i := range payload {
		payload[i] = byte(i)
	}
	created := time.Date(2024, 12, 31, 23, 59, 59, 123456789, time.FixedZone("X", -7*3600))
	e := &outbox.Event{
		ID:          "0190a5b4-7c3e-7def-8123-456789abcdef",
		Type:        "mood.created.v2",
		EntityID:    "mood-42 ü/日本",
		UserID:      "user-7@example.com",
		Priority:    7,
		IsNewRecord: true,
		MaxAttempts: 9,
		Metadata:    json.RawMessage(`{"trace": {"id": "abc"}, "n": [1, 2.5, null, true]}`),
		Payload:     payload,
		ContentType: "application/x-protobuf; proto=mood.v1.Mood",
		Retry:       &outbox.RetryPolicy{InitialInterval: 1500 * time.Millisecond, MaxInterval: 2 * time.Minute, Multiplier: 2.5},
		CreatedAt:   created,
	}
	want := *e
	want.Metadata = json.RawMessage(`{"trace":{"id":"abc"},"n":[1,2.5,null,true]}`)
	want.Status = outbox.StatusPending
	want.Seq, want.EntitySeq = 1, 1
	mustEnqueue(t, s, e)
	assertEventEqual(t, &want, e)
	assertEventEqual(t, &want, mustGet(t, s, e.ID))

	// The attempt fields, with nanoseconds.
	at := t0.Add(1234567 * time.Nanosecond)
	next := at.Add(987654321 * time.Nanosecond)
	fail(t, s, boltstore.Failure{Seq: e.Seq, At: at, Err: "nats: timeout\nline two", NextAttemptAt: next})
	want.AttemptCount, want.LastAttemptAt, want.NextAttemptAt, want.LastError = 1, at, next, "nats: timeout\nline two"
	assertEventEqual(t, &want, mustGet(t, s, e.ID))

	now := clk.Advance(time.Hour + 5*time.Nanosecond)
	complete(t, s, next, e)
	want.Status, want.AttemptCount, want.LastAttemptAt, want.NextAttemptAt, want.CompletedAt = outbox.StatusCompleted, 2, next, time.Time{}, now
	assertEventEqual(t, &want, mustGet(t, s, e.ID))

	// A minimal event: empty strings, no metadata, payload or policy.
	m := &outbox.Event{Type: "t"}
	mustEnqueue(t, s, m)
	got := mustGet(t, s, m.ID)
	assertEventEqual(t, m, got)
	if got.Metadata != nil || got.Payload != nil || got.Retry != nil {
		t.Errorf("minimal event grew fields: %+v", got)
	}
}

func assertEventEqual(t testing.TB, want, got *outbox.Event) {
	t.Helper()
	check := func(field string, ok bool, w, g any) {
		t.Helper()
		if !ok {
			t.Errorf("%s: got %v, want %v", field, g, w)
		}
	}
	check("id", got.ID == want.ID, want.ID, got.ID)
	check("type", got.Type == want.Type, want.Type, got.Type)
	check("entity_id", got.EntityID == want.EntityID, want.EntityID, got.EntityID)
	check("user_id", got.UserID == want.UserID, want.UserID, got.UserID)
	check("priority", got.Priority == want.Priority, want.Priority, got.Priority)
	check("is_new_record", got.IsNewRecord == want.IsNewRecord, want.IsNewRecord, got.IsNewRecord)
	check("max_attempts", got.MaxAttempts == want.MaxAttempts, want.MaxAttempts, got.MaxAttempts)
	check("metadata", bytes.Equal(got.Metadata, want.Metadata), string(want.Metadata), string(got.Metadata))
	check("payload", bytes.Equal(got.Payload, want.Payload), want.Payload, got.Payload)
	check("content_type", got.ContentType == want.ContentType, want.ContentType, got.ContentType)
	check("retry", (got.Retry == nil) == (want.Retry == nil) && (got.Retry == nil || *got.Retry == *want.Retry), want.Retry, got.Retry)
	check("status", got.Status == want.Status, want.Status, got.Status)
	check("entity_seq", got.EntitySeq == want.EntitySeq, want.EntitySeq, got.EntitySeq)
	check("seq", got.Seq == want.Seq, want.Seq, got.Seq)
	check("created_at", got.CreatedAt.Equal(want.CreatedAt), want.CreatedAt, got.CreatedAt)
	check("last_attempt_at", got.LastAttemptAt.Equal(want.LastAttemptAt), want.LastAttemptAt, got.LastAttemptAt)
	check("next_attempt_at", got.NextAttemptAt.Equal(want.NextAttemptAt), want.NextAttemptAt, got.NextAttemptAt)
	check("completed_at", got.CompletedAt.Equal(want.CompletedAt), want.CompletedAt, got.CompletedAt)
	check("attempt_count", got.AttemptCount == want.AttemptCount, want.AttemptCount, got.AttemptCount)
	check("last_error", got.LastError == want.LastError, want.LastError, got.LastError)
}

// TestBrokerMaxPayload: the store holds new events to the broker's limit for
// headers and payload together, assumes NATS's default before the broker has
// told its own, and keeps the last limit told across a reopen (issue 9 row 2:
// a relay started while NATS is down accepted payloads it could never
// publish).
func TestBrokerMaxPayload(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "o.db")
	s := mustOpenPath(t, path, &boltstore.Options{Event: outbox.Options{MaxPayload: 4 << 20}})
	if got, want := s.MaxMessage(), outbox.MessageLimit(outbox.DefaultMaxMessage); got != want {
		t.Fatalf("limit before the broker told: %d, want %d", got, want)
	}
	_, err := s.Enqueue(ctx, &outbox.Event{Type: "t", Payload: make([]byte, 1<<20)})
	if !errors.Is(err, outbox.ErrPayloadTooLarge) {
		t.Fatalf("1 MiB payload under the assumed 1 MiB broker: %v", err)
	}
	if err := s.SetBrokerMaxPayload(ctx, 8<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Enqueue(ctx, &outbox.Event{Type: "t", Payload: make([]byte, 2<<20)}); err != nil {
		t.Fatalf("2 MiB under an 8 MiB broker: %v", err)
	}
	if err := s.SetBrokerMaxPayload(ctx, 64<<10); err != nil {
		t.Fatal(err)
	}
	_, err = s.Enqueue(ctx, &outbox.Event{Type: "t", Payload: make([]byte, 60<<10)})
	if !errors.Is(err, outbox.ErrPayloadTooLarge) {
		t.Fatalf("60 KiB under a 64 KiB broker: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpenPath(t, path, &boltstore.Options{Event: outbox.Options{MaxPayload: 4 << 20}})
	if got, want := s.MaxMessage(), outbox.MessageLimit(64<<10); got != want {
		t.Errorf("after reopen: limit %d, want the last one told, %d", got, want)
	}
}
