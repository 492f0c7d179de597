package relay_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/internal/poll"
	"github.com/fitiqcore/outbox/relay"
)

// TestUnknownOutcomeIsNeverFailed settles a suspected defect (issue 9): an
// event whose last attempt timed out was marked failed although the stream
// may hold it, and an operator's retry then published it twice. An attempt
// of unknown outcome never fails the event; it is sent again within half the
// duplicate window (here well before its 1s backoff), where JetStream
// answers for sure: a duplicate ack completes it. A server's answer still
// fails the event at max_attempts: failed means the stream does not hold it.
func TestUnknownOutcomeIsNeverFailed(t *testing.T) {
	const window = time.Second
	timeout := timedOut
	tests := []struct {
		name        string
		maxAttempts int
		answers     []answer // by attempt; past the end: acked
		want        outbox.Status
		kinds       []relay.Kind
		unknown     []bool
	}{
		{"timeout, then the duplicate ack", 1, []answer{timeout, {duplicate: true}}, outbox.StatusCompleted,
			[]relay.Kind{relay.Retried, relay.Published}, []bool{true, false}},
		{"timeouts past max_attempts, then stored", 2, []answer{timeout, timeout, timeout}, outbox.StatusCompleted,
			[]relay.Kind{relay.Retried, relay.Retried, relay.Retried, relay.Published}, []bool{true, true, true, false}},
		{"a refusal after a timeout", 2, []answer{timeout, refused, refused}, outbox.StatusCompleted,
			[]relay.Kind{relay.Retried, relay.Retried, relay.Retried, relay.Published}, []bool{true, true, true, false}},
		{"refused: the stream does not hold it", 1, []answer{refused}, outbox.StatusFailed,
			[]relay.Kind{relay.Failed}, []bool{false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			pub := newFakePublisher(clk.Now, func(e *outbox.Event, attempt int) answer {
				if attempt <= len(tt.answers) {
					return tt.answers[attempt-1]
				}
				return answer{}
			})
			pub.last = 10
			store := newFakeStore(clk.Now)
			l := startLoop(t, store, pub, relay.Config{DuplicateWindow: window, Now: clk.Now})
			e := &outbox.Event{Type: "unknown.outcome", MaxAttempts: tt.maxAttempts}
			l.enqueue(e)
			// Each retry falls due when the clock reaches its Next.
			for seen := 0; seen < 10; {
				poll.Until(t, 5*time.Second, fmt.Sprintf("outcome %d", seen+1), func() bool { return len(l.of(e.ID)) > seen })
				outs := l.of(e.ID)
				seen = len(outs)
				if o := outs[seen-1]; o.Kind != relay.Retried {
					break
				}
				clk.set(outs[seen-1].Next)
				store.signal()
			}
			poll.Until(t, 5*time.Second, "the event completed or failed", func() bool {
				return l.get(e.ID).Status != outbox.StatusPending && len(l.of(e.ID)) == l.get(e.ID).AttemptCount
			})
			got := l.get(e.ID)
			if got.Status != tt.want || got.AttemptCount != len(tt.kinds) {
				t.Errorf("event %s after %d attempts, want %s after %d", got.Status, got.AttemptCount, tt.want, len(tt.kinds))
			}
			outs := l.of(e.ID)
			for i, o := range outs {
				if i >= len(tt.kinds) {
					t.Errorf("attempt %d: %s, want no more attempts", o.Attempt, o.Kind)
					continue
				}
				if o.Kind != tt.kinds[i] || o.Unknown != tt.unknown[i] {
					t.Errorf("attempt %d: %s (unknown %v), want %s (unknown %v): %v", o.Attempt, o.Kind, o.Unknown, tt.kinds[i], tt.unknown[i], o.Err)
				}
				if o.Unknown && o.Next.After(o.Sent.Add(window/2)) {
					t.Errorf("attempt %d of unknown outcome sent at %v: next attempt at %v, later than half the duplicate window (%s) after it",
						o.Attempt, o.Sent.Format(time.StampMicro), o.Next.Format(time.StampMicro), window/2)
				}
			}
			if s := pub.sent(e.ID); tt.unknown[0] && len(s) > 1 && s[1].at.Sub(s[0].at) >= window {
				t.Errorf("re-sent %s after a send of unknown outcome: outside the %s duplicate window", s[1].at.Sub(s[0].at), window)
			}
		})
	}
}

// TestUnknownOutcomeOfDeletedEventIsForgotten is issue 9 row 13: an event
// whose publish has an unknown outcome and that an operator then deletes (or
// completes, or fails) stayed in the relay's memory for good, pinning the
// read-back mark, so that every later start read the stream back from that
// old point. The relay now forgets it once the store says it is no longer
// pending, and records the mark it no longer holds back.
func TestUnknownOutcomeOfDeletedEventIsForgotten(t *testing.T) {
	ctx := context.Background()
	for _, op := range []struct {
		name string
		do   func(s *fakeStore, id string) error
	}{
		{"deleted", func(s *fakeStore, id string) error { return s.Delete(ctx, id) }},
		{"completed", func(s *fakeStore, id string) error { return s.MarkCompleted(ctx, id) }},
		{"failed", func(s *fakeStore, id string) error { return s.MarkFailed(ctx, id, "given up by an operator") }},
	} {
		t.Run(op.name, func(t *testing.T) {
			x := &outbox.Event{Type: "unknown.outcome"}
			store := newFakeStore(nil)
			if _, err := store.Enqueue(ctx, x); err != nil { // x.ID is set before the relay publishes it
				t.Fatal(err)
			}
			pub := newFakePublisher(nil, func(e *outbox.Event, attempt int) answer {
				if e.ID == x.ID {
					return timedOut
				}
				return answer{}
			})
			pub.last = 100
			// A long backoff: x is not published again during the test.
			cfg := relay.Config{Retry: outbox.RetryPolicy{InitialInterval: time.Hour, MaxInterval: time.Hour, Multiplier: 1}, DuplicateWindow: 4 * time.Hour}
			l := startLoop(t, store, pub, cfg, func(r *relay.Relay) { relay.SetSweep(r, 20*time.Millisecond, 50*time.Millisecond) })
			poll.Until(t, 5*time.Second, "x's unknown outcome", func() bool { return len(l.of(x.ID)) == 1 })
			if o := l.of(x.ID)[0]; o.Kind != relay.Retried || !o.Unknown {
				t.Fatalf("x: %s (unknown %v), want retried of unknown outcome", o.Kind, o.Unknown)
			}
			var ys []*outbox.Event
			for range 3 {
				ys = append(ys, &outbox.Event{Type: "after"})
			}
			l.enqueue(ys...)
			poll.Until(t, 5*time.Second, "ys published", func() bool { return len(l.of(ys[2].ID)) == 1 })
			// x was sent when the stream's last sequence was 100: the mark
			// stays at 101 while x may yet be in the stream.
			if m := l.mark(); m != 101 {
				t.Fatalf("mark %d with x's outcome unknown, want 101", m)
			}
			if err := op.do(store, x.ID); err != nil {
				t.Fatal(err)
			}
			// y's acks reached sequence 103.
			poll.Until(t, 5*time.Second, "the mark past the forgotten x (104)", func() bool { return l.mark() == 104 })
		})
	}
}
