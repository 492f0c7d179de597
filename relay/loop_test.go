package relay_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/internal/poll"
	"github.com/fitiqcore/outbox/relay"
)

// The relay's loop against fakeStore and fakePublisher: ordering, backoff,
// outages, shutdown, a failing store. No NATS, no bbolt.

// eachOwnEntity returns n events of type typ, each its own entity (so that
// all can be in flight at once).
func eachOwnEntity(typ string, n int) []*outbox.Event {
	events := make([]*outbox.Event, n)
	for i := range events {
		events[i] = &outbox.Event{Type: typ, EntityID: fmt.Sprintf("%s-%d", typ, i)}
	}
	return events
}

func ids(events []*outbox.Event) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.ID
	}
	return out
}

// TestRelayPriorityOrder: the relay starts with a backlog it reads in one
// batch: the publish order (and so the stream's) is the read order, highest
// priority first, FIFO within a priority.
func TestRelayPriorityOrder(t *testing.T) {
	store := newFakeStore(nil)
	var events []*outbox.Event
	for i := range 60 {
		events = append(events, &outbox.Event{Type: "prio.test", Priority: (i * 7) % 10, Payload: []byte{byte(i)}})
	}
	if _, err := store.Enqueue(context.Background(), events...); err != nil {
		t.Fatal(err)
	}
	pub := newFakePublisher(nil, nil)
	startLoop(t, store, pub, relay.Config{BatchSize: 1000})
	poll.Until(t, 10*time.Second, "all completed", func() bool { return store.counts()[outbox.StatusCompleted] == 60 })
	want := slices.Clone(events)
	slices.SortStableFunc(want, func(a, b *outbox.Event) int { return b.Priority - a.Priority })
	got := pub.sent("")
	if len(got) != len(want) {
		t.Fatalf("%d publishes, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].id != want[i].ID {
			t.Fatalf("publish %d: %s, want %s (priority %d, payload %v)", i, got[i].id, want[i].ID, want[i].Priority, want[i].Payload)
		}
	}
}

// TestRelayPerEntityOrderUnderRetries: an entity's failing head holds its
// later events back, whatever their priority, while other entities flow;
// once the head goes through, the entity reaches the stream in order.
func TestRelayPerEntityOrderUnderRetries(t *testing.T) {
	// The stream first covers only ok.*: events of type bad.* are refused
	// (no stream for their subject) until it is widened.
	var widened atomic.Bool
	pub := newFakePublisher(nil, func(e *outbox.Event, _ int) answer {
		if strings.HasPrefix(e.Type, "bad.") && !widened.Load() {
			return refused
		}
		return ackIt
	})
	store := newFakeStore(nil)
	l := startLoop(t, store, pub, relay.Config{Retry: outbox.RetryPolicy{InitialInterval: 20 * time.Millisecond, MaxInterval: 100 * time.Millisecond, Multiplier: 2}})
	var all []*outbox.Event
	add := func(e *outbox.Event) *outbox.Event {
		e.MaxAttempts = 1000
		l.enqueue(e)
		all = append(all, e)
		return e
	}
	a1 := add(&outbox.Event{Type: "bad.first", EntityID: "A"})
	a2 := add(&outbox.Event{Type: "ok.second", EntityID: "A", Priority: 9})
	a3 := add(&outbox.Event{Type: "ok.third", EntityID: "A", Priority: 5})
	for i := range 20 {
		add(&outbox.Event{Type: "ok.other", EntityID: fmt.Sprintf("B%d", i%4)})
	}
	poll.Until(t, 10*time.Second, "the other entities completed", func() bool { return store.counts()[outbox.StatusCompleted] == 20 })
	poll.Until(t, 10*time.Second, "a1 retried", func() bool { return l.get(a1.ID).AttemptCount >= 3 })
	for _, e := range []*outbox.Event{a2, a3} {
		if st := l.get(e.ID); st.Status != outbox.StatusPending || st.AttemptCount != 0 || len(pub.sent(e.ID)) != 0 {
			t.Fatalf("%s overtook its entity's failing head: status %s, attempts %d, %d publishes", e.Type, st.Status, st.AttemptCount, len(pub.sent(e.ID)))
		}
	}
	widened.Store(true)
	poll.Until(t, 10*time.Second, "all completed", func() bool { return store.counts()[outbox.StatusCompleted] == len(all) })
	types := map[string]string{}
	for _, e := range all {
		types[e.ID] = e.Type
		if n := pub.copies(e.ID); n != 1 {
			t.Errorf("%s is in the stream %d times, want once", e.Type, n)
		}
	}
	var order []string
	for _, id := range pub.streamIDs() {
		if id == a1.ID || id == a2.ID || id == a3.ID {
			order = append(order, types[id])
		}
	}
	if !slices.Equal(order, []string{"bad.first", "ok.second", "ok.third"}) {
		t.Errorf("entity A reached the stream as %v", order)
	}
	if n := l.get(a1.ID).AttemptCount; n < 4 {
		t.Errorf("a1 completed after %d attempts, want several", n)
	}
}

