package boltstore_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
	bolt "go.etcd.io/bbolt"
)

// TestIdempotencyPastRemoval: a client that re-posts an event after a lost
// answer must not get it stored (and published) twice, even when the store
// removed the event meanwhile. Before, once the record was removed (on ack,
// by retention or by an operator) the re-post was stored again (issue 9 row
// 10). Within the idempotency window the re-post stores nothing and reports
// the removed status; with other content it is a conflict; past the window
// the id is free again.
func TestIdempotencyPastRemoval(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		opts   boltstore.Options
		remove func(t *testing.T, s *boltstore.Store, clk *clock, e *outbox.Event)
	}{
		{"removed on ack", boltstore.Options{RemoveOnAck: true}, func(t *testing.T, s *boltstore.Store, clk *clock, e *outbox.Event) {
			complete(t, s, clk.Now(), e)
		}},
		{"removed by retention", boltstore.Options{Retention: time.Minute}, func(t *testing.T, s *boltstore.Store, clk *clock, e *outbox.Event) {
			complete(t, s, clk.Now(), e)
			clk.Advance(2 * time.Minute)
			if n, err := s.SweepOnce(ctx); err != nil || n != 1 {
				t.Fatalf("sweep: %d deleted, %v", n, err)
			}
		}},
		{"deleted by an operator", boltstore.Options{}, func(t *testing.T, s *boltstore.Store, clk *clock, e *outbox.Event) {
			if err := s.Delete(ctx, e.ID); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			opts := tt.opts
			opts.Now, opts.IdempotencyWindow = clk.Now, time.Hour
			s := mustOpen(t, &opts)
			e := ev("mood.created", "m1", 0)
			mustEnqueue(t, s, e)
			posted := *e
			tt.remove(t, s, clk, e)
			if _, err := s.Get(ctx, e.ID); !errors.Is(err, boltstore.ErrNotFound) {
				t.Fatalf("after removal: %v", err)
			}
			again := repost(&posted)
			n, err := s.Enqueue(ctx, again)
			if err != nil || n != 0 || again.Status != outbox.StatusRemoved {
				t.Fatalf("re-post within the window: created %d, status %s, %v; want 0, removed, nil", n, again.Status, err)
			}
			// The answer is the first one's: a client learns its entity_seq
			// from it (the reliability suite caught entity_seq 0 here).
			if again.Seq != posted.Seq || again.EntitySeq != posted.EntitySeq || again.EntitySeq == 0 {
				t.Fatalf("re-post answered seq %d entity_seq %d, want %d %d", again.Seq, again.EntitySeq, posted.Seq, posted.EntitySeq)
			}
			if st := mustStats(t, s); st.Total != 0 {
				t.Fatalf("the re-post stored something: %+v", tallyOf(st))
			}
			other := repost(&posted)
			other.Payload = []byte(`{"n":2}`)
			if _, err := s.Enqueue(ctx, other); !errors.Is(err, boltstore.ErrDuplicate) {
				t.Fatalf("re-post with other content: %v, want ErrDuplicate", err)
			}
			assertInvariants(t, s)
			clk.Advance(time.Hour + time.Minute)
			if _, err := s.SweepOnce(ctx); err != nil {
				t.Fatal(err)
			}
			assertInvariants(t, s)
			late := repost(&posted)
			if n, err := s.Enqueue(ctx, late); err != nil || n != 1 {
				t.Fatalf("re-post past the window: created %d, %v; want it stored", n, err)
			}
		})
	}
}

// repost is what a client sends again: the application's fields only.
func repost(e *outbox.Event) *outbox.Event {
	return &outbox.Event{ID: e.ID, Type: e.Type, EntityID: e.EntityID, UserID: e.UserID, Priority: e.Priority,
		IsNewRecord: e.IsNewRecord, MaxAttempts: e.MaxAttempts, Metadata: e.Metadata, Payload: e.Payload,
		ContentType: e.ContentType, Retry: e.Retry, CreatedAt: e.CreatedAt}
}

