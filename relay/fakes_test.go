package relay_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/relay"
)

// In-memory implementations of relay.Store and relay.Publisher, for the fast
// tests of the relay's own loop: no NATS, no bbolt. fakeStore keeps the
// store's rules (TestStoreContract holds it and *boltstore.Store to the same
// contract); fakePublisher answers each publish by script, over a stream that
// stores every copy it is sent (a JetStream past its duplicate window, unless
// a script answers a duplicate ack), and classifies as publisher.Classify
// does: a script's error wraps the outbox sentinel it stands for.

// clock is a test's time: it moves only when the test moves it.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// set moves the clock to t (never back).
func (c *clock) set(t time.Time) {
	c.mu.Lock()
	if t.After(c.now) {
		c.now = t
	}
	c.mu.Unlock()
}

func (c *clock) advance(d time.Duration) { c.set(c.Now().Add(d)) }

// fakeStore is an outbox store in memory: events in seq order, only an
// entity's head ready, outcomes recorded as boltstore records them.
type fakeStore struct {
	mu         sync.Mutex
	seq        uint64
	events     []*outbox.Event // by seq; removed ones are taken out
	lastEntity map[string]uint64
	mark       uint64
	since      time.Time // a time mark, as a file of an older build holds
	maxPayload []int64   // every SetBrokerMaxPayload
	records    int       // Record calls
	failAfter  int       // Record fails after this many calls (0: never)
	notify     chan struct{}
	now        func() time.Time
}

var errDiskFull = errors.New("write /data/outbox.db: no space left on device")

func newFakeStore(now func() time.Time) *fakeStore {
	if now == nil {
		now = time.Now
	}
	return &fakeStore{lastEntity: map[string]uint64{}, notify: make(chan struct{}, 1), now: now}
}

func (s *fakeStore) signal() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// Enqueue stores events as new, pending, filling ids and defaults.
func (s *fakeStore) Enqueue(_ context.Context, events ...*outbox.Event) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range events {
		if e.CreatedAt.IsZero() {
			e.CreatedAt = s.now()
		}
		if err := e.Prepare(outbox.Options{}); err != nil {
			return 0, err
		}
	}
	for _, e := range events {
		s.seq++
		e.Seq, e.Status, e.AcceptedAt = s.seq, outbox.StatusPending, s.now()
		if e.EntityID != "" {
			s.lastEntity[e.EntityID]++
			e.EntitySeq = s.lastEntity[e.EntityID]
		}
		c := *e
		s.events = append(s.events, &c)
	}
	s.signal()
	return len(events), nil
}

// headLocked reports whether e leads its entity: no earlier event of it is
// unfinished (pending, processing or failed).
func (s *fakeStore) headLocked(e *outbox.Event) bool {
	if e.EntityID == "" {
		return true
	}
	for _, o := range s.events {
		if o.Seq >= e.Seq {
			break
		}
		if o.EntityID == e.EntityID && o.Status != outbox.StatusCompleted {
			return false
		}
	}
	return true
}

