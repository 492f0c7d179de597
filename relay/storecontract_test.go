package relay_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
	"github.com/fitiqcore/outbox/internal/poll"
	"github.com/fitiqcore/outbox/relay"
)

// contractStore is a relay.Store a test can fill and an operator can edit.
type contractStore interface {
	relay.Store
	Enqueue(ctx context.Context, events ...*outbox.Event) (int, error)
	Delete(ctx context.Context, id string) error
}

// TestStoreContract holds every relay.Store the tests use to the contract
// the relay counts on: *boltstore.Store, and fakeStore, so that the loop's
// fast tests against the fake say something of the real store.
func TestStoreContract(t *testing.T) {
	impls := []struct {
		name string
		open func(t *testing.T, now func() time.Time) contractStore
	}{
		{"fake", func(_ *testing.T, now func() time.Time) contractStore { return newFakeStore(now) }},
		{"boltstore", func(t *testing.T, now func() time.Time) contractStore {
			s, err := boltstore.Open(filepath.Join(t.TempDir(), "outbox.db"), &boltstore.Options{Now: now})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}},
	}
	ctx := context.Background()
	cases := []struct {
		name string
		run  func(t *testing.T, s contractStore, clk *clock)
	}{
		{"Due: highest priority first, FIFO, an entity's head only, skip", func(t *testing.T, s contractStore, clk *clock) {
			a := &outbox.Event{Type: "a", Priority: 1}
			b := &outbox.Event{Type: "b", Priority: 5}
			c := &outbox.Event{Type: "c", Priority: 5}
			d := &outbox.Event{Type: "d", EntityID: "E"}
			e := &outbox.Event{Type: "e", EntityID: "E", Priority: 9}
			enqueue(t, s, a, b, c, d, e)
			due(t, s, clk.Now(), 10, nil, b, c, a, d)
			due(t, s, clk.Now(), 2, nil, b, c)
			due(t, s, clk.Now(), 10, func(seq uint64) bool { return seq == b.Seq }, c, a, d)
		}},
		{"Record: an ack completes the event and readies its entity's next", func(t *testing.T, s contractStore, clk *clock) {
			d := &outbox.Event{Type: "d", EntityID: "E"}
			e := &outbox.Event{Type: "e", EntityID: "E"}
			enqueue(t, s, d, e)
			sent := clk.Now()
			record(t, s, []outbox.Ack{{Seq: d.Seq, At: sent}}, nil, 0)
			if got := get(t, s, d.ID); got.Status != outbox.StatusCompleted || got.AttemptCount != 1 || !got.LastAttemptAt.Equal(sent) {
				t.Errorf("acked: status %s, attempts %d, last attempt %v", got.Status, got.AttemptCount, got.LastAttemptAt)
			}
			due(t, s, clk.Now(), 10, nil, e)
		}},
		{"Record: a failed attempt backs off, and fails the event at max_attempts", func(t *testing.T, s contractStore, clk *clock) {
			x := &outbox.Event{Type: "x", MaxAttempts: 2}
			enqueue(t, s, x)
			retry := clk.Now().Add(time.Second)
			record(t, s, nil, []outbox.Failure{{Seq: x.Seq, At: clk.Now(), Err: "nats: no response from stream", NextAttemptAt: retry}}, 0)
			if got := get(t, s, x.ID); got.Status != outbox.StatusPending || got.AttemptCount != 1 || got.LastError != "nats: no response from stream" || !got.NextAttemptAt.Equal(retry) {
				t.Errorf("after a failed attempt: %+v", got)
			}
			if _, next := due(t, s, clk.Now(), 10, nil); !next.Equal(retry) {
				t.Errorf("next due %v, want %v", next, retry)
			}
			due(t, s, retry, 10, nil, x)
			record(t, s, nil, []outbox.Failure{{Seq: x.Seq, At: retry, Err: "again", NextAttemptAt: retry.Add(time.Second)}}, 0)
			if got := get(t, s, x.ID); got.Status != outbox.StatusFailed || got.AttemptCount != 2 {
				t.Errorf("at max_attempts: status %s, attempts %d, want failed after 2", got.Status, got.AttemptCount)
			}
		}},
		{"Record: an attempt of unknown outcome never fails the event", func(t *testing.T, s contractStore, clk *clock) {
			x := &outbox.Event{Type: "x", MaxAttempts: 1}
			enqueue(t, s, x)
			for i := range 3 {
				at := clk.Now().Add(time.Duration(i) * time.Second)
				due(t, s, at, 10, nil, x)
				record(t, s, nil, []outbox.Failure{{Seq: x.Seq, At: at, Err: "timeout", NextAttemptAt: at.Add(time.Second), Unknown: true}}, 0)
			}
			if got := get(t, s, x.ID); got.Status != outbox.StatusPending || got.AttemptCount != 3 {
				t.Errorf("after 3 unknown outcomes with max_attempts 1: status %s, attempts %d, want pending after 3", got.Status, got.AttemptCount)
			}
		}},
		{"Record: a permanent failure fails the event at once and holds its entity", func(t *testing.T, s contractStore, clk *clock) {
			f1 := &outbox.Event{Type: "f1", EntityID: "F"}
			f2 := &outbox.Event{Type: "f2", EntityID: "F"}
			enqueue(t, s, f1, f2)
			record(t, s, nil, []outbox.Failure{{Seq: f1.Seq, At: clk.Now(), Err: "too large", Permanent: true}}, 0)
			if got := get(t, s, f1.ID); got.Status != outbox.StatusFailed || got.AttemptCount != 1 {
				t.Errorf("permanent: status %s, attempts %d", got.Status, got.AttemptCount)
			}
			due(t, s, clk.Now(), 10, nil) // f2 waits behind its failed head
			// An outcome for an event that is not a pending head is ignored.
			record(t, s, []outbox.Ack{{Seq: f2.Seq, At: clk.Now()}, {Seq: f1.Seq, At: clk.Now()}}, nil, 0)
			if got := get(t, s, f2.ID); got.Status != outbox.StatusPending || got.AttemptCount != 0 {
				t.Errorf("an ack of an event behind its entity's head: status %s, attempts %d, want left alone", got.Status, got.AttemptCount)
			}
			if got := get(t, s, f1.ID); got.Status != outbox.StatusFailed {
				t.Errorf("an ack of a failed event: status %s, want left alone", got.Status)
			}
			if err := s.Delete(ctx, f1.ID); err != nil {
				t.Fatal(err)
			}
			record(t, s, []outbox.Ack{{Seq: f1.Seq, At: clk.Now()}}, nil, 0) // deleted: ignored
			due(t, s, clk.Now(), 10, nil, f2)
		}},
		{"ReadBackMark: the last mark recorded, 0 leaving it", func(t *testing.T, s contractStore, _ *clock) {
			if from, since, err := s.ReadBackMark(ctx); err != nil || from != 0 || !since.IsZero() {
				t.Fatalf("a new store's mark: %d %v %v", from, since, err)
			}
			record(t, s, nil, nil, 42)
			record(t, s, nil, nil, 0)
			if from, _, err := s.ReadBackMark(ctx); err != nil || from != 42 {
				t.Errorf("mark %d %v, want 42", from, err)
			}
		}},
		{"Get: outbox.ErrNotFound for no such id", func(t *testing.T, s contractStore, _ *clock) {
			x := &outbox.Event{Type: "x"}
			enqueue(t, s, x)
			if err := s.Delete(ctx, x.ID); err != nil {
				t.Fatal(err)
			}
			for _, id := range []string{x.ID, "0190a5b4-7c3e-7def-8123-456789abcdef"} {
				if _, err := s.Get(ctx, id); !errors.Is(err, outbox.ErrNotFound) {
					t.Errorf("Get(%s): %v, want outbox.ErrNotFound", id, err)
				}
			}
		}},
		{"Notify: signalled after an enqueue", func(t *testing.T, s contractStore, _ *clock) {
			drain(s.Notify())
			enqueue(t, s, &outbox.Event{Type: "x"})
			signalled := false
			poll.Until(t, time.Second, "a signal", func() bool {
				select {
				case <-s.Notify():
					signalled = true
				default:
				}
				return signalled
			})
		}},
	}
	for _, impl := range impls {
		for _, c := range cases {
			t.Run(impl.name+"/"+c.name, func(t *testing.T) {
				clk := newClock()
				c.run(t, impl.open(t, clk.Now), clk)
			})
		}
	}
}

func enqueue(t *testing.T, s contractStore, events ...*outbox.Event) {
	t.Helper()
	if _, err := s.Enqueue(context.Background(), events...); err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, s relay.Store, id string) *outbox.Event {
	t.Helper()
	e, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func record(t *testing.T, s relay.Store, acks []outbox.Ack, fails []outbox.Failure, mark uint64) {
	t.Helper()
	if err := s.Record(context.Background(), acks, fails, mark); err != nil {
		t.Fatal(err)
	}
}

// due asks s for up to n events due at now and checks they are want, in
// order; it returns them and next.
func due(t *testing.T, s relay.Store, now time.Time, n int, skip func(uint64) bool, want ...*outbox.Event) ([]*outbox.Event, time.Time) {
	t.Helper()
	got, next, err := s.Due(context.Background(), now, n, skip)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids(got), ids(want)) {
		t.Errorf("Due(%d) = %v, want %v", n, types(got), types(want))
	}
	return got, next
}

func types(events []*outbox.Event) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.Type
	}
	return out
}

func drain(c <-chan struct{}) {
	for {
		select {
		case <-c:
		default:
			return
		}
	}
}
