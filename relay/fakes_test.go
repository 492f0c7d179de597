package relay_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
	"github.com/fitiqcore/outbox/publisher"
	"github.com/fitiqcore/outbox/relay"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// fakePublisher stands for the broker in tests of the relay's own loop
// logic: each publish is answered by script, acks carry sequences counted
// from last, and Classify says what publisher.Classify says of the errors
// the scripts use (TestClassify in package publisher holds it to that).
type fakePublisher struct {
	script func(e *outbox.Event, attempt int) answer

	mu    sync.Mutex
	last  uint64 // the stream's last sequence
	sends []fakeSend
}

// answer is what the fake broker does with one publish: ack it (a
// duplicate ack when duplicate is set) or fail its future with err.
type answer struct {
	err       error
	duplicate bool
}

type fakeSend struct {
	id      string
	attempt int
	at      time.Time
}

func (f *fakePublisher) PublishAsync(e *outbox.Event, attempt int) (jetstream.PubAckFuture, error) {
	a := f.script(e, attempt)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sends = append(f.sends, fakeSend{id: e.ID, attempt: attempt, at: time.Now()})
	fut := &fakeFuture{ok: make(chan *jetstream.PubAck, 1), err: make(chan error, 1)}
	switch {
	case a.err != nil:
		fut.err <- a.err
	case a.duplicate:
		fut.ok <- &jetstream.PubAck{Stream: "FAKE", Sequence: 1, Duplicate: true}
	default:
		f.last++
		fut.ok <- &jetstream.PubAck{Stream: "FAKE", Sequence: f.last}
	}
	return fut, nil
}

func (f *fakePublisher) Ready(context.Context) error { return nil }

func (f *fakePublisher) Classify(_ context.Context, err error) error {
	if errors.Is(err, jetstream.ErrAsyncPublishTimeout) { // while the server answers pings
		return fmt.Errorf("%w: %w", publisher.ErrUnknownOutcome, err)
	}
	return err // a server answer: a failed attempt
}

func (f *fakePublisher) LastSeq(context.Context) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last, nil
}

func (f *fakePublisher) MaxPayload() int64 { return 1 << 20 }

func (f *fakePublisher) StoredFrom(context.Context, uint64, func(publisher.Stored) error) error {
	return nil
}

func (f *fakePublisher) StoredSince(context.Context, time.Time, func(publisher.Stored) error) error {
	return nil
}

func (f *fakePublisher) sent(id string) []fakeSend {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []fakeSend
	for _, s := range f.sends {
		if s.id == id {
			out = append(out, s)
		}
	}
	return out
}

type fakeFuture struct {
	ok  chan *jetstream.PubAck
	err chan error
}

func (f *fakeFuture) Ok() <-chan *jetstream.PubAck { return f.ok }
func (f *fakeFuture) Err() <-chan error            { return f.err }
func (f *fakeFuture) Msg() *nats.Msg               { return nil }

// loop is a relay over a real store and a given publisher, run until the
// end of the test, with its outcomes collected.
type loop struct {
	t     *testing.T
	store *boltstore.Store
	relay *relay.Relay

	mu       sync.Mutex
	outcomes []relay.Outcome
}

func startLoop(t *testing.T, pub relay.Publisher, cfg relay.Config, edit ...func(*relay.Relay)) *loop {
	t.Helper()
	l := &loop{t: t}
	var err error
	l.store, err = boltstore.Open(filepath.Join(t.TempDir(), "outbox.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.store.Close() })
	cfg.Observer = func(o relay.Outcome) {
		l.mu.Lock()
		l.outcomes = append(l.outcomes, o)
		l.mu.Unlock()
	}
	l.relay, err = relay.New(l.store, pub, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range edit {
		f(l.relay)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.relay.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay.Run: %v", err)
		}
	})
	return l
}

func (l *loop) enqueue(events ...*outbox.Event) {
	l.t.Helper()
	if _, err := l.store.Enqueue(context.Background(), events...); err != nil {
		l.t.Fatal(err)
	}
}

func (l *loop) get(id string) *outbox.Event {
	l.t.Helper()
	e, err := l.store.Get(context.Background(), id)
	if err != nil {
		l.t.Fatal(err)
	}
	return e
}

func (l *loop) of(id string) []relay.Outcome {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []relay.Outcome
	for _, o := range l.outcomes {
		if o.Event.ID == id {
			out = append(out, o)
		}
	}
	return out
}

func (l *loop) mark() uint64 {
	l.t.Helper()
	from, _, err := l.store.ReadBackMark(context.Background())
	if err != nil {
		l.t.Fatal(err)
	}
	return from
}