// TestRelayBackoffSpacingAndMaxAttempts: each failed attempt is scheduled
// after its backoff (the event's policy, ±Jitter), the next is not sent
// before it, and the attempt at max_attempts fails the event. The clock is
// the test's: each delay is the relay's own reckoning, exactly.
func TestRelayBackoffSpacingAndMaxAttempts(t *testing.T) {
	clk := newClock()
	store := newFakeStore(clk.Now)
	pub := newFakePublisher(clk.Now, func(*outbox.Event, int) answer { return refused })
	l := startLoop(t, store, pub, relay.Config{Jitter: 0.2, Now: clk.Now})
	policy := &outbox.RetryPolicy{InitialInterval: 100 * time.Millisecond, MaxInterval: time.Second, Multiplier: 2}
	e := &outbox.Event{Type: "bad.always", MaxAttempts: 4, Retry: policy}
	l.enqueue(e)
	for i := 1; i <= 4; i++ {
		poll.Until(t, 5*time.Second, fmt.Sprintf("attempt %d observed", i), func() bool { return len(l.of(e.ID)) >= i })
		if i < 4 { // its next attempt falls due
			clk.set(l.of(e.ID)[i-1].Next)
			store.signal()
		}
	}
	stored := l.get(e.ID)
	if stored.Status != outbox.StatusFailed || stored.AttemptCount != 4 || stored.LastError == "" || stored.LastAttemptAt.IsZero() {
		t.Errorf("failed event: status %s, attempts %d, last_error %q, last_attempt_at %v", stored.Status, stored.AttemptCount, stored.LastError, stored.LastAttemptAt)
	}
	atts := l.of(e.ID)
	if len(atts) != 4 {
		t.Fatalf("observed %d attempts, want 4", len(atts))
	}
	for i, o := range atts[:3] {
		if o.Kind != relay.Retried {
			t.Errorf("attempt %d: %s, want retried", i+1, o.Kind)
		}
	}
	if atts[3].Kind != relay.Failed {
		t.Errorf("attempt 4: %s, want failed", atts[3].Kind)
	}
	var delays []time.Duration
	for i := 1; i < len(atts); i++ {
		prev, base := atts[i-1], time.Duration(float64(policy.InitialInterval)*pow(policy.Multiplier, i-1))
		if atts[i].Sent.Before(prev.Next) {
			t.Errorf("retry %d sent at %v, before its next_attempt_at %v", i, atts[i].Sent, prev.Next)
		}
		d := prev.Next.Sub(prev.Sent)
		if lo, hi := time.Duration(0.8*float64(base)), time.Duration(1.2*float64(base)); d < lo || d > hi {
			t.Errorf("retry %d scheduled %s after the failed attempt, want %s ±20%% jitter", i, d, base)
		}
		delays = append(delays, d)
	}
	// Exponential: the third delay is about 4× the first (jitter ±20%).
	if r := float64(delays[2]) / float64(delays[0]); r < 2.5 {
		t.Errorf("third delay / first delay = %.2f (%v), want ≈4 (exponential backoff)", r, delays)
	}
	if n := store.counts(); n[outbox.StatusFailed] != 1 || n[outbox.StatusPending] != 0 {
		t.Errorf("statuses %v, want 1 failed, 0 pending", n)
	}
}

