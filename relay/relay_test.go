package relay_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
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

// The relay end to end on the real parts: a bbolt store and a JetStream
// server. The loop's own logic is tested against fakes (loop_test.go).

const stream = "TEST"

type harness struct {
	t     *testing.T
	ns    *natstest.Server
	js    jetstream.JetStream
	store *boltstore.Store
	pub   *readyCounting

	mu       sync.Mutex
	outcomes []relay.Outcome

	cancel context.CancelFunc
	done   chan error
}

type setup struct {
	manage bool // let the publisher manage the stream (subjects t.>)
	cfg    relay.Config
}

func newHarness(t *testing.T, s setup) *harness {
	t.Helper()
	h := &harness{t: t, ns: natstest.Start(t)}
	_, h.js = h.ns.Connect(t)
	var err error
	h.store, err = boltstore.Open(filepath.Join(t.TempDir(), "outbox.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.store.Close() })
	pub, err := publisher.Connect(publisher.Config{
		URL: h.ns.URL(), SubjectPrefix: "t", PublishTimeout: 2 * time.Second,
		Stream: publisher.StreamConfig{Manage: s.manage, Name: stream},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pub.Close)
	h.pub = &readyCounting{Publisher: pub}
	cfg := s.cfg
	cfg.Observer = func(o relay.Outcome) {
		h.mu.Lock()
		h.outcomes = append(h.outcomes, o)
		h.mu.Unlock()
	}
	r, err := relay.New(h.store, h.pub, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- r.Run(ctx) }()
	t.Cleanup(h.stop)
	return h
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	if err := <-h.done; err != nil {
		h.t.Errorf("relay.Run: %v", err)
	}
	h.cancel = nil
}

func (h *harness) createStream(subjects ...string) {
	h.t.Helper()
	_, err := h.js.CreateOrUpdateStream(context.Background(), jetstream.StreamConfig{Name: stream, Subjects: subjects})
	if err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) enqueue(events ...*outbox.Event) {
	h.t.Helper()
	if _, err := h.store.Enqueue(context.Background(), events...); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) stats() boltstore.Stats {
	h.t.Helper()
	st, err := h.store.Stats(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	return st
}

func (h *harness) get(id string) *outbox.Event {
	h.t.Helper()
	e, err := h.store.Get(context.Background(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	return e
}

func (h *harness) waitCompleted(n int64, timeout time.Duration) {
	h.t.Helper()
	poll.Until(h.t, timeout, fmt.Sprintf("%d events completed", n), func() bool { return h.stats().Completed >= n })
}

// readyCounting is the real publisher, counting the relay's calls of Ready
// (one at start, one after each outage it saw).
type readyCounting struct {
	*publisher.Publisher
	readies atomic.Int32
}

func (p *readyCounting) Ready(ctx context.Context) error {
	p.readies.Add(1)
	return p.Publisher.Ready(ctx)
}

// checkStream asserts that the stream holds exactly the ids, once each, and
// that every entity's events appear in entity_seq order 1, 2, 3, ...
func checkStream(t *testing.T, got []*outbox.Event, ids []string) {
	t.Helper()
	seen := map[string]int{}
	lastSeq := map[string]uint64{}
	for _, e := range got {
		seen[e.ID]++
		if e.EntityID != "" {
			if e.EntitySeq != lastSeq[e.EntityID]+1 {
				t.Errorf("entity %s: entity_seq %d after %d", e.EntityID, e.EntitySeq, lastSeq[e.EntityID])
			}
			lastSeq[e.EntityID] = e.EntitySeq
		}
	}
	for _, id := range ids {
		if seen[id] != 1 {
			t.Errorf("event %s is in the stream %d times, want once", id, seen[id])
		}
	}
	if len(got) != len(ids) {
		t.Errorf("stream holds %d messages, want %d", len(got), len(ids))
	}
}

func TestRelayPublishesEverythingWithHeaders(t *testing.T) {
	h := newHarness(t, setup{manage: true})
	in := &outbox.Event{
		Type: "mood.created", EntityID: "mood-1", UserID: "user-7", Priority: 3, IsNewRecord: true,
		Metadata: []byte(`{"source":"ios"}`), Payload: []byte(`{"score":4}`), ContentType: outbox.ContentTypeJSON,
	}
	h.enqueue(in)
	h.waitCompleted(1, 10*time.Second)
	got := natstest.Read(t, h.js, stream)
	if len(got) != 1 {
		t.Fatalf("stream holds %d messages, want 1", len(got))
	}
	e := got[0]
	if e.ID != in.ID || e.Type != in.Type || e.EntityID != in.EntityID || e.UserID != in.UserID ||
		e.Priority != 3 || !e.IsNewRecord || e.EntitySeq != 1 || string(e.Payload) != `{"score":4}` ||
		string(e.Metadata) != `{"source":"ios"}` || e.AttemptCount != 1 || e.MaxAttempts != 5 ||
		!e.CreatedAt.Equal(in.CreatedAt) || e.ContentType != outbox.ContentTypeJSON {
		t.Errorf("published event differs:\n got %+v\nwant %+v", e, in)
	}
	stored := h.get(in.ID)
	if stored.Status != outbox.StatusCompleted || stored.AttemptCount != 1 || stored.CompletedAt.IsZero() {
		t.Errorf("stored event after ack: status %s attempts %d completed_at %v", stored.Status, stored.AttemptCount, stored.CompletedAt)
	}
}

func TestRelaySurvivesNATSRestart(t *testing.T) {
	h := newHarness(t, setup{manage: true, cfg: relay.Config{BatchSize: 100, MaxInFlight: 200}})
	var ids []string
	mk := func(n, offset int) []*outbox.Event {
		var evs []*outbox.Event
		for i := range n {
			e := &outbox.Event{Type: "restart.test", EntityID: fmt.Sprintf("e%d", (i+offset)%50), Payload: make([]byte, 128)}
			evs = append(evs, e)
		}
		return evs
	}
	first := mk(3000, 0)
	for i := 0; i < len(first); i += 100 {
		h.enqueue(first[i : i+100]...)
	}
	for _, e := range first {
		ids = append(ids, e.ID)
	}
	poll.Until(t, 10*time.Second, "some published", func() bool { return h.stats().Completed > 50 })
	h.ns.Stop()
	poll.Until(t, 10*time.Second, "the publisher sees the outage", func() bool { return !h.pub.Connected() })
	second := mk(500, 7)
	for i := 0; i < len(second); i += 100 {
		h.enqueue(second[i : i+100]...) // accepted while NATS is down
	}
	for _, e := range second {
		ids = append(ids, e.ID)
	}
	// The relay tries during the outage: a publish fails (or one of the
	// second batch, sent into it), it pauses and waits for the broker.
	poll.Until(t, 30*time.Second, "the relay waiting for the broker", func() bool { return h.pub.readies.Load() >= 2 })
	h.ns.Restart()
	h.waitCompleted(int64(len(ids)), 30*time.Second)
	checkStream(t, natstest.Read(t, h.js, stream), ids)
	for _, id := range ids {
		if e := h.get(id); e.AttemptCount != 1 || e.Status != outbox.StatusCompleted {
			t.Fatalf("event %s: status %s, attempt_count %d: an outage must consume no attempts", id, e.Status, e.AttemptCount)
		}
	}
	if st := h.stats(); st.Pending != 0 || st.Failed != 0 || st.Processing != 0 {
		t.Errorf("stats after drain: %+v", st)
	}
}
