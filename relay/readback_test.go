package relay_test

import (
	"context"
	"errors"
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
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The read-back on the real parts: a bbolt store and a JetStream server whose
// acks are lost, as in a crash or a dropped connection. The read-back's
// logic is tested against fakes too (reconcile_test.go).

// Ways a lossyPublisher loses acks.
const (
	acksArrive   = iota
	acksLost     // the message is stored, its ack never comes (the relay dies first)
	disconnected // the message is stored, then its future fails with nats.ErrDisconnected
)

// lossyPublisher is the real publisher whose acks can be lost, as in a
// crash or a dropped connection: every message really reaches the stream.
// While gate is set, Ready waits for it to close: an outage.
type lossyPublisher struct {
	*publisher.Publisher
	mode atomic.Int32
	gate atomic.Pointer[chan struct{}]
	wg   sync.WaitGroup
}

func (p *lossyPublisher) PublishAsync(e *outbox.Event, attempt int) (<-chan outbox.PublishResult, error) {
	answer, err := p.Publisher.PublishAsync(e, attempt)
	if err != nil {
		return nil, err
	}
	switch p.mode.Load() {
	case acksLost:
		return make(chan outbox.PublishResult, 1), nil // never answered
	case disconnected:
		lost := make(chan outbox.PublishResult, 1)
		p.wg.Go(func() {
			<-answer // stored (or not) first, then the connection "drops"
			lost <- outbox.PublishResult{Err: nats.ErrDisconnected}
		})
		return lost, nil
	}
	return answer, nil
}

func (p *lossyPublisher) Ready(ctx context.Context) error {
	if g := p.gate.Load(); g != nil {
		select {
		case <-*g:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return p.Publisher.Ready(ctx)
}

var errKilled = errors.New("process killed")

// killableStore is the real store that stops writing at once when killed,
// as a process does under SIGKILL.
type killableStore struct {
	*boltstore.Store
	dead atomic.Bool
}

func (s *killableStore) Record(ctx context.Context, acks []outbox.Ack, fails []outbox.Failure, mark uint64) error {
	if s.dead.Load() {
		return errKilled
	}
	return s.Store.Record(ctx, acks, fails, mark)
}

// run starts r and returns a stop that ends it and returns Run's error.
func run(r *relay.Relay) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	return func() error { cancel(); return <-done }
}

// enqueueN enqueues n events of type typ, each its own entity (so that all
// can be in flight at once) and returns their ids.
func enqueueN(t *testing.T, s *boltstore.Store, typ string, n int) []string {
	t.Helper()
	var events []*outbox.Event
	var ids []string
	for i := range n {
		events = append(events, &outbox.Event{Type: typ, EntityID: fmt.Sprintf("%s-%d", typ, i)})
	}
	if _, err := s.Enqueue(context.Background(), events...); err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		ids = append(ids, e.ID)
	}
	return ids
}

func completed(t *testing.T, s *boltstore.Store) int64 {
	t.Helper()
	st, err := s.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st.Completed
}

// waitDedupeForgets returns once JetStream no longer de-duplicates a message
// published now, and so none published before: it re-publishes a probe
// until the stream stores it a second time, then deletes the probes.
func waitDedupeForgets(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	ctx := context.Background()
	id := uuid.NewString()
	probe := func() *jetstream.PubAck {
		m := nats.NewMsg("t.probe")
		m.Header.Set(nats.MsgIdHdr, id)
		ack, err := js.PublishMsg(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		return ack
	}
	seqs := []uint64{probe().Sequence}
	poll.Until(t, 30*time.Second, "JetStream to forget the ids", func() bool {
		ack := probe()
		if !ack.Duplicate {
			seqs = append(seqs, ack.Sequence)
		}
		return !ack.Duplicate
	})
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	for _, seq := range seqs {
		if err := st.DeleteMsg(ctx, seq); err != nil {
			t.Fatal(err)
		}
	}
}

func pubConfig(url string) publisher.Config {
	return publisher.Config{URL: url, SubjectPrefix: "t", PublishTimeout: 2 * time.Second,
		Stream: publisher.StreamConfig{Manage: true, Name: stream, DuplicateWindow: time.Second}}
}

func connectPub(t *testing.T, url string) *publisher.Publisher {
	t.Helper()
	p, err := publisher.Connect(pubConfig(url))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func openStore(t *testing.T, path string, now func() time.Time) *boltstore.Store {
	t.Helper()
	s, err := boltstore.Open(path, &boltstore.Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestCrashWithClockAhead settles a suspected defect (issue 9): a relay host
// whose clock runs ahead of the NATS servers' by more than relay.clock_skew
// read the stream back, after a crash, from a time the servers had not
// reached, found nothing, and published again every event whose ack the
// crash had lost — duplicates once the duplicate window had passed. The
// read-back mark is now a stream sequence, which no clock affects.
func TestCrashWithClockAhead(t *testing.T) {
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	path := filepath.Join(t.TempDir(), "outbox.db")
	ahead := func() time.Time { return time.Now().Add(time.Hour) }
	cfg := relay.Config{Now: ahead, DuplicateWindow: time.Second, DrainTimeout: 100 * time.Millisecond}

	// First life: 20 events acked, then 30 stored whose acks never come.
	s1 := &killableStore{Store: openStore(t, path, ahead)}
	p1 := &lossyPublisher{Publisher: connectPub(t, ns.URL())}
	r1, err := relay.New(s1, p1, cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop := run(r1)
	ids := enqueueN(t, s1.Store, "crash.acked", 20)
	poll.Until(t, 10*time.Second, "20 completed", func() bool { return completed(t, s1.Store) == 20 })
	if from, _, err := s1.ReadBackMark(context.Background()); err != nil || from != 21 {
		t.Fatalf("mark after 20 acks into an empty stream: %d, %v; want 21", from, err)
	}
	p1.mode.Store(acksLost)
	ids = append(ids, enqueueN(t, s1.Store, "crash.lost", 30)...)
	poll.Until(t, 10*time.Second, "50 in the stream", func() bool { return streamMsgs(t, js) == 50 })
	s1.dead.Store(true) // SIGKILL: nothing more reaches the file
	if err := stop(); err != nil && !errors.Is(err, errKilled) {
		t.Fatalf("first life: %v", err)
	}
	p1.Close()
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	p1.wg.Wait()

	waitDedupeForgets(t, js)

	// Second life, same host, same clock.
	s2 := openStore(t, path, ahead)
	defer s2.Close()
	if n := completed(t, s2); n != 20 {
		t.Fatalf("the file holds %d completed, want the 20 acked", n)
	}
	r2, err := relay.New(s2, connectPub(t, ns.URL()), cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop = run(r2)
	poll.Until(t, 20*time.Second, "all 50 completed", func() bool { return completed(t, s2) == 50 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkStream(t, natstest.Read(t, js, stream), ids)
}

// TestOutageLongerThanTheDuplicateWindow: the connection drops with acks
// pending for messages the stream stored, and comes back after the
// duplicate window. JetStream no longer de-duplicates the re-sends, so the
// relay reads the stream back before publishing those events again, and
// completes them instead.
func TestOutageLongerThanTheDuplicateWindow(t *testing.T) {
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	store := openStore(t, filepath.Join(t.TempDir(), "outbox.db"), nil)
	defer store.Close()
	p := &lossyPublisher{Publisher: connectPub(t, ns.URL())}
	t.Cleanup(p.wg.Wait)
	var unavailable atomic.Int32
	r, err := relay.New(store, p, relay.Config{DuplicateWindow: time.Second, Observer: func(o relay.Outcome) {
		if o.Kind == relay.Unavailable && o.Unknown {
			unavailable.Add(1)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(r)
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()
	ids := enqueueN(t, store, "outage.before", 10)
	poll.Until(t, 10*time.Second, "10 completed", func() bool { return completed(t, store) == 10 })

	down := make(chan struct{})
	p.gate.Store(&down)
	p.mode.Store(disconnected)
	ids = append(ids, enqueueN(t, store, "outage.lost", 25)...)
	poll.Until(t, 10*time.Second, "25 outcomes unknown", func() bool { return unavailable.Load() == 25 })
	if n := streamMsgs(t, js); n != 35 {
		t.Fatalf("stream holds %d, want 35", n)
	}
	waitDedupeForgets(t, js)
	p.mode.Store(acksArrive)
	close(down) // the broker is back
	poll.Until(t, 20*time.Second, "all 35 completed", func() bool { return completed(t, store) == 35 })
	checkStream(t, natstest.Read(t, js, stream), ids)
	ids = append(ids, enqueueN(t, store, "outage.after", 5)...)
	poll.Until(t, 10*time.Second, "all 40 completed", func() bool { return completed(t, store) == 40 })
	checkStream(t, natstest.Read(t, js, stream), ids)
}

// legacyStore is the real store over a file written by an older build: its
// mark is a send time by this host's clock, until the relay records one.
type legacyStore struct {
	*boltstore.Store
	since    time.Time
	upgraded atomic.Bool
}

func (s *legacyStore) ReadBackMark(ctx context.Context) (uint64, time.Time, error) {
	if !s.upgraded.Load() {
		return 0, s.since, nil
	}
	return s.Store.ReadBackMark(ctx)
}

func (s *legacyStore) Record(ctx context.Context, acks []outbox.Ack, fails []outbox.Failure, mark uint64) error {
	if err := s.Store.Record(ctx, acks, fails, mark); err != nil {
		return err
	}
	if mark != 0 {
		s.upgraded.Store(true)
	}
	return nil
}

// TestLegacyTimeMark: a file whose mark is a time (an older build) is read
// back from that time less ClockSkew, and gets a sequence mark after.
func TestLegacyTimeMark(t *testing.T) {
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	store := openStore(t, filepath.Join(t.TempDir(), "outbox.db"), nil)
	defer store.Close()
	pub := connectPub(t, ns.URL())
	if err := pub.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	for range 5 { // older messages, before the mark
		if _, err := js.Publish(context.Background(), "t.older", nil); err != nil {
			t.Fatal(err)
		}
	}
	since := time.Now()
	ids := enqueueN(t, store, "legacy", 10)
	for _, id := range ids { // the old relay's publishes, acks lost
		e, err := store.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pub.Publish(context.Background(), e, 1); err != nil {
			t.Fatal(err)
		}
	}
	cp := &countingPublisher{Publisher: pub}
	ls := &legacyStore{Store: store, since: since}
	r, err := relay.New(ls, cp, relay.Config{})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(r)
	poll.Until(t, 10*time.Second, "10 completed by the read-back", func() bool { return completed(t, store) == 10 })
	// Then the file gets a sequence mark: the stream's next sequence, 16.
	poll.Until(t, 10*time.Second, "the mark at 16", func() bool {
		from, _, err := store.ReadBackMark(context.Background())
		return err == nil && from == 16
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := cp.n.Load(); n != 0 {
		t.Errorf("%d events published again, want none", n)
	}
}

// countingPublisher is the real publisher, counting publishes.
type countingPublisher struct {
	*publisher.Publisher
	n atomic.Int64
}

func (c *countingPublisher) PublishAsync(e *outbox.Event, attempt int) (<-chan outbox.PublishResult, error) {
	c.n.Add(1)
	return c.Publisher.PublishAsync(e, attempt)
}

func streamMsgs(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	st, err := js.Stream(context.Background(), stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}
