package relay_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/internal/poll"
	"github.com/fitiqcore/outbox/relay"
)

// The read-back against fakes: at start, from the recorded mark, and before
// a re-send that would land past the duplicate window.

// TestReadBackAtStart: a relay that died with acks lost (the stream holds
// e1..e3, the store has them pending) completes them at start from the
// recorded mark, without publishing them again, and publishes the rest.
func TestReadBackAtStart(t *testing.T) {
	t0 := time.Now()
	for _, tt := range []struct {
		name     string
		prepare  func(s *fakeStore, p *fakePublisher, lost []*outbox.Event)
		cfg      relay.Config
		wantFrom []uint64    // StoredFrom calls
		since    []time.Time // StoredSince calls
		resent   bool        // e1..e3 published again
	}{
		{"from the mark", func(s *fakeStore, p *fakePublisher, lost []*outbox.Event) {
			for range 10 { // before the mark: not read back
				p.preload("0190a5b4-7c3e-7def-8123-456789abcdef", t0)
			}
			s.mark = 11
			for _, e := range lost {
				p.preload(e.ID, t0)
			}
		}, relay.Config{}, []uint64{11}, nil, false},
		{"a mark above the stream's last (the stream recreated)", func(s *fakeStore, p *fakePublisher, lost []*outbox.Event) {
			s.mark = 100
			for _, e := range lost {
				p.preload(e.ID, t0)
			}
		}, relay.Config{}, []uint64{1}, nil, false},
		{"a time mark of an older build, less ClockSkew", func(s *fakeStore, p *fakePublisher, lost []*outbox.Event) {
			p.preload("0190a5b4-7c3e-7def-8123-456789abcdef", t0.Add(-time.Minute))
			s.since = t0
			for _, e := range lost { // by the servers' clock, a second behind this host's
				p.preload(e.ID, t0.Add(-time.Second))
			}
		}, relay.Config{ClockSkew: 2 * time.Second}, nil, []time.Time{t0.Add(-2 * time.Second)}, false},
		{"DisableReconcile", func(s *fakeStore, p *fakePublisher, lost []*outbox.Event) {
			s.mark = 1
			for _, e := range lost {
				p.preload(e.ID, t0)
			}
		}, relay.Config{DisableReconcile: true}, nil, nil, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			store := newFakeStore(nil)
			events := eachOwnEntity("restart", 5)
			if _, err := store.Enqueue(context.Background(), events...); err != nil {
				t.Fatal(err)
			}
			pub := newFakePublisher(nil, nil)
			tt.prepare(store, pub, events[:3])
			l := startLoop(t, store, pub, tt.cfg)
			poll.Until(t, 5*time.Second, "all 5 completed", func() bool { return store.counts()[outbox.StatusCompleted] == 5 })
			for i, e := range events {
				n, want := len(pub.sent(e.ID)), 1
				if i < 3 && !tt.resent {
					want = 0
				}
				if n != want {
					t.Errorf("event %d published %d times, want %d", i+1, n, want)
				}
			}
			from, since := pub.readBacks()
			if !slices.Equal(from, tt.wantFrom) || !slices.EqualFunc(since, tt.since, time.Time.Equal) {
				t.Errorf("read back from %v since %v, want from %v since %v", from, since, tt.wantFrom, tt.since)
			}
			// The mark moves on to the stream's next sequence.
			last, _ := pub.LastSeq(context.Background())
			poll.Until(t, 5*time.Second, "the mark at the stream's next sequence", func() bool { return l.mark() == last+1 })
		})
	}
}

// TestReadBackBeforeLateResend: an event whose publish had an unknown
// outcome and that comes due again later than three quarters of the
// duplicate window after it (the relay was held up) is looked for in the
// stream first: completed if the stream holds it, published again if not. A
// re-send in time is not preceded by a read-back: JetStream answers it.
func TestReadBackBeforeLateResend(t *testing.T) {
	const window = time.Second
	for _, tt := range []struct {
		name     string
		stored   bool          // the publish of unknown outcome reached the stream
		after    time.Duration // when the re-send is due after the first send (at least its Next)
		sends    int
		readBack bool
	}{
		{"late, and the stream holds it", true, window * 3 / 4, 1, true},
		{"late, and the stream does not hold it", false, window * 3 / 4, 2, true},
		{"in time: the duplicate ack answers", true, 0, 2, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			store := newFakeStore(clk.Now)
			pub := newFakePublisher(clk.Now, func(_ *outbox.Event, attempt int) answer {
				if attempt == 1 {
					return answer{err: timedOut.err, stored: tt.stored}
				}
				return answer{duplicate: tt.stored}
			})
			pub.last = 10
			l := startLoop(t, store, pub, relay.Config{DuplicateWindow: window, Now: clk.Now})
			x := &outbox.Event{Type: "late.resend"}
			l.enqueue(x)
			poll.Until(t, 5*time.Second, "the unknown outcome", func() bool { return len(l.of(x.ID)) == 1 })
			o := l.of(x.ID)[0]
			if o.Kind != relay.Retried || !o.Unknown || o.Next.After(o.Sent.Add(window/2)) {
				t.Fatalf("first attempt: %s (unknown %v), next in %s; want retried of unknown outcome within half the window", o.Kind, o.Unknown, o.Next.Sub(o.Sent))
			}
			clk.set(o.Next)
			clk.set(o.Sent.Add(tt.after))
			store.signal()
			poll.Until(t, 5*time.Second, "x completed", func() bool { return l.get(x.ID).Status == outbox.StatusCompleted })
			if n := len(pub.sent(x.ID)); n != tt.sends {
				t.Errorf("published %d times, want %d", n, tt.sends)
			}
			if n := pub.copies(x.ID); n != 1 {
				t.Errorf("the stream holds x %d times, want once", n)
			}
			from, _ := pub.readBacks()
			if tt.readBack != (len(from) == 1) || (tt.readBack && from[0] != 11) {
				t.Errorf("read the stream back from %v; want %v from 11 (x was sent with the stream at 10)", from, tt.readBack)
			}
		})
	}
}
