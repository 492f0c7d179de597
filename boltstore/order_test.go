package boltstore_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
)

func TestDuePriorityOrder(t *testing.T) {
	s := mustOpen(t, &boltstore.Options{Now: newClock().Now})
	var all []*outbox.Event
	for i := range 40 {
		e := ev(fmt.Sprintf("t.p%d", (i*7)%10), "", (i*7)%10) // 0 7 4 1 8 5 2 9 6 3 0 7 ...
		mustEnqueue(t, s, e)
		all = append(all, e)
	}
	want := slices.Clone(all)
	slices.SortStableFunc(want, func(a, b *outbox.Event) int { return b.Priority - a.Priority }) // FIFO within a priority
	odd := func(seq uint64) bool { return seq%2 == 1 }

	tests := []struct {
		name string
		n    int
		skip func(uint64) bool
		want []*outbox.Event
	}{
		{"all", 100, nil, want},
		{"n limits", 5, nil, want[:5]},
		{"n exact", 40, nil, want},
		{"n zero", 0, nil, nil},
		{"skip odd seqs", 100, odd, slices.DeleteFunc(slices.Clone(want), func(e *outbox.Event) bool { return odd(e.Seq) })},
		{"skip and limit", 3, odd, slices.DeleteFunc(slices.Clone(want), func(e *outbox.Event) bool { return odd(e.Seq) })[:3]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, next, err := s.Due(context.Background(), t0, tt.n, tt.skip)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(seqs(got), seqs(tt.want)) {
				t.Errorf("Due = %v\nwant  %v", label(got), label(tt.want))
			}
			if !next.IsZero() {
				t.Errorf("next = %v, want zero (nothing in backoff)", next)
			}
		})
	}
}

// TestDueOrdersBackoffWithReady checks that an event whose backoff has passed
// takes its place by priority among the ready events, whether or not the
// result is cut at n.
func TestDueOrdersBackoffWithReady(t *testing.T) {
	clk := newClock()
	s := mustOpen(t, &boltstore.Options{Now: clk.Now})
	low := ev("low", "", 0)
	mid := ev("mid", "", 5)
	mustEnqueue(t, s, low, mid)
	fail(t, s,
		boltstore.Failure{Seq: low.Seq, At: t0, Err: "x", NextAttemptAt: t0.Add(time.Second)},
		boltstore.Failure{Seq: mid.Seq, At: t0, Err: "x", NextAttemptAt: t0.Add(time.Second)})
	high := ev("high", "", 9)
	low2 := ev("low2", "", 0)
	mustEnqueue(t, s, high, low2)

	later := t0.Add(2 * time.Second)
	tests := []struct {
		n    int
		want []*outbox.Event
	}{
		{10, []*outbox.Event{high, mid, low, low2}},
		{4, []*outbox.Event{high, mid, low, low2}},
		{3, []*outbox.Event{high, mid, low}},
		{2, []*outbox.Event{high, mid}},
		{1, []*outbox.Event{high}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint("n=", tt.n), func(t *testing.T) {
			got, _ := due(t, s, later, tt.n)
			if !slices.Equal(seqs(got), seqs(tt.want)) {
				t.Errorf("Due(n=%d) = %v, want %v", tt.n, label(got), label(tt.want))
			}
		})
	}
}

