package boltstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
	bolt "go.etcd.io/bbolt"
)

func TestUpdate(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	s := mustOpen(t, &boltstore.Options{Now: clk.Now})

	t.Run("fields and priority of a ready event", func(t *testing.T) {
		x, y := ev("u.x", "", 1), ev("u.y", "", 5)
		mustEnqueue(t, s, x, y)
		assertDue(t, s, t0, y, x)
		upd := *x
		upd.Priority, upd.Payload, upd.Metadata, upd.MaxAttempts, upd.IsNewRecord = 9, []byte(`{"n":2}`), json.RawMessage(`{ "k": 1 }`), 7, true
		upd.Retry = &outbox.RetryPolicy{InitialInterval: time.Second, MaxInterval: time.Minute, Multiplier: 2}
		upd.ContentType = "application/vnd.x+json"
		upd.Status, upd.AttemptCount = outbox.StatusFailed, 99 // not the application's: ignored
		if err := s.Update(ctx, &upd); err != nil {
			t.Fatal(err)
		}
		got := mustGet(t, s, x.ID)
		if got.Priority != 9 || string(got.Payload) != `{"n":2}` || string(got.Metadata) != `{"k":1}` || got.MaxAttempts != 7 ||
			!got.IsNewRecord || got.Retry == nil || got.ContentType != "application/vnd.x+json" ||
			got.Status != outbox.StatusPending || got.AttemptCount != 0 || !got.CreatedAt.Equal(x.CreatedAt) {
			t.Errorf("after update: %+v", got)
		}
		assertEventEqual(t, got, &upd) // Update fills e from the store
		assertDue(t, s, t0, x, y)      // moved to ready/9
		complete(t, s, t0, x, y)
	})
	t.Run("delayed and failed events", func(t *testing.T) {
		d, f := ev("u.d", "", 1), ev("u.f", "", 1)
		mustEnqueue(t, s, d, f)
		fail(t, s, boltstore.Failure{Seq: d.Seq, At: t0, Err: "x", NextAttemptAt: t0.Add(time.Minute)},
			boltstore.Failure{Seq: f.Seq, At: t0, Err: "x", Permanent: true})
		for _, e := range []*outbox.Event{d, f} {
			upd := mustGet(t, s, e.ID)
			upd.Priority = 8
			if err := s.Update(ctx, upd); err != nil {
				t.Fatalf("update %s: %v", upd.Status, err)
			}
		}
		assertDue(t, s, t0)
		assertDue(t, s, t0.Add(time.Minute), d)
		if got := mustGet(t, s, f.ID); got.Status != outbox.StatusFailed || got.Priority != 8 {
			t.Errorf("failed event after update: %s p%d", got.Status, got.Priority)
		}
		if _, err := s.Retry(ctx, f.ID); err != nil {
			t.Fatal(err)
		}
		assertDue(t, s, t0.Add(time.Minute), d, f)
		complete(t, s, t0, d, f)
	})
	t.Run("refused", func(t *testing.T) {
		p, c, pr := ev("u.p", "E", 1), ev("u.c", "", 1), ev("u.pr", "", 1)
		p.UserID = "alice"
		mustEnqueue(t, s, p, c, pr)
		complete(t, s, t0, c)
		if err := s.MarkProcessing(ctx, pr.ID); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name   string
			mutate func(e *outbox.Event)
			err    error
			field  string
		}{
			{"type", func(e *outbox.Event) { e.Type = "u.other" }, outbox.ErrInvalidEvent, "type"},
			{"entity_id", func(e *outbox.Event) { e.EntityID = "F" }, outbox.ErrInvalidEvent, "entity_id"},
			{"user_id", func(e *outbox.Event) { e.UserID = "" }, outbox.ErrInvalidEvent, "user_id"},
			{"bad priority", func(e *outbox.Event) { e.Priority = 10 }, outbox.ErrInvalidEvent, "priority"},
			{"bad metadata", func(e *outbox.Event) { e.Metadata = json.RawMessage(`[1]`) }, outbox.ErrInvalidEvent, "metadata"},
			{"payload too large", func(e *outbox.Event) { e.Payload = make([]byte, outbox.DefaultPayload+1) }, outbox.ErrPayloadTooLarge, "payload"},
			{"no id", func(e *outbox.Event) { e.ID = "" }, outbox.ErrInvalidEvent, "id"},
			{"unknown id", func(e *outbox.Event) { e.ID = "0190a5b4-7c3e-7def-8123-456789abcdef" }, boltstore.ErrNotFound, ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				upd := mustGet(t, s, p.ID)
				tt.mutate(upd)
				err := s.Update(ctx, upd)
				if !errors.Is(err, tt.err) {
					t.Fatalf("update: %v, want %v", err, tt.err)
				}
				var ve *outbox.ValidationError
				if tt.field != "" && (!errors.As(err, &ve) || ve.Field != tt.field) {
					t.Errorf("update: %v, want a validation error naming %s", err, tt.field)
				}
				assertEventEqual(t, p, mustGet(t, s, p.ID))
			})
		}
		for _, e := range []*outbox.Event{c, pr} {
			upd := mustGet(t, s, e.ID)
			status := upd.Status
			upd.Priority = 3
			if err := s.Update(ctx, upd); !errors.Is(err, boltstore.ErrWrongStatus) {
				t.Errorf("update of a %s event: %v, want ErrWrongStatus", status, err)
			}
		}
	})
	assertInvariants(t, s)
}

