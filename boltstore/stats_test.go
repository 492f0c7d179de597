package boltstore_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
	bolt "go.etcd.io/bbolt"
)

func userEv(user, entity string, prio int) *outbox.Event {
	e := ev("stats.event", entity, prio)
	e.UserID = user
	return e
}

func mustUserStats(t testing.TB, s *boltstore.Store, user string) boltstore.Stats {
	t.Helper()
	st, err := s.UserStats(context.Background(), user)
	if err != nil {
		t.Fatalf("user stats %q: %v", user, err)
	}
	return st
}

func TestStatsPerUser(t *testing.T) {
	clk := newClock()
	s := mustOpen(t, &boltstore.Options{Now: clk.Now, StaleAfter: time.Hour})

	if st := mustStats(t, s); st.SuccessRate != 1 || st.HasIssues || st.OldestPendingAt != nil || st.NewestCompletedAt != nil || st.Bytes != 0 {
		t.Fatalf("empty store: %s", fmtStats(st))
	}
	a1, a2, a3 := userEv("alice", "", 1), userEv("alice", "", 7), userEv("alice", "", 7)
	b1, b2 := userEv("bob", "", 0), userEv("bob", "", 9)
	n1 := userEv("", "", 3)
	mustEnqueue(t, s, a1, b1, n1)
	clk.Advance(time.Minute)
	mustEnqueue(t, s, a2, a3, b2)
	completedAt := clk.Advance(time.Minute)
	complete(t, s, completedAt, a1, b1)
	fail(t, s, boltstore.Failure{Seq: a2.Seq, At: completedAt, Err: "x", Permanent: true})

	all := mustStats(t, s)
	want := tally{Total: 6, Pending: 3, Completed: 2, Failed: 1}
	if tallyOf(all) != want || all.PendingByPriority != [10]int64{3: 1, 7: 1, 9: 1} {
		t.Errorf("Stats = %s", fmtStats(all))
	}
	if all.SuccessRate != 2.0/3 || !all.HasIssues {
		t.Errorf("Stats: success rate %v, has issues %v", all.SuccessRate, all.HasIssues)
	}
	if all.OldestPendingAt == nil || !all.OldestPendingAt.Equal(t0) || all.NewestCompletedAt == nil || !all.NewestCompletedAt.Equal(completedAt) {
		t.Errorf("Stats times: %s", fmtStats(all))
	}

	alice := mustUserStats(t, s, "alice")
	if tallyOf(alice) != (tally{Total: 3, Pending: 1, Completed: 1, Failed: 1}) || alice.SuccessRate != 0.5 || !alice.HasIssues {
		t.Errorf("alice: %s", fmtStats(alice))
	}
	if alice.OldestPendingAt == nil || !alice.OldestPendingAt.Equal(t0.Add(time.Minute)) {
		t.Errorf("alice oldest pending: %v, want a3's created_at", alice.OldestPendingAt)
	}
	if alice.NewestCompletedAt == nil || !alice.NewestCompletedAt.Equal(completedAt) {
		t.Errorf("alice newest completed: %v", alice.NewestCompletedAt)
	}
	if alice.PendingByPriority != ([10]int64{}) {
		t.Errorf("alice pending by priority %v, want zero per user", alice.PendingByPriority)
	}
	bob := mustUserStats(t, s, "bob")
	if tallyOf(bob) != (tally{Total: 2, Pending: 1, Completed: 1}) || bob.HasIssues || bob.SuccessRate != 1 {
		t.Errorf("bob: %s", fmtStats(bob))
	}
	if alice.Bytes <= 0 || bob.Bytes <= 0 || alice.Bytes+bob.Bytes >= all.Bytes {
		t.Errorf("bytes: alice %d + bob %d, all %d (with an event of no user)", alice.Bytes, bob.Bytes, all.Bytes)
	}
	if nobody := mustUserStats(t, s, "nobody"); !statsEqual(nobody, boltstore.Stats{SuccessRate: 1}) {
		t.Errorf("unknown user: %s", fmtStats(nobody))
	}
	if st := mustUserStats(t, s, ""); !statsEqual(st, all) {
		t.Errorf(`UserStats("") = %s, want Stats %s`, fmtStats(st), fmtStats(all))
	}

	// A user whose events are all gone has no statistics left.
	if _, err := s.DeleteUser(context.Background(), "bob"); err != nil {
		t.Fatal(err)
	}
	if st := mustUserStats(t, s, "bob"); !statsEqual(st, boltstore.Stats{SuccessRate: 1}) {
		t.Errorf("bob after delete: %s", fmtStats(st))
	}
	assertInvariants(t, s)
}

