package relay_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
	"github.com/fitiqcore/outbox/internal/natstest"
	"github.com/fitiqcore/outbox/internal/poll"
	"github.com/fitiqcore/outbox/publisher"
	"github.com/fitiqcore/outbox/relay"
	"github.com/nats-io/nats.go/jetstream"
)

// dueCounting is the real store, counting the relay's calls of Due: a relay
// that waits for a delayed event by its timer calls it a few times, one
// that polls calls it again and again.
type dueCounting struct {
	*boltstore.Store
	dues atomic.Int64
}

func (s *dueCounting) Due(ctx context.Context, now time.Time, n int, skip func(uint64) bool) ([]*outbox.Event, time.Time, error) {
	s.dues.Add(1)
	return s.Store.Due(ctx, now, n, skip)
}

// runRelay runs a relay on store and pub until the test ends or stop is
// called.
func runRelay(t *testing.T, store relay.Store, pub *publisher.Publisher) (stop func()) {
	t.Helper()
	r, err := relay.New(store, pub, relay.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay.Run: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

// storedAt reads the stream's messages with the time the server stored each.
func storedAt(t *testing.T, js jetstream.JetStream) map[string]time.Time {
	t.Helper()
	ctx := context.Background()
	c, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	at := map[string]time.Time{}
	for {
		b, err := c.Fetch(100, jetstream.FetchMaxWait(300*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range b.Messages() {
			n++
			md, _ := m.Metadata()
			at[m.Headers().Get(outbox.HeaderID)] = md.Timestamp
		}
		if n == 0 {
			return at
		}
	}
}

// An event with deliver_at is published no earlier than that, with
// ce-deliverat; the later events of its entity wait behind it, other
// entities' do not; the relay waits by its timer, not by polling; and the
// delay holds across a restart of the relay.
func TestDelayedDelivery(t *testing.T) {
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	raw, err := boltstore.Open(t.TempDir()+"/outbox.db", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	store := &dueCounting{Store: raw}
	pub, err := publisher.Connect(publisher.Config{URL: ns.URL(), SubjectPrefix: "t", Stream: publisher.StreamConfig{Manage: true, Name: stream}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pub.Close)
	stop := runRelay(t, store, pub)

	deliverAt := time.Now().Add(1500 * time.Millisecond)
	delayed := &outbox.Event{Type: "reminder.due", EntityID: "r-1", DeliverAt: deliverAt}
	behind := &outbox.Event{Type: "reminder.changed", EntityID: "r-1"}
	other := &outbox.Event{Type: "mood.logged", EntityID: "m-1"}
	if _, err := raw.Enqueue(context.Background(), delayed, behind, other); err != nil {
		t.Fatal(err)
	}
	if e, _ := raw.Get(context.Background(), delayed.ID); e.Status != outbox.StatusPending || !e.NextAttemptAt.Equal(deliverAt.UTC()) {
		t.Fatalf("stored %s with next_attempt_at %s, want pending until %s", e.Status, e.NextAttemptAt, deliverAt)
	}
	poll.Until(t, 5*time.Second, "the undelayed entity published", func() bool {
		e, _ := raw.Get(context.Background(), other.ID)
		return e.Status == outbox.StatusCompleted
	})
	dues := store.dues.Load()
	poll.Until(t, 10*time.Second, "the delayed entity published", func() bool {
		e, _ := raw.Get(context.Background(), behind.ID)
		return e.Status == outbox.StatusCompleted
	})
	if n := store.dues.Load() - dues; n > 10 {
		t.Errorf("the relay called Due %d times while waiting for one delayed event: it polls", n)
	}
	at := storedAt(t, js)
	if at[delayed.ID].Before(deliverAt) {
		t.Errorf("published at %s, before its deliver_at %s", at[delayed.ID], deliverAt)
	}
	if !at[behind.ID].After(at[delayed.ID]) {
		t.Errorf("the later event of the entity was stored at %s, before the delayed head (%s)", at[behind.ID], at[delayed.ID])
	}
	for _, e := range natstest.Read(t, js, stream) {
		if e.ID == delayed.ID && !e.DeliverAt.Equal(deliverAt) {
			t.Errorf("the subscriber sees deliver_at %s, want %s (ce-deliverat)", e.DeliverAt, deliverAt)
		}
	}

	// Across a restart: the relay stops before the time, another starts
	// after it.
	stop()
	later := &outbox.Event{Type: "reminder.due", EntityID: "r-2", DeliverAt: time.Now().Add(time.Second)}
	if _, err := raw.Enqueue(context.Background(), later); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1200 * time.Millisecond) // past its deliver_at with no relay running: what the test is about
	runRelay(t, store, pub)
	poll.Until(t, 5*time.Second, "the delayed event published after the restart", func() bool {
		e, _ := raw.Get(context.Background(), later.ID)
		return e.Status == outbox.StatusCompleted
	})
	if got := storedAt(t, js)[later.ID]; got.Before(later.DeliverAt) {
		t.Errorf("published at %s, before its deliver_at %s", got, later.DeliverAt)
	}
}