func TestPerEntityOrder(t *testing.T) {
	ctx := context.Background()
	later := t0.Add(time.Hour)

	t.Run("entity_seq gapless, only heads due", func(t *testing.T) {
		s := mustOpen(t, nil)
		a1, b1, a2, b2, a3 := ev("a1", "A", 0), ev("b1", "B", 0), ev("a2", "A", 0), ev("b2", "B", 0), ev("a3", "A", 0)
		mustEnqueue(t, s, a1, b1)
		mustEnqueue(t, s, a2)
		mustEnqueue(t, s, b2, a3)
		for _, c := range []struct {
			e    *outbox.Event
			want uint64
		}{{a1, 1}, {a2, 2}, {a3, 3}, {b1, 1}, {b2, 2}} {
			if c.e.EntitySeq != c.want {
				t.Errorf("%s: entity_seq %d, want %d", c.e.Type, c.e.EntitySeq, c.want)
			}
			if got := mustGet(t, s, c.e.ID).EntitySeq; got != c.want {
				t.Errorf("%s: stored entity_seq %d, want %d", c.e.Type, got, c.want)
			}
		}
		assertDue(t, s, later, a1, b1)
		complete(t, s, later, a1, b1)
		assertDue(t, s, later, a2, b2)
		complete(t, s, later, a2, b2)
		assertDue(t, s, later, a3)
		complete(t, s, later, a3)
		assertDue(t, s, later)
		a4 := ev("a4", "A", 0)
		mustEnqueue(t, s, a4)
		if a4.EntitySeq != 4 {
			t.Errorf("a4: entity_seq %d, want 4", a4.EntitySeq)
		}
		assertDue(t, s, later, a4)
	})

	t.Run("complete promotes the successor at its own priority", func(t *testing.T) {
		s := mustOpen(t, nil)
		a1, a2 := ev("a1", "A", 9), ev("a2", "A", 0)
		b1, x := ev("b1", "B", 5), ev("x", "", 3)
		mustEnqueue(t, s, a1, a2, b1, x)
		assertDue(t, s, later, a1, b1, x)
		complete(t, s, later, a1)
		got := assertDue(t, s, later, b1, x, a2)
		if got[2].Priority != 0 {
			t.Errorf("promoted event has priority %d, want 0", got[2].Priority)
		}
	})

	t.Run("backoff", func(t *testing.T) {
		s := mustOpen(t, nil)
		a1, a2 := ev("a1", "A", 0), ev("a2", "A", 0)
		mustEnqueue(t, s, a1, a2)
		retryAt := t0.Add(time.Minute)
		fail(t, s, boltstore.Failure{Seq: a1.Seq, At: t0, Err: "timeout", NextAttemptAt: retryAt})
		for _, now := range []time.Time{t0, retryAt.Add(-time.Nanosecond)} {
			got, next := due(t, s, now, 10)
			if len(got) != 0 {
				t.Errorf("Due(%v) = %v, want nothing before the backoff ends", now, label(got))
			}
			if !next.Equal(retryAt) {
				t.Errorf("Due(%v): next = %v, want %v", now, next, retryAt)
			}
		}
		for _, now := range []time.Time{retryAt, later} {
			got, next := due(t, s, now, 10)
			if !slices.Equal(seqs(got), seqs([]*outbox.Event{a1})) {
				t.Errorf("Due(%v) = %v, want a1", now, label(got))
			}
			if !next.IsZero() {
				t.Errorf("Due(%v): next = %v, want zero", now, next)
			}
		}
		complete(t, s, later, a1)
		assertDue(t, s, later, a2)
	})

	t.Run("permanent failure blocks the entity until retried", func(t *testing.T) {
		s := mustOpen(t, nil)
		a1, a2, a3, b1 := ev("a1", "A", 0), ev("a2", "A", 0), ev("a3", "A", 0), ev("b1", "B", 0)
		mustEnqueue(t, s, a1, a2, a3, b1)
		fail(t, s, boltstore.Failure{Seq: a1.Seq, At: t0, Err: "rejected", Permanent: true})
		if got := mustGet(t, s, a1.ID); got.Status != outbox.StatusFailed {
			t.Fatalf("a1 is %s, want failed", got.Status)
		}
		for _, e := range []*outbox.Event{a2, a3} {
			if got := mustGet(t, s, e.ID); got.Status != outbox.StatusPending {
				t.Errorf("%s is %s, want pending", e.Type, got.Status)
			}
		}
		assertDue(t, s, later, b1)
		a4 := ev("a4", "A", 9)
		mustEnqueue(t, s, a4)
		assertDue(t, s, later.Add(24*time.Hour), b1)

		r, err := s.Retry(ctx, a1.ID)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != outbox.StatusPending || r.AttemptCount != 0 || r.LastError != "" {
			t.Errorf("retried: %s, %d attempts, last error %q; want pending, 0, empty", r.Status, r.AttemptCount, r.LastError)
		}
		if got := mustGet(t, s, a1.ID); got.AttemptCount != 0 || got.Status != outbox.StatusPending {
			t.Errorf("stored after retry: %s, %d attempts", got.Status, got.AttemptCount)
		}
		assertDue(t, s, later, a1, b1)
		complete(t, s, later, a1)
		assertDue(t, s, later, a2, b1)
	})

	t.Run("delete a failed head", func(t *testing.T) {
		s := mustOpen(t, nil)
		a1, a2 := ev("a1", "A", 0), ev("a2", "A", 0)
		mustEnqueue(t, s, a1, a2)
		fail(t, s, boltstore.Failure{Seq: a1.Seq, Err: "rejected", Permanent: true})
		if err := s.Delete(ctx, a1.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, a1.ID); !errors.Is(err, boltstore.ErrNotFound) {
			t.Errorf("Get deleted: %v, want ErrNotFound", err)
		}
		assertDue(t, s, later, a2)
	})

	t.Run("delete a pending head", func(t *testing.T) {
		s := mustOpen(t, nil)
		a1, a2 := ev("a1", "A", 0), ev("a2", "A", 0)
		mustEnqueue(t, s, a1, a2)
		if err := s.Delete(ctx, a1.ID); err != nil {
			t.Fatal(err)
		}
		assertDue(t, s, later, a2)
	})

	t.Run("delete a head in backoff", func(t *testing.T) {
		s := mustOpen(t, nil)
		a1, a2 := ev("a1", "A", 0), ev("a2", "A", 0)
		mustEnqueue(t, s, a1, a2)
		fail(t, s, boltstore.Failure{Seq: a1.Seq, Err: "x", NextAttemptAt: later.Add(time.Hour)})
		if err := s.Delete(ctx, a1.ID); err != nil {
			t.Fatal(err)
		}
		got, next := due(t, s, later, 10)
		if !slices.Equal(seqs(got), seqs([]*outbox.Event{a2})) || !next.IsZero() {
			t.Errorf("Due = %v, next %v; want a2 and no backoff", label(got), next)
		}
	})

	t.Run("delete a non-head", func(t *testing.T) {
		s := mustOpen(t, nil)
		a1, a2, a3 := ev("a1", "A", 0), ev("a2", "A", 0), ev("a3", "A", 0)
		mustEnqueue(t, s, a1, a2, a3)
		if err := s.Delete(ctx, a2.ID); err != nil {
			t.Fatal(err)
		}
		assertDue(t, s, later, a1)
		complete(t, s, later, a1)
		assertDue(t, s, later, a3)
		complete(t, s, later, a3)
		assertDue(t, s, later)
		if st := mustStats(t, s); tallyOf(st) != tallyOf(boltstore.Stats{Total: 2, Completed: 2}) {
			t.Errorf("Stats = %+v", st)
		}
	})

	t.Run("delete a completed event", func(t *testing.T) {
		s := mustOpen(t, nil)
		a1, a2 := ev("a1", "A", 0), ev("a2", "A", 0)
		mustEnqueue(t, s, a1, a2)
		complete(t, s, later, a1)
		if err := s.Delete(ctx, a1.ID); err != nil {
			t.Fatal(err)
		}
		assertDue(t, s, later, a2)
		a3 := ev("a3", "A", 0)
		mustEnqueue(t, s, a3)
		assertDue(t, s, later, a2)
	})

	t.Run("errors", func(t *testing.T) {
		s := mustOpen(t, nil)
		a1, a2 := ev("a1", "A", 0), ev("a2", "A", 0)
		mustEnqueue(t, s, a1, a2)
		complete(t, s, later, a1)
		tests := []struct {
			name string
			op   func() error
			want error
		}{
			{"retry pending", func() error { _, err := s.Retry(ctx, a2.ID); return err }, boltstore.ErrNotRetryable},
			{"retry completed", func() error { _, err := s.Retry(ctx, a1.ID); return err }, boltstore.ErrNotRetryable},
			{"retry unknown", func() error { _, err := s.Retry(ctx, "0190a5b4-7c3e-7def-8123-456789abcdef"); return err }, boltstore.ErrNotFound},
			{"retry malformed id", func() error { _, err := s.Retry(ctx, "nope"); return err }, boltstore.ErrNotFound},
			{"delete unknown", func() error { return s.Delete(ctx, "0190a5b4-7c3e-7def-8123-456789abcdef") }, boltstore.ErrNotFound},
			{"get unknown", func() error { _, err := s.Get(ctx, "0190a5b4-7c3e-7def-8123-456789abcdef"); return err }, boltstore.ErrNotFound},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if err := tt.op(); !errors.Is(err, tt.want) {
					t.Errorf("err = %v, want %v", err, tt.want)
				}
			})
		}
		assertDue(t, s, later, a2)
	})

	t.Run("ack or failure of a pending non-head is ignored", func(t *testing.T) {
		// Complete and Fail take seqs from the caller; one that does not lead
		// its entity (a stale or mistaken seq) must not reorder the entity.
		s := mustOpen(t, nil)
		a1, a2, a3 := ev("a1", "A", 0), ev("a2", "A", 0), ev("a3", "A", 0)
		mustEnqueue(t, s, a1, a2, a3)
		complete(t, s, later, a2)
		fail(t, s, boltstore.Failure{Seq: a3.Seq, Err: "x", NextAttemptAt: later})
		assertInvariants(t, s)
		for _, e := range []*outbox.Event{a2, a3} {
			if got := mustGet(t, s, e.ID); got.Status != outbox.StatusPending || got.AttemptCount != 0 {
				t.Errorf("%s: %s after %d attempts, want untouched", e.Type, got.Status, got.AttemptCount)
			}
		}
		assertDue(t, s, later, a1)
	})
}