func TestMarkProcessing(t *testing.T) {
	ctx := context.Background()
	path := t.TempDir() + "/outbox.db"
	s := mustOpenPath(t, path, nil)
	a1, a2, x := ev("m", "A", 1), ev("m", "A", 1), ev("m", "", 5)
	mustEnqueue(t, s, a1, a2, x)
	fail(t, s, boltstore.Failure{Seq: x.Seq, At: t0, Err: "x", NextAttemptAt: t0.Add(time.Hour)}) // in backoff

	if err := s.MarkProcessing(ctx, a2.ID); !errors.Is(err, boltstore.ErrNotHead) {
		t.Fatalf("a2 behind a1: %v, want ErrNotHead", err)
	}
	for _, e := range []*outbox.Event{a1, x} {
		if err := s.MarkProcessing(ctx, e.ID); err != nil {
			t.Fatalf("mark processing: %v", err)
		}
		got := mustGet(t, s, e.ID)
		if got.Status != outbox.StatusProcessing || got.LastAttemptAt.IsZero() || !got.NextAttemptAt.IsZero() {
			t.Errorf("after mark processing: %+v", got)
		}
	}
	assertDue(t, s, t0.Add(2*time.Hour)) // nothing: a1 and x are processing, a2 waits behind a1
	if err := s.MarkProcessing(ctx, a1.ID); !errors.Is(err, boltstore.ErrWrongStatus) {
		t.Errorf("processing again: %v, want ErrWrongStatus", err)
	}
	if err := s.MarkProcessing(ctx, "0190a5b4-7c3e-7def-8123-456789abcdef"); !errors.Is(err, boltstore.ErrNotFound) {
		t.Errorf("unknown id: %v, want ErrNotFound", err)
	}
	if st := mustStats(t, s); st.Processing != 2 || st.Pending != 1 {
		t.Errorf("stats: %s", fmtStats(st))
	}
	assertInvariants(t, s)
	// A process that dies leaves them processing: reopening makes them
	// pending, and ready again.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpenPath(t, path, nil)
	if st := mustStats(t, s); st.Processing != 0 || st.Pending != 3 {
		t.Errorf("after reopen: %s", fmtStats(st))
	}
	assertDue(t, s, time.Now(), x, a1)
}