func pow(b float64, n int) float64 {
	r := 1.0
	for range n {
		r *= b
	}
	return r
}

// TestRelayOutageConsumesNoAttempt: while the broker is unavailable
// (publishes answered so, or refused at once) events stay pending with no
// attempt consumed, the relay stops publishing and waits for Ready, tells
// the store the broker's max_payload each time it is ready, and publishes
// everything once the broker is back.
func TestRelayOutageConsumesNoAttempt(t *testing.T) {
	for _, tt := range []struct {
		name    string
		answer  answer
		unknown bool // the stream may hold the event
	}{
		{"disconnected with the acks pending", outage, true},
		{"refused at once (stalled)", stalled, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var isDown atomic.Bool
			pub := newFakePublisher(nil, func(*outbox.Event, int) answer {
				if isDown.Load() {
					return tt.answer
				}
				return ackIt
			})
			store := newFakeStore(nil)
			l := startLoop(t, store, pub, relay.Config{})
			l.enqueue(eachOwnEntity("before", 5)...)
			poll.Until(t, 5*time.Second, "5 completed", func() bool { return store.counts()[outbox.StatusCompleted] == 5 })

			isDown.Store(true)
			pub.down()
			during := eachOwnEntity("during", 10)
			l.enqueue(during...)
			poll.Until(t, 5*time.Second, "the relay waiting for the broker", func() bool {
				pub.mu.Lock()
				defer pub.mu.Unlock()
				return pub.readies == 2 && len(l.of("")) == 15
			})
			for _, e := range during {
				if got := l.get(e.ID); got.Status != outbox.StatusPending || got.AttemptCount != 0 {
					t.Errorf("%s during the outage: status %s, %d attempts; want pending, none consumed", e.EntityID, got.Status, got.AttemptCount)
				}
				if o := l.of(e.ID); len(o) != 1 || o[0].Kind != relay.Unavailable || o[0].Unknown != tt.unknown || !errors.Is(o[0].Err, outbox.ErrUnavailable) {
					t.Errorf("%s during the outage: %+v, want one unavailable outcome (unknown %v)", e.EntityID, o, tt.unknown)
				}
			}
			// Waiting for Ready, the relay publishes nothing.
			pub.mu.Lock()
			sentWhileDown, atReady := len(pub.sends), pub.sendsAtGo[1]
			pub.mu.Unlock()
			if sentWhileDown != atReady {
				t.Errorf("%d publishes while waiting for the broker", sentWhileDown-atReady)
			}

			isDown.Store(false)
			pub.up()
			poll.Until(t, 5*time.Second, "all completed", func() bool { return store.counts()[outbox.StatusCompleted] == 15 })
			for _, e := range during {
				if got := l.get(e.ID); got.AttemptCount != 1 {
					t.Errorf("%s: %d attempts, want 1: an outage must consume none", e.EntityID, got.AttemptCount)
				}
			}
			store.mu.Lock()
			told := slices.Clone(store.maxPayload)
			store.mu.Unlock()
			if !slices.Equal(told, []int64{1 << 20, 1 << 20}) {
				t.Errorf("the store was told max_payloads %v, want the broker's at each of 2 readies", told)
			}
		})
	}
}