func TestFailBookkeeping(t *testing.T) {
	ctx := context.Background()
	t.Run("attempts, error, times", func(t *testing.T) {
		clk := newClock()
		s := mustOpen(t, &boltstore.Options{Now: clk.Now})
		e := ev("a", "A", 0)
		e.MaxAttempts = 3
		mustEnqueue(t, s, e)
		for i := 1; i <= 2; i++ {
			at := t0.Add(time.Duration(i) * time.Minute)
			next := at.Add(time.Second)
			fail(t, s, boltstore.Failure{Seq: e.Seq, At: at, Err: fmt.Sprint("boom ", i), NextAttemptAt: next})
			got := mustGet(t, s, e.ID)
			if got.AttemptCount != i || got.LastError != fmt.Sprint("boom ", i) || !got.LastAttemptAt.Equal(at) ||
				!got.NextAttemptAt.Equal(next) || got.Status != outbox.StatusPending {
				t.Fatalf("after failure %d: %+v", i, got)
			}
		}
		at := t0.Add(time.Hour)
		fail(t, s, boltstore.Failure{Seq: e.Seq, At: at, Err: strings.Repeat("x", 10000), NextAttemptAt: at.Add(time.Second)})
		got := mustGet(t, s, e.ID)
		if got.Status != outbox.StatusFailed || got.AttemptCount != 3 || !got.NextAttemptAt.IsZero() {
			t.Fatalf("at max_attempts: %s, %d attempts, next %v; want failed, 3, zero", got.Status, got.AttemptCount, got.NextAttemptAt)
		}
		if len(got.LastError) > 4100 {
			t.Errorf("last_error of %d bytes not truncated", len(got.LastError))
		}
		if st := mustStats(t, s); tallyOf(st) != tallyOf(boltstore.Stats{Total: 1, Failed: 1}) {
			t.Errorf("Stats = %+v", st)
		}
		assertDue(t, s, at.Add(time.Hour))
	})

	t.Run("max_attempts 1", func(t *testing.T) {
		s := mustOpen(t, nil)
		e := ev("a", "", 0)
		e.MaxAttempts = 1
		mustEnqueue(t, s, e)
		fail(t, s, boltstore.Failure{Seq: e.Seq, Err: "x", NextAttemptAt: t0})
		if got := mustGet(t, s, e.ID); got.Status != outbox.StatusFailed {
			t.Errorf("status %s, want failed", got.Status)
		}
	})

	t.Run("retry with no backoff", func(t *testing.T) {
		s := mustOpen(t, nil)
		e := ev("a", "", 4)
		mustEnqueue(t, s, e)
		fail(t, s, boltstore.Failure{Seq: e.Seq, Err: "x"})
		assertDue(t, s, t0, e)
	})

	t.Run("complete", func(t *testing.T) {
		clk := newClock()
		s := mustOpen(t, &boltstore.Options{Now: clk.Now})
		e := ev("a", "A", 0)
		mustEnqueue(t, s, e)
		fail(t, s, boltstore.Failure{Seq: e.Seq, At: t0, Err: "x", NextAttemptAt: t0.Add(time.Second)})
		sent := t0.Add(2 * time.Second)
		now := clk.Advance(3 * time.Second)
		complete(t, s, sent, e)
		got := mustGet(t, s, e.ID)
		if got.Status != outbox.StatusCompleted || got.AttemptCount != 2 || !got.CompletedAt.Equal(now) ||
			!got.LastAttemptAt.Equal(sent) || !got.NextAttemptAt.IsZero() {
			t.Fatalf("completed: %+v", got)
		}
		if st := mustStats(t, s); tallyOf(st) != tallyOf(boltstore.Stats{Total: 1, Completed: 1}) {
			t.Errorf("Stats = %+v", st)
		}
		// A second ack changes nothing.
		complete(t, s, sent.Add(time.Hour), e)
		if again := mustGet(t, s, e.ID); again.AttemptCount != 2 || !again.LastAttemptAt.Equal(sent) {
			t.Errorf("second ack changed the event: %+v", again)
		}
		// Nor does a failure.
		fail(t, s, boltstore.Failure{Seq: e.Seq, Err: "late", Permanent: true})
		if again := mustGet(t, s, e.ID); again.Status != outbox.StatusCompleted {
			t.Errorf("failure after completion: %s", again.Status)
		}
	})

	t.Run("deleted or unknown seq", func(t *testing.T) {
		s := mustOpen(t, nil)
		e, keep := ev("a", "A", 0), ev("b", "", 0)
		mustEnqueue(t, s, e, keep)
		if err := s.Delete(ctx, e.ID); err != nil {
			t.Fatal(err)
		}
		for _, seq := range []uint64{e.Seq, 999} {
			if err := s.Complete(ctx, []boltstore.Ack{{Seq: seq, At: t0}}); err != nil {
				t.Errorf("Complete(seq %d): %v", seq, err)
			}
			if err := s.Fail(ctx, []boltstore.Failure{{Seq: seq, Err: "x", Permanent: true}}); err != nil {
				t.Errorf("Fail(seq %d): %v", seq, err)
			}
		}
		if st := mustStats(t, s); tallyOf(st) != tallyOf(boltstore.Stats{Total: 1, Pending: 1}) {
			t.Errorf("Stats = %+v", st)
		}
		assertDue(t, s, t0, keep)
	})

	t.Run("canceled context", func(t *testing.T) {
		s := mustOpen(t, nil)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		checks := []struct {
			name string
			err  error
		}{
			{"Complete", s.Complete(cctx, nil)},
			{"Fail", s.Fail(cctx, nil)},
			{"Delete", s.Delete(cctx, "0190a5b4-7c3e-7def-8123-456789abcdef")},
		}
		_, err := s.Enqueue(cctx, ev("a", "", 0))
		checks = append(checks, struct {
			name string
			err  error
		}{"Enqueue", err})
		_, _, err = s.Due(cctx, t0, 1, nil)
		checks = append(checks, struct {
			name string
			err  error
		}{"Due", err})
		for _, c := range checks {
			if !errors.Is(c.err, context.Canceled) {
				t.Errorf("%s: %v, want context.Canceled", c.name, c.err)
			}
		}
		if st := mustStats(t, s); st.Total != 0 {
			t.Errorf("Stats = %+v", st)
		}
	})
}

// byPriority orders events as Due promises: priority descending, then seq.
func byPriority(a, b *outbox.Event) int {
	if c := cmp.Compare(b.Priority, a.Priority); c != 0 {
		return c
	}
	return cmp.Compare(a.Seq, b.Seq)
}