// TestStale drives the stale counters with a fake clock: Stats counts the
// events that became stale since the last sweep at read time, the sweep
// folds them into the counters, and events leaving pending leave the count.
func TestStale(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	s := mustOpen(t, &boltstore.Options{Now: clk.Now, StaleAfter: 5 * time.Minute})
	stale := func(user string) int64 { return mustUserStats(t, s, user).Stale }
	staleIDs := func(user string) []string {
		es, err := s.StaleEvents(ctx, user, 0)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, e := range es {
			ids = append(ids, e.ID)
		}
		return ids
	}

	a1, a2, b1 := userEv("alice", "A", 0), userEv("alice", "A", 0), userEv("bob", "", 0)
	mustEnqueue(t, s, a1, a2, b1)
	clk.Advance(4 * time.Minute)
	b2 := userEv("bob", "", 0)
	mustEnqueue(t, s, b2)
	if n := stale(""); n != 0 {
		t.Fatalf("after 4m: %d stale", n)
	}
	clk.Advance(2 * time.Minute) // a1, a2, b1 are 6m old; b2 2m
	if n, na, nb := stale(""), stale("alice"), stale("bob"); n != 3 || na != 2 || nb != 1 {
		t.Fatalf("after 6m, before any sweep: stale all %d alice %d bob %d, want 3 2 1", n, na, nb)
	}
	if st := mustStats(t, s); !st.HasIssues {
		t.Errorf("stale events but no issues: %s", fmtStats(st))
	}
	if got, want := staleIDs(""), []string{a1.ID, a2.ID, b1.ID}; !slices.Equal(got, want) {
		t.Errorf("StaleEvents = %v, want %v (oldest first)", got, want)
	}
	if got := staleIDs("bob"); !slices.Equal(got, []string{b1.ID}) {
		t.Errorf("StaleEvents(bob) = %v", got)
	}
	if _, err := s.SweepOnce(ctx); err != nil {
		t.Fatal(err)
	}
	assertInvariants(t, s) // the counters now hold them, relative to the new watermark
	if n, na, nb := stale(""), stale("alice"), stale("bob"); n != 3 || na != 2 || nb != 1 {
		t.Fatalf("after the sweep: stale all %d alice %d bob %d, want 3 2 1", n, na, nb)
	}

	// Leaving pending leaves the count: a completion, a failure, a delete.
	complete(t, s, clk.Now(), a1)
	if n, na := stale(""), stale("alice"); n != 2 || na != 1 {
		t.Fatalf("after completing a1: %d stale, alice %d", n, na)
	}
	fail(t, s, boltstore.Failure{Seq: a2.Seq, At: clk.Now(), Err: "x", Permanent: true})
	if err := s.Delete(ctx, b1.ID); err != nil {
		t.Fatal(err)
	}
	if n := stale(""); n != 0 {
		t.Fatalf("after a2 failed and b1 deleted: %d stale", n)
	}
	// A retried event becomes pending, and stale at once.
	if _, err := s.Retry(ctx, a2.ID); err != nil {
		t.Fatal(err)
	}
	if n := stale("alice"); n != 1 {
		t.Fatalf("after retrying a2: alice %d stale, want 1", n)
	}
	clk.Advance(4 * time.Minute) // b2 is 6m old
	if n := stale(""); n != 2 {
		t.Fatalf("b2 stale too: %d, want 2", n)
	}
	// The clock going back un-stales events, before and after a sweep.
	clk.Advance(-4 * time.Minute) // 6m after t0: a2 stale, b2 not
	if n := stale(""); n != 1 {
		t.Fatalf("clock back: %d stale, want 1 (a2)", n)
	}
	if _, err := s.SweepOnce(ctx); err != nil {
		t.Fatal(err)
	}
	assertInvariants(t, s)
	if n := stale(""); n != 1 {
		t.Fatalf("clock back, swept: %d stale, want 1", n)
	}
	// An event enqueued with an old created_at is not stale: staleness
	// counts from when the store accepted it, never from the client's clock
	// (issue 9 row 9). It is stale once stale_after has passed since.
	old := userEv("carol", "", 0)
	old.CreatedAt = t0.Add(-time.Hour)
	mustEnqueue(t, s, old)
	if n, nc := stale(""), stale("carol"); n != 1 || nc != 0 {
		t.Fatalf("old created_at: %d stale, carol %d; want 1 (a2), 0", n, nc)
	}
	if got := mustGet(t, s, old.ID); !got.CreatedAt.Equal(t0.Add(-time.Hour)) || !got.AcceptedAt.Equal(clk.Now()) {
		t.Errorf("created_at %v accepted_at %v, want the client's and the store's", got.CreatedAt, got.AcceptedAt)
	}
	clk.Advance(6 * time.Minute)
	if nc := stale("carol"); nc != 1 {
		t.Fatalf("6m after it was accepted: carol %d stale, want 1", nc)
	}
	assertInvariants(t, s)
}

