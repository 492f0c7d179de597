package relay_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
	"github.com/fitiqcore/outbox/internal/natstest"
	"github.com/fitiqcore/outbox/publisher"
	"github.com/fitiqcore/outbox/relay"
	"github.com/nats-io/nats.go/jetstream"
)

const stream = "TEST"

type harness struct {
	t     *testing.T
	ns    *natstest.Server
	js    jetstream.JetStream
	store *boltstore.Store
	pub   *publisher.Publisher

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
	h.pub, err = publisher.Connect(publisher.Config{
		URL: h.ns.URL(), SubjectPrefix: "t", PublishTimeout: 2 * time.Second,
		Stream: publisher.StreamConfig{Manage: s.manage, Name: stream},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.pub.Close)
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
	natstest.Eventually(h.t, timeout, fmt.Sprintf("%d events completed", n), func() bool { return h.stats().Completed >= n })
}

func (h *harness) attempts(id string) []relay.Outcome {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []relay.Outcome
	for _, o := range h.outcomes {
		if o.Event.ID == id {
			out = append(out, o)
		}
	}
	return out
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

func TestRelayPriorityOrder(t *testing.T) {
	// The relay starts with a backlog it reads in one batch: the stream order
	// is the read order, highest priority first, FIFO within a priority.
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	store, err := boltstore.Open(filepath.Join(t.TempDir(), "outbox.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	var events []*outbox.Event
	for i := range 60 {
		events = append(events, &outbox.Event{Type: "prio.test", Priority: (i * 7) % 10, Payload: []byte{byte(i)}})
	}
	if _, err := store.Enqueue(context.Background(), events...); err != nil {
		t.Fatal(err)
	}
	pub, err := publisher.Connect(publisher.Config{URL: ns.URL(), SubjectPrefix: "t", Stream: publisher.StreamConfig{Manage: true, Name: stream}})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	r, err := relay.New(store, pub, relay.Config{BatchSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	natstest.Eventually(t, 10*time.Second, "all completed", func() bool {
		st, _ := store.Stats(context.Background())
		return st.Completed == 60
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := natstest.Read(t, js, stream)
	want := slices.Clone(events)
	slices.SortStableFunc(want, func(a, b *outbox.Event) int { return b.Priority - a.Priority })
	if len(got) != len(want) {
		t.Fatalf("got %d messages, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].ID != want[i].ID {
			t.Fatalf("message %d: priority %d seq-payload %v, want priority %d payload %v", i, got[i].Priority, got[i].Payload, want[i].Priority, want[i].Payload)
		}
	}
}

func TestRelayPerEntityOrderUnderRetries(t *testing.T) {
	// The stream first covers only t.ok.>: events of type bad.* fail their
	// attempts (no stream answers for their subject) until it is widened.
	h := newHarness(t, setup{cfg: relay.Config{Retry: outbox.RetryPolicy{InitialInterval: 20 * time.Millisecond, MaxInterval: 100 * time.Millisecond, Multiplier: 2}}})
	h.createStream("t.ok.>")
	var ids []string
	add := func(e *outbox.Event) *outbox.Event {
		e.MaxAttempts = 1000
		h.enqueue(e)
		ids = append(ids, e.ID)
		return e
	}
	a1 := add(&outbox.Event{Type: "bad.first", EntityID: "A"})
	a2 := add(&outbox.Event{Type: "ok.second", EntityID: "A", Priority: 9})
	a3 := add(&outbox.Event{Type: "ok.third", EntityID: "A", Priority: 5})
	var others []*outbox.Event
	for i := range 20 {
		others = append(others, add(&outbox.Event{Type: "ok.other", EntityID: fmt.Sprintf("B%d", i%4)}))
	}
	h.waitCompleted(int64(len(others)), 10*time.Second)
	natstest.Eventually(t, 10*time.Second, "a1 retried", func() bool { return h.get(a1.ID).AttemptCount >= 3 })
	for _, e := range []*outbox.Event{a2, a3} {
		if st := h.get(e.ID); st.Status != outbox.StatusPending || st.AttemptCount != 0 {
			t.Fatalf("%s overtook its entity's failing head: status %s, attempts %d", e.Type, st.Status, st.AttemptCount)
		}
	}
	h.createStream("t.ok.>", "t.bad.>")
	h.waitCompleted(int64(len(ids)), 10*time.Second)
	got := natstest.Read(t, h.js, stream)
	checkStream(t, got, ids)
	var order []string
	for _, e := range got {
		if e.EntityID == "A" {
			order = append(order, e.Type)
		}
	}
	if !slices.Equal(order, []string{"bad.first", "ok.second", "ok.third"}) {
		t.Errorf("entity A reached the stream as %v", order)
	}
	if n := h.get(a1.ID).AttemptCount; n < 4 {
		t.Errorf("a1 completed after %d attempts, want several", n)
	}
}

func TestRelayBackoffSpacingAndMaxAttempts(t *testing.T) {
	h := newHarness(t, setup{cfg: relay.Config{Jitter: 0.2}})
	h.createStream("t.ok.>")
	policy := &outbox.RetryPolicy{InitialInterval: 100 * time.Millisecond, MaxInterval: time.Second, Multiplier: 2}
	e := &outbox.Event{Type: "bad.always", MaxAttempts: 4, Retry: policy}
	h.enqueue(e)
	natstest.Eventually(t, 20*time.Second, "event failed", func() bool { return h.get(e.ID).Status == outbox.StatusFailed })
	// The Observer hears of an outcome after its commit: wait for the last.
	natstest.Eventually(t, 5*time.Second, "the failing attempt observed", func() bool { return len(h.attempts(e.ID)) >= 4 })
	stored := h.get(e.ID)
	if stored.AttemptCount != 4 || stored.LastError == "" || stored.LastAttemptAt.IsZero() {
		t.Errorf("failed event: attempts %d, last_error %q, last_attempt_at %v", stored.AttemptCount, stored.LastError, stored.LastAttemptAt)
	}
	atts := h.attempts(e.ID)
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
	var waits []time.Duration
	for i := 1; i < len(atts); i++ {
		prev, want := atts[i-1], time.Duration(float64(policy.InitialInterval)*pow(policy.Multiplier, i-1))
		if atts[i].Sent.Before(prev.Next) {
			t.Errorf("retry %d sent at %v, before its next_attempt_at %v", i, atts[i].Sent, prev.Next)
		}
		if d := prev.Next.Sub(prev.Sent); d < time.Duration(0.8*float64(want)) {
			t.Errorf("retry %d scheduled %s after the failed attempt, want at least %s (backoff %s - 20%% jitter)", i, d, time.Duration(0.8*float64(want)), want)
		}
		waits = append(waits, atts[i].Sent.Sub(prev.Done))
	}
	// Exponential: the third wait is about 4× the first (jitter ±20%),
	// measured in the same run.
	if r := float64(waits[2]) / float64(waits[0]); r < 2.5 {
		t.Errorf("third wait / first wait = %.2f (%v), want ≈4 (exponential backoff)", r, waits)
	}
	if st := h.stats(); st.Failed != 1 || st.Pending != 0 {
		t.Errorf("stats %+v, want 1 failed, 0 pending", st)
	}
}

func pow(b float64, n int) float64 {
	r := 1.0
	for range n {
		r *= b
	}
	return r
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
	natstest.Eventually(t, 10*time.Second, "some published", func() bool { return h.stats().Completed > 50 })
	h.ns.Stop()
	natstest.Eventually(t, 10*time.Second, "relay sees the outage", func() bool { return !h.pub.Connected() })
	second := mk(500, 7)
	for i := 0; i < len(second); i += 100 {
		h.enqueue(second[i : i+100]...) // accepted while NATS is down
	}
	for _, e := range second {
		ids = append(ids, e.ID)
	}
	time.Sleep(300 * time.Millisecond) // let the relay try during the outage
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

// failingStore is the real store whose Record starts failing, as on a full
// disk.
type failingStore struct {
	*boltstore.Store
	mu    sync.Mutex
	calls int
	after int
}

func (f *failingStore) Record(ctx context.Context, acks []boltstore.Ack, fails []boltstore.Failure, mark uint64) error {
	f.mu.Lock()
	f.calls++
	n := f.calls
	f.mu.Unlock()
	if n > f.after {
		return errors.New("write /data/outbox.db: no space left on device")
	}
	return f.Store.Record(ctx, acks, fails, mark)
}

type countingPublisher struct {
	*publisher.Publisher
	n atomic.Int64
}

func (c *countingPublisher) PublishAsync(e *outbox.Event, attempt int) (jetstream.PubAckFuture, error) {
	c.n.Add(1)
	return c.Publisher.PublishAsync(e, attempt)
}

func TestRelayStopsWhenTheStoreCannotRecord(t *testing.T) {
	ns := natstest.Start(t)
	store, err := boltstore.Open(filepath.Join(t.TempDir(), "outbox.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	var evs []*outbox.Event
	for range 5000 {
		evs = append(evs, &outbox.Event{Type: "disk.full"})
	}
	if _, err := store.Enqueue(context.Background(), evs...); err != nil {
		t.Fatal(err)
	}
	pub, err := publisher.Connect(publisher.Config{URL: ns.URL(), SubjectPrefix: "t", Stream: publisher.StreamConfig{Manage: true, Name: stream}})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	cp := &countingPublisher{Publisher: pub}
	// Record #1 is the start-up mark; the second one fails.
	r, err := relay.New(&failingStore{Store: store, after: 1}, cp, relay.Config{BatchSize: 100, MaxInFlight: 200})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Run(context.Background()) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "no space left") {
			t.Fatalf("Run returned %v, want the store's error", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("the relay kept running with a store that cannot record (%d publishes)", cp.n.Load())
	}
	if n := cp.n.Load(); n > 400 {
		t.Errorf("%d publishes after the store failed: it must stop publishing, not loop", n)
	}
	if st, _ := store.Stats(context.Background()); st.Pending != 5000 {
		t.Errorf("pending %d, want all 5000 still pending", st.Pending)
	}
}