func (s *fakeStore) Due(ctx context.Context, now time.Time, n int, skip func(seq uint64) bool) ([]*outbox.Event, time.Time, error) {
	if err := ctx.Err(); err != nil {
		return nil, time.Time{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var due []*outbox.Event
	var next time.Time
	for _, e := range s.events {
		if e.Status != outbox.StatusPending || !s.headLocked(e) {
			continue
		}
		if e.NextAttemptAt.After(now) {
			if next.IsZero() || e.NextAttemptAt.Before(next) {
				next = e.NextAttemptAt
			}
			continue
		}
		if skip != nil && skip(e.Seq) {
			continue
		}
		c := *e
		due = append(due, &c)
	}
	slices.SortStableFunc(due, func(a, b *outbox.Event) int {
		if a.Priority != b.Priority {
			return b.Priority - a.Priority
		}
		return cmp.Compare(a.Seq, b.Seq)
	})
	if len(due) > n {
		due = due[:n]
	}
	return due, next, nil
}

// pendingHeadLocked returns the event seq when it is a pending head: only
// such an event can have been handed out by Due.
func (s *fakeStore) pendingHeadLocked(seq uint64) *outbox.Event {
	for _, e := range s.events {
		if e.Seq == seq {
			if e.Status == outbox.StatusPending && s.headLocked(e) {
				return e
			}
			return nil
		}
	}
	return nil
}

func (s *fakeStore) Record(ctx context.Context, acks []outbox.Ack, fails []outbox.Failure, mark uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records++
	if s.failAfter > 0 && s.records > s.failAfter {
		return errDiskFull
	}
	now := s.now()
	for _, a := range acks {
		if e := s.pendingHeadLocked(a.Seq); e != nil {
			e.AttemptCount++
			e.LastAttemptAt, e.NextAttemptAt, e.CompletedAt = a.At, time.Time{}, now
			e.Status = outbox.StatusCompleted
		}
	}
	for _, f := range fails {
		e := s.pendingHeadLocked(f.Seq)
		if e == nil {
			continue
		}
		e.AttemptCount++
		e.LastAttemptAt, e.LastError = f.At, outbox.TruncateError(f.Err)
		if f.Permanent || (!f.Unknown && e.AttemptCount >= e.MaxAttempts) {
			e.Status, e.NextAttemptAt = outbox.StatusFailed, time.Time{}
			continue
		}
		e.NextAttemptAt = f.NextAttemptAt
	}
	if mark != 0 {
		s.mark, s.since = mark, time.Time{}
	}
	s.signal()
	return nil
}

func (s *fakeStore) ReadBackMark(ctx context.Context) (uint64, time.Time, error) {
	if err := ctx.Err(); err != nil {
		return 0, time.Time{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mark, s.since, nil
}

func (s *fakeStore) Get(ctx context.Context, id string) (*outbox.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.events {
		if e.ID == id {
			c := *e
			return &c, nil
		}
	}
	return nil, fmt.Errorf("%w: %q", outbox.ErrNotFound, id)
}

func (s *fakeStore) SetBrokerMaxPayload(_ context.Context, n int64) error {
	s.mu.Lock()
	s.maxPayload = append(s.maxPayload, n)
	s.mu.Unlock()
	return nil
}

func (s *fakeStore) Notify() <-chan struct{} { return s.notify }

// An operator's operations, as boltstore's Delete, MarkCompleted and
// MarkFailed do them.

func (s *fakeStore) Delete(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, e := range s.events {
		if e.ID == id {
			s.events = slices.Delete(s.events, i, i+1)
			s.signal()
			return nil
		}
	}
	return fmt.Errorf("%w: %q", outbox.ErrNotFound, id)
}

func (s *fakeStore) MarkCompleted(_ context.Context, id string) error {
	return s.operate(id, func(e *outbox.Event) { e.Status, e.CompletedAt = outbox.StatusCompleted, s.now() })
}

func (s *fakeStore) MarkFailed(_ context.Context, id string, errText string) error {
	return s.operate(id, func(e *outbox.Event) { e.Status, e.LastError = outbox.StatusFailed, errText })
}

func (s *fakeStore) operate(id string, fn func(*outbox.Event)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.events {
		if e.ID == id {
			if e.Status == outbox.StatusPending {
				e.AttemptCount++
			}
			e.NextAttemptAt = time.Time{}
			fn(e)
			s.signal()
			return nil
		}
	}
	return fmt.Errorf("%w: %q", outbox.ErrNotFound, id)
}

// counts returns how many events are in each status.
func (s *fakeStore) counts() map[outbox.Status]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := map[outbox.Status]int{}
	for _, e := range s.events {
		n[e.Status]++
	}
	return n
}

// answer is what the fake broker does with one publish.
type answer struct {
	err       error // the answer is this error (wrapping the sentinel it stands for); nil: an ack
	stored    bool  // with err: the message reached the stream all the same (its ack was lost)
	duplicate bool  // an ack as a duplicate: the stream holds the id already
	refuse    error // PublishAsync fails with it: nothing sent
	hold      bool  // no answer until release
}

// Answers the scripts use, each classified as publisher.Classify
// classifies the error it stands for.
var (
	ackIt    = answer{}
	timedOut = answer{err: fmt.Errorf("%w: nats: timeout", outbox.ErrUnknownOutcome)}
	refused  = answer{err: fmt.Errorf("%w: nats: API error: code=400 err_code=10071 description=wrong last sequence", outbox.ErrRejected)}
	outage   = answer{err: fmt.Errorf("%w: %w: nats: connection disconnected", outbox.ErrUnavailable, outbox.ErrUnknownOutcome)}
	stalled  = answer{refuse: fmt.Errorf("%w: nats: stalled with too many outstanding async published messages", outbox.ErrUnavailable)}
)

type fakeSend struct {
	id      string
	attempt int
	at      time.Time
}

type storedMsg struct {
	id  string
	seq uint64
	at  time.Time
}

type held struct {
	a     answer
	e     *outbox.Event
	reply chan outbox.PublishResult
}

// fakePublisher is the broker: each publish is answered by script (nil:
// acked) and acked messages are stored in its stream.
type fakePublisher struct {
	script func(e *outbox.Event, attempt int) answer
	now    func() time.Time

	mu         sync.Mutex
	last       uint64 // the stream's last sequence
	stream     []storedMsg
	sends      []fakeSend
	held       []held
	gate       chan struct{} // while set, Ready waits for it to close: an outage
	readies    int           // Ready calls
	sendsAtGo  []int         // len(sends) at each Ready call
	readFrom   []uint64      // StoredFrom calls
	readSince  []time.Time   // StoredSince calls
	maxPayload int64
}

func newFakePublisher(now func() time.Time, script func(e *outbox.Event, attempt int) answer) *fakePublisher {
	if now == nil {
		now = time.Now
	}
	return &fakePublisher{script: script, now: now, maxPayload: 1 << 20}
}

func (p *fakePublisher) PublishAsync(e *outbox.Event, attempt int) (<-chan outbox.PublishResult, error) {
	a := ackIt
	if p.script != nil {
		a = p.script(e, attempt)
	}
	if a.refuse != nil {
		return nil, a.refuse
	}
	reply := make(chan outbox.PublishResult, 1)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sends = append(p.sends, fakeSend{id: e.ID, attempt: attempt, at: p.now()})
	if a.hold {
		p.held = append(p.held, held{a: a, e: e, reply: reply})
		return reply, nil
	}
	reply <- p.answerLocked(e, a)
	return reply, nil
}

func (p *fakePublisher) answerLocked(e *outbox.Event, a answer) outbox.PublishResult {
	switch {
	case a.err != nil:
		if a.stored {
			p.storeLocked(e.ID)
		}
		return outbox.PublishResult{Err: a.err}
	case a.duplicate:
		var seq uint64
		for _, m := range p.stream {
			if m.id == e.ID {
				seq = m.seq
				break
			}
		}
		return outbox.PublishResult{Stream: "FAKE", StreamSeq: seq, Duplicate: true}
	}
	return outbox.PublishResult{Stream: "FAKE", StreamSeq: p.storeLocked(e.ID)}
}

func (p *fakePublisher) storeLocked(id string) uint64 {
	p.last++
	p.stream = append(p.stream, storedMsg{id: id, seq: p.last, at: p.now()})
	return p.last
}

// release answers the held publishes, as scripted but acked when they were
// only held.
func (p *fakePublisher) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, h := range p.held {
		h.a.hold = false
		h.reply <- p.answerLocked(h.e, h.a)
	}
	p.held = nil
}

// down starts an outage: Ready waits until up.
func (p *fakePublisher) down() {
	p.mu.Lock()
	p.gate = make(chan struct{})
	p.mu.Unlock()
}

func (p *fakePublisher) up() {
	p.mu.Lock()
	if p.gate != nil {
		close(p.gate)
		p.gate = nil
	}
	p.mu.Unlock()
}

func (p *fakePublisher) Ready(ctx context.Context) error {
	p.mu.Lock()
	p.readies++
	p.sendsAtGo = append(p.sendsAtGo, len(p.sends))
	gate := p.gate
	p.mu.Unlock()
	if gate == nil {
		return nil
	}
	select {
	case <-gate:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Classify returns an error the script classified as it is; any other is a
// rejection, as publisher.Classify makes of an error it does not know.
func (p *fakePublisher) Classify(_ context.Context, err error) error {
	for _, s := range []error{outbox.ErrUnavailable, outbox.ErrPermanent, outbox.ErrUnknownOutcome, outbox.ErrRejected} {
		if errors.Is(err, s) {
			return err
		}
	}
	return fmt.Errorf("%w: %w", outbox.ErrRejected, err)
}

func (p *fakePublisher) LastSeq(context.Context) (uint64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last, nil
}

func (p *fakePublisher) MaxPayload() int64 { return p.maxPayload }

func (p *fakePublisher) StoredFrom(ctx context.Context, from uint64, fn func(string, uint64, time.Time) error) error {
	p.mu.Lock()
	p.readFrom = append(p.readFrom, from)
	msgs := slices.Clone(p.stream)
	p.mu.Unlock()
	for _, m := range msgs {
		if m.seq < max(from, 1) {
			continue
		}
		if err := fn(m.id, m.seq, m.at); err != nil {
			return err
		}
	}
	return ctx.Err()
}

func (p *fakePublisher) StoredSince(ctx context.Context, since time.Time, fn func(string, uint64, time.Time) error) error {
	p.mu.Lock()
	p.readSince = append(p.readSince, since)
	msgs := slices.Clone(p.stream)
	p.mu.Unlock()
	for _, m := range msgs {
		if m.at.Before(since) {
			continue
		}
		if err := fn(m.id, m.seq, m.at); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// sent returns the publishes of id, or of every event when id is "".
func (p *fakePublisher) sent(id string) []fakeSend {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []fakeSend
	for _, s := range p.sends {
		if id == "" || s.id == id {
			out = append(out, s)
		}
	}
	return out
}

// copies returns how many times the stream holds id.
func (p *fakePublisher) copies(id string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, m := range p.stream {
		if m.id == id {
			n++
		}
	}
	return n
}

// loop is a relay over a store and a publisher, run until stop or the end of
// the test, with its outcomes collected.
type loop struct {
	t     *testing.T
	store relay.Store
	relay *relay.Relay

	mu       sync.Mutex
	outcomes []relay.Outcome

	cancel   context.CancelFunc
	done     chan error
	finished bool
	err      error // Run's, once finished
}

func startLoop(t *testing.T, store relay.Store, pub relay.Publisher, cfg relay.Config, edit ...func(*relay.Relay)) *loop {
	t.Helper()
	l := &loop{t: t, store: store}
	observe := cfg.Observer
	cfg.Observer = func(o relay.Outcome) {
		l.mu.Lock()
		l.outcomes = append(l.outcomes, o)
		l.mu.Unlock()
		if observe != nil {
			observe(o)
		}
	}
	var err error
	l.relay, err = relay.New(store, pub, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range edit {
		f(l.relay)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel, l.done = cancel, make(chan error, 1)
	go func() { l.done <- l.relay.Run(ctx) }()
	t.Cleanup(func() {
		if err := l.stop(); err != nil {
			t.Errorf("relay.Run: %v", err)
		}
	})
	return l
}

// interrupt ends Run's context, as a shutdown does, without waiting.
func (l *loop) interrupt() { l.cancel() }

// wait waits for Run to return and returns its error.
func (l *loop) wait() error {
	if !l.finished {
		l.err, l.finished = <-l.done, true
	}
	return l.err
}

// stop ends Run and returns its error.
func (l *loop) stop() error {
	l.interrupt()
	return l.wait()
}

func (l *loop) enqueue(events ...*outbox.Event) {
	l.t.Helper()
	s, ok := l.store.(interface {
		Enqueue(context.Context, ...*outbox.Event) (int, error)
	})
	if !ok {
		l.t.Fatalf("%T cannot enqueue", l.store)
	}
	if _, err := s.Enqueue(context.Background(), events...); err != nil {
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

// of returns the outcomes of id, or of every event when id is "".
func (l *loop) of(id string) []relay.Outcome {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []relay.Outcome
	for _, o := range l.outcomes {
		if id == "" || o.Event.ID == id {
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

// preload stores id in the stream at time at, as a publish whose ack was
// lost (a crash) would have.
func (p *fakePublisher) preload(id string, at time.Time) uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last++
	p.stream = append(p.stream, storedMsg{id: id, seq: p.last, at: at})
	return p.last
}

// readBacks returns the StoredFrom starts and StoredSince times asked for.
func (p *fakePublisher) readBacks() (from []uint64, since []time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.readFrom), slices.Clone(p.readSince)
}

// streamIDs returns the ids the stream holds, in stream order.
func (p *fakePublisher) streamIDs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, len(p.stream))
	for i, m := range p.stream {
		out[i] = m.id
	}
	return out
}