// TestAdmissionIgnoresClientClock: max_pending_age measures the age of the
// oldest pending event from when the store accepted it. Before, one POST with
// created_at far in the past made every later enqueue answer "outbox full"
// (issue 9 row 9).
func TestAdmissionIgnoresClientClock(t *testing.T) {
	clk := newClock()
	s := mustOpen(t, &boltstore.Options{Now: clk.Now, MaxPendingAge: time.Hour})
	old := userEv("mallory", "", 0)
	old.CreatedAt = time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	mustEnqueue(t, s, old)
	mustEnqueue(t, s, userEv("alice", "", 0)) // not full: the oldest was accepted just now
	clk.Advance(time.Hour + time.Second)
	_, err := s.Enqueue(context.Background(), userEv("alice", "", 0))
	var full *boltstore.FullError
	if !errors.As(err, &full) || full.Mark != "max_pending_age" {
		t.Fatalf("an hour after acceptance: %v, want max_pending_age", err)
	}
}

// TestStaleManyAtOnce: more events than a Stats read corrects for become
// stale between sweeps. Stats then reports a lower bound, until the sweep
// (which works in transactions of 10,000 events) catches up; moving the
// clock back uncounts them.
func TestStaleManyAtOnce(t *testing.T) {
	const n = 12_345
	ctx := context.Background()
	clk := newClock()
	s := mustOpen(t, &boltstore.Options{Now: clk.Now, StaleAfter: time.Minute})
	s.DB().NoSync = true
	enqueueMany(t, s, n, func(i int) *outbox.Event { return userEv([]string{"", "u1", "u2"}[i%3], "", i%10) })
	clk.Advance(2 * time.Minute)
	if st := mustStats(t, s); st.Stale != 1024 {
		t.Errorf("before the sweep: %d stale, want the read limit 1024", st.Stale)
	}
	if _, err := s.SweepOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if st, u1 := mustStats(t, s), mustUserStats(t, s, "u1"); st.Stale != n || u1.Stale != n/3 {
		t.Errorf("after the sweep: %d stale, u1 %d; want %d, %d", st.Stale, u1.Stale, n, n/3)
	}
	assertInvariants(t, s)
	clk.Advance(-2 * time.Minute)
	if _, err := s.SweepOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if st := mustStats(t, s); st.Stale != 0 {
		t.Errorf("clock back, swept: %d stale", st.Stale)
	}
	assertInvariants(t, s)
}

// enqueueMany enqueues n events made by mk in transactions of 10,000.
func enqueueMany(t testing.TB, s *boltstore.Store, n int, mk func(i int) *outbox.Event) []*outbox.Event {
	t.Helper()
	out := make([]*outbox.Event, 0, n)
	for done := 0; done < n; done += 10_000 {
		es := make([]*outbox.Event, min(10_000, n-done))
		for i := range es {
			es[i] = mk(done + i)
		}
		if err := s.DB().Update(func(tx *bolt.Tx) error {
			_, err := s.EnqueueTx(tx, es...)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		out = append(out, es...)
	}
	return out
}