func TestMarkCompleted(t *testing.T) {
	ctx := context.Background()
	for _, removeOnAck := range []bool{false, true} {
		t.Run(fmt.Sprint("remove on ack=", removeOnAck), func(t *testing.T) {
			clk := newClock()
			s := mustOpen(t, &boltstore.Options{Now: clk.Now, RemoveOnAck: removeOnAck})
			a1, a2, a3, a4 := ev("m", "A", 1), ev("m", "A", 1), ev("m", "A", 1), ev("m", "A", 1)
			mustEnqueue(t, s, a1, a2, a3, a4)
			if err := s.MarkCompleted(ctx, a2.ID); !errors.Is(err, boltstore.ErrNotHead) {
				t.Fatalf("a2 behind a1: %v, want ErrNotHead", err)
			}
			gone := func(e *outbox.Event) {
				t.Helper()
				got, err := s.Get(ctx, e.ID)
				if removeOnAck {
					if !errors.Is(err, boltstore.ErrNotFound) {
						t.Fatalf("removed on ack, but Get: %v", err)
					}
					return
				}
				if err != nil || got.Status != outbox.StatusCompleted || !got.CompletedAt.Equal(clk.Now()) {
					t.Fatalf("after mark completed: %v %v", describe(got), err)
				}
			}
			// A pending head: one attempt, and the next event leads.
			if err := s.MarkCompleted(ctx, a1.ID); err != nil {
				t.Fatal(err)
			}
			gone(a1)
			assertDue(t, s, t0, a2)
			// A processing head.
			if err := s.MarkProcessing(ctx, a2.ID); err != nil {
				t.Fatal(err)
			}
			clk.Advance(time.Second)
			if err := s.MarkCompleted(ctx, a2.ID); err != nil {
				t.Fatal(err)
			}
			gone(a2)
			if !removeOnAck {
				if got := mustGet(t, s, a2.ID); got.AttemptCount != 1 {
					t.Errorf("attempts after processing and completion: %d", got.AttemptCount)
				}
				if err := s.MarkCompleted(ctx, a2.ID); err != nil { // again: nothing
					t.Errorf("completing again: %v", err)
				}
			}
			// A failed head, delivered by other means.
			if err := s.MarkFailed(ctx, a3.ID, "nope"); err != nil {
				t.Fatal(err)
			}
			assertDue(t, s, t0)
			if err := s.MarkCompleted(ctx, a3.ID); err != nil {
				t.Fatal(err)
			}
			gone(a3)
			assertDue(t, s, t0, a4)
			st := mustStats(t, s)
			if st.NewestCompletedAt == nil || !st.NewestCompletedAt.Equal(clk.Now()) {
				t.Errorf("newest completed: %v", st.NewestCompletedAt)
			}
			if removeOnAck && (st.Completed != 0 || st.Total != 1) {
				t.Errorf("remove on ack: %s", fmtStats(st))
			}
			assertInvariants(t, s)
		})
	}
}

func TestMarkFailed(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t, nil)
	a1, a2, x, c := ev("m", "A", 1), ev("m", "A", 1), ev("m", "", 1), ev("m", "", 1)
	mustEnqueue(t, s, a1, a2, x, c)
	complete(t, s, t0, c)
	if err := s.MarkFailed(ctx, a2.ID, "x"); !errors.Is(err, boltstore.ErrNotHead) {
		t.Fatalf("a2 behind a1: %v, want ErrNotHead", err)
	}
	if err := s.MarkFailed(ctx, c.ID, "x"); !errors.Is(err, boltstore.ErrWrongStatus) {
		t.Fatalf("completed: %v, want ErrWrongStatus", err)
	}
	if err := s.MarkFailed(ctx, a1.ID, "first"); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkProcessing(ctx, x.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkFailed(ctx, x.ID, "second"); err != nil {
		t.Fatal(err)
	}
	for _, e := range []*outbox.Event{a1, x} {
		got := mustGet(t, s, e.ID)
		if got.Status != outbox.StatusFailed || got.AttemptCount != 1 || got.LastAttemptAt.IsZero() {
			t.Errorf("after mark failed: %+v", got)
		}
	}
	assertDue(t, s, time.Now()) // a2 blocked behind the failed a1
	if err := s.MarkFailed(ctx, a1.ID, "again"); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, s, a1.ID); got.LastError != "again" || got.AttemptCount != 1 {
		t.Errorf("failed again: %q, %d attempts", got.LastError, got.AttemptCount)
	}
	if st := mustStats(t, s); st.Failed != 2 || !st.HasIssues {
		t.Errorf("stats: %s", fmtStats(st))
	}
	assertInvariants(t, s)
}