// TestResetForgetsRemovedIDs: the emergency reset forgets the ids of removed
// events too, so that an application may enqueue them again.
func TestResetForgetsRemovedIDs(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t, &boltstore.Options{RemoveOnAck: true})
	e := ev("t", "", 0)
	mustEnqueue(t, s, e)
	complete(t, s, t0, e)
	if _, err := s.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Enqueue(ctx, repost(e)); err != nil || n != 1 {
		t.Fatalf("after reset: created %d, %v", n, err)
	}
}

// TestEntitiesShrink: with one entity per record, the entities bucket kept a
// key for every entity ever seen (25k events removed on ack left 25k keys,
// issue 9 row 11). An entity none of whose events is stored any more is
// forgotten once idle for Options.EntityHorizon; before that, and while it
// has events, its entity_seq goes on; once forgotten, it starts again at 1.
func TestEntitiesShrink(t *testing.T) {
	const n = 25_000
	ctx := context.Background()
	clk := newClock()
	s := mustOpen(t, &boltstore.Options{Now: clk.Now, RemoveOnAck: true, EntityHorizon: time.Hour, IdempotencyWindow: time.Minute})
	s.DB().NoSync = true
	es := enqueueMany(t, s, n, func(i int) *outbox.Event { return ev("rec.created", fmt.Sprint("rec-", i), 0) })
	for i := 0; i < n; i += 2000 {
		completeAll(t, s, es[i:min(i+2000, n)], clk.Now())
	}
	keep := ev("rec.updated", "kept", 0) // an entity with a stored event is never forgotten
	mustEnqueue(t, s, keep)
	again := ev("rec.updated", "rec-7", 0) // within the horizon: the chain goes on
	mustEnqueue(t, s, again)
	if again.EntitySeq != 2 {
		t.Fatalf("rec-7 within the horizon: entity_seq %d, want 2", again.EntitySeq)
	}
	complete(t, s, clk.Now(), again)
	assertInvariants(t, s)
	if got := entityStates(t, s); got != n+1 {
		t.Fatalf("entities before the horizon: %d keys, want %d", got, n+1)
	}
	clk.Advance(time.Hour + time.Minute)
	if _, err := s.SweepOnce(ctx); err != nil {
		t.Fatal(err)
	}
	assertInvariants(t, s)
	if got := entityStates(t, s); got != 1 {
		t.Errorf("entities past the horizon: %d keys, want 1 (the entity with a stored event)", got)
	}
	if got := bucketKeys(t, s, "idle_entities"); got != 0 {
		t.Errorf("idle_entities past the horizon: %d keys", got)
	}
	back := ev("rec.updated", "rec-7", 0)
	mustEnqueue(t, s, back)
	if back.EntitySeq != 1 {
		t.Errorf("a forgotten entity came back with entity_seq %d, want 1", back.EntitySeq)
	}
	next := ev("rec.updated", "kept", 0)
	mustEnqueue(t, s, next)
	if next.EntitySeq != 2 {
		t.Errorf("the kept entity went on with entity_seq %d, want 2", next.EntitySeq)
	}
}

func bucketKeys(t testing.TB, s *boltstore.Store, name string) int {
	t.Helper()
	n := 0
	if err := s.DB().View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(name)).ForEach(func(_, _ []byte) error { n++; return nil })
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// entityStates counts the entities the store remembers (the state keys of
// the entity bucket: len(2)|entity_id|0x00).
func entityStates(t testing.TB, s *boltstore.Store) int {
	t.Helper()
	n := 0
	if err := s.DB().View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("entity")).ForEach(func(k, _ []byte) error {
			if _, rest, ok := splitLenPrefixed(k); ok && len(rest) == 1 && rest[0] == 0 {
				n++
			}
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	return n
}