// TestRelayShutdownDrains: at shutdown the relay stops reading, waits for
// the answers of the publishes in flight, records them, and Run returns nil.
func TestRelayShutdownDrains(t *testing.T) {
	pub := newFakePublisher(nil, func(*outbox.Event, int) answer { return answer{hold: true} })
	store := newFakeStore(nil)
	l := startLoop(t, store, pub, relay.Config{DrainTimeout: time.Minute})
	l.enqueue(eachOwnEntity("drain", 5)...)
	poll.Until(t, 5*time.Second, "5 publishes in flight", func() bool { return len(pub.sent("")) == 5 })
	l.interrupt()
	select {
	case err := <-l.done:
		t.Fatalf("Run returned %v with 5 publishes unanswered, before its drain timeout", err)
	default: // it cannot: the completer waits for the waiter, which waits for the answers
	}
	pub.release()
	if err := l.wait(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := store.counts()[outbox.StatusCompleted]; n != 5 {
		t.Errorf("%d completed after the drain, want the 5 answered", n)
	}
	if n := len(l.of("")); n != 5 {
		t.Errorf("%d outcomes observed, want 5", n)
	}
}

// TestRelayDrainTimeout: answers that do not come within DrainTimeout are
// not waited for: Run returns, the events stay pending with no attempt
// consumed and no outcome made up, and the recorded read-back mark covers
// them.
func TestRelayDrainTimeout(t *testing.T) {
	const drain = 100 * time.Millisecond
	pub := newFakePublisher(nil, func(*outbox.Event, int) answer { return answer{hold: true} })
	pub.last = 10
	store := newFakeStore(nil)
	l := startLoop(t, store, pub, relay.Config{DrainTimeout: drain})
	l.enqueue(eachOwnEntity("unanswered", 5)...)
	poll.Until(t, 5*time.Second, "5 publishes in flight", func() bool { return len(pub.sent("")) == 5 })
	start := time.Now()
	if err := l.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if took := time.Since(start); took < drain || took > 5*time.Second {
		t.Errorf("Run returned %s after the shutdown, want after the drain timeout of %s", took, drain)
	}
	if n := store.counts(); n[outbox.StatusPending] != 5 {
		t.Errorf("statuses %v, want the 5 pending", n)
	}
	for _, s := range pub.sent("") {
		if e := l.get(s.id); e.AttemptCount != 0 {
			t.Errorf("%s: %d attempts, want none consumed", e.EntityID, e.AttemptCount)
		}
	}
	if n := len(l.of("")); n != 0 {
		t.Errorf("%d outcomes observed, want none", n)
	}
	// They were sent when the stream's last sequence was 10: a restart
	// reads the stream back from 11 at the latest.
	if m := l.mark(); m == 0 || m > 11 {
		t.Errorf("mark %d, want at most 11", m)
	}
	pub.release() // answers nobody reads: the channels are buffered
}

// TestRelayStopsWhenTheStoreCannotRecord: a store that cannot record
// outcomes (a full disk) stops the relay, which must not go on publishing
// what it can never complete.
func TestRelayStopsWhenTheStoreCannotRecord(t *testing.T) {
	store := newFakeStore(nil)
	store.failAfter = 1 // Record #1 is the start-up mark; the second one fails
	var evs []*outbox.Event
	for range 5000 {
		evs = append(evs, &outbox.Event{Type: "disk.full"})
	}
	if _, err := store.Enqueue(context.Background(), evs...); err != nil {
		t.Fatal(err)
	}
	pub := newFakePublisher(nil, nil)
	r, err := relay.New(store, pub, relay.Config{BatchSize: 100, MaxInFlight: 200})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Run(context.Background()) }()
	select {
	case err := <-done:
		if !errors.Is(err, errDiskFull) || !strings.Contains(err.Error(), "no space left") {
			t.Fatalf("Run returned %v, want the store's error", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("the relay kept running with a store that cannot record (%d publishes)", len(pub.sent("")))
	}
	if n := len(pub.sent("")); n > 400 {
		t.Errorf("%d publishes after the store failed: it must stop publishing, not loop", n)
	}
	if n := store.counts()[outbox.StatusPending]; n != 5000 {
		t.Errorf("pending %d, want all 5000 still pending", n)
	}
}