func TestRetryWhere(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t, nil)
	s.DB().NoSync = true
	es := enqueueMany(t, s, 2500, func(i int) *outbox.Event {
		return userEv([]string{"u1", "u2"}[i%2], "", i%10)
	})
	var fs []boltstore.Failure
	for _, e := range es {
		fs = append(fs, boltstore.Failure{Seq: e.Seq, At: t0, Err: "x", Permanent: true})
	}
	fail(t, s, fs[:2400]...)
	if _, err := s.RetryWhere(ctx, outbox.StatusPending, ""); !errors.Is(err, boltstore.ErrNotRetryable) {
		t.Errorf("status pending: %v, want ErrNotRetryable", err)
	}
	n, err := s.RetryWhere(ctx, outbox.StatusFailed, "u1")
	if err != nil || n != 1200 {
		t.Fatalf("retry u1: %d, %v; want 1200", n, err)
	}
	if st := mustUserStats(t, s, "u1"); st.Failed != 0 || st.Pending != 1250 {
		t.Errorf("u1 after retry: %s", fmtStats(st))
	}
	n, err = s.RetryWhere(ctx, "", "")
	if err != nil || n != 1200 {
		t.Fatalf("retry all: %d, %v; want 1200", n, err)
	}
	if got := mustGet(t, s, es[0].ID); got.AttemptCount != 0 || got.LastError != "" || got.Status != outbox.StatusPending {
		t.Errorf("retried event: %+v", got)
	}
	if got, _ := due(t, s, t0, 3000); len(got) != 2500 {
		t.Errorf("%d due after retrying everything, want 2500", len(got))
	}
	assertInvariants(t, s)
}

func TestDeleteCompletedBefore(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	s := mustOpen(t, &boltstore.Options{Now: clk.Now})
	var done []*outbox.Event
	for i := range 5 {
		e := ev("d", "A", 0)
		mustEnqueue(t, s, e)
		complete(t, s, clk.Now(), e)
		done = append(done, e)
		clk.Advance(time.Duration(i+1) * time.Minute)
	}
	pending := ev("d", "", 0)
	mustEnqueue(t, s, pending)
	// Completed at t0, +1m, +3m, +6m, +10m.
	n, err := s.DeleteCompletedBefore(ctx, t0.Add(5*time.Minute), 2)
	if err != nil || n != 2 {
		t.Fatalf("first call: %d, %v; want 2 (the bound)", n, err)
	}
	n, err = s.DeleteCompletedBefore(ctx, t0.Add(5*time.Minute), 0)
	if err != nil || n != 1 {
		t.Fatalf("second call: %d, %v; want 1", n, err)
	}
	for i, e := range done {
		_, err := s.Get(ctx, e.ID)
		if (i < 3) != errors.Is(err, boltstore.ErrNotFound) {
			t.Errorf("event completed at +%d: %v", i, err)
		}
	}
	mustGet(t, s, pending.ID)
	assertInvariants(t, s)
}

func TestDeleteByEntityIDs(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t, nil)
	s.DB().NoSync = true
	enqueueMany(t, s, 2100, func(int) *outbox.Event { return ev("d", "big", 0) })
	a1, a2, b1, c1 := ev("d", "A", 0), ev("d", "A", 0), ev("d", "B", 0), ev("d", "C", 0)
	mustEnqueue(t, s, a1, a2, b1, c1)
	complete(t, s, t0, a1)
	n, err := s.DeleteByEntityIDs(ctx, []string{"big", "A", "", "nope", "B"})
	if err != nil || n != 2100+2+1 {
		t.Fatalf("delete: %d, %v; want 2103", n, err)
	}
	if st := mustStats(t, s); st.Total != 1 {
		t.Errorf("left: %s", fmtStats(st))
	}
	assertDue(t, s, t0, c1)
	// Entities keep their sequence.
	a3 := ev("d", "A", 0)
	mustEnqueue(t, s, a3)
	if a3.EntitySeq != 3 {
		t.Errorf("next event of A: entity_seq %d, want 3", a3.EntitySeq)
	}
	assertInvariants(t, s)
}

func TestDeleteUser(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t, nil)
	a1, a2, b3, a4 := userEv("alice", "E", 0), userEv("alice", "E", 0), userEv("bob", "E", 0), userEv("alice", "", 0)
	mustEnqueue(t, s, a1, a2, b3, a4)
	if _, err := s.DeleteUser(ctx, ""); !errors.Is(err, boltstore.ErrInvalidQuery) {
		t.Errorf("user \"\": %v, want ErrInvalidQuery", err)
	}
	n, err := s.DeleteUser(ctx, "alice")
	if err != nil || n != 3 {
		t.Fatalf("delete alice: %d, %v", n, err)
	}
	assertDue(t, s, t0, b3) // bob's event of E leads now
	if st := mustUserStats(t, s, "alice"); st.Total != 0 {
		t.Errorf("alice: %s", fmtStats(st))
	}
	assertInvariants(t, s)
}

func TestCleanupOrphans(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t, nil)
	s.DB().NoSync = true
	// 2500 entities (three read passes), most with one event; a few more.
	enqueueMany(t, s, 2500, func(i int) *outbox.Event { return ev("o", fmt.Sprint("ent-", i), 0) })
	x1, x2, y1, none := ev("o", "x", 0), ev("o", "x", 0), ev("o", "y", 0), ev("o", "", 0)
	mustEnqueue(t, s, x1, x2, y1, none)
	if _, err := s.DeleteByEntityIDs(ctx, []string{"y"}); err != nil { // y has no events left
		t.Fatal(err)
	}
	var asked []string
	exists := func(id string) bool {
		asked = append(asked, id)
		// Never inside a write transaction: one of ours would block here.
		done := make(chan error)
		go func() { done <- s.DB().Update(func(*bolt.Tx) error { return nil }) }()
		select {
		case err := <-done:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("exists was called while a write transaction was open")
		}
		var n int
		fmt.Sscanf(id, "ent-%d", &n)
		return id != "x" && n%10 != 0 // ent-0, ent-10, ... and x are gone
	}
	n, err := s.CleanupOrphans(ctx, exists)
	if err != nil || n != 250+2 {
		t.Fatalf("cleanup: %d, %v; want 252", n, err)
	}
	if len(asked) != 2501 || slices.Contains(asked, "y") {
		t.Errorf("asked about %d entities (y: %v), want the 2501 with events", len(asked), slices.Contains(asked, "y"))
	}
	if st := mustStats(t, s); st.Total != 2250+1 {
		t.Errorf("left: %s", fmtStats(st))
	}
	assertInvariants(t, s)
}

func TestReset(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t, nil)
	s.DB().NoSync = true
	enqueueMany(t, s, 2345, func(i int) *outbox.Event {
		return userEv(fmt.Sprint("u", i%7), fmt.Sprint("e", i%13), i%10)
	})
	n, err := s.Reset(ctx)
	if err != nil || n != 2345 {
		t.Fatalf("reset: %d, %v", n, err)
	}
	st := mustStats(t, s)
	if st.Total != 0 || st.Bytes != 0 || st.PendingByPriority != ([10]int64{}) {
		t.Errorf("after reset: %s", fmtStats(st))
	}
	e := ev("r", "e0", 0)
	mustEnqueue(t, s, e)
	if e.EntitySeq != 2345/13+2 {
		t.Errorf("entity e0 restarted at %d", e.EntitySeq)
	}
	assertInvariants(t, s)
}

// TestRemoveOnAck: with retention.completed = 0 an acked event is deleted,
// the next event of its entity leads, and the entity's sequence goes on.
func TestRemoveOnAck(t *testing.T) {
	clk := newClock()
	s := mustOpen(t, &boltstore.Options{Now: clk.Now, RemoveOnAck: true})
	a1, a2, x := userEv("alice", "A", 0), userEv("alice", "A", 0), userEv("alice", "", 0)
	mustEnqueue(t, s, a1, a2, x)
	complete(t, s, t0, a1, x)
	for _, e := range []*outbox.Event{a1, x} {
		if _, err := s.Get(context.Background(), e.ID); !errors.Is(err, boltstore.ErrNotFound) {
			t.Errorf("acked event still stored: %v", err)
		}
	}
	assertDue(t, s, t0, a2)
	st, us := mustStats(t, s), mustUserStats(t, s, "alice")
	if tallyOf(st) != (tally{Total: 1, Pending: 1}) || st.NewestCompletedAt == nil || us.NewestCompletedAt == nil {
		t.Errorf("stats: %s, alice %s", fmtStats(st), fmtStats(us))
	}
	complete(t, s, t0, a2)
	a3 := userEv("alice", "A", 0)
	mustEnqueue(t, s, a3)
	if a3.EntitySeq != 3 {
		t.Errorf("a3 entity_seq %d, want 3", a3.EntitySeq)
	}
	assertDue(t, s, t0, a3)
	assertInvariants(t, s)
}
