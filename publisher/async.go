package publisher

import (
	"strconv"
	"sync"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The async publish path of the publisher's own, over core NATS. It keeps
// the semantics of nats.go's jetstream.PublishMsgAsync (jetstream/publish.go)
// and differs only in how it does the work:
//
//   - one wildcard reply subscription, <inbox>.*, made on the first publish;
//     each publish gets its own reply subject <inbox>.<n>, n a counter;
//   - the ack is read by a parser of its own (puback.go), not encoding/json;
//   - one timer for every pending publish (they time out in publish order),
//     where nats.go arms one per publish;
//   - the answer comes on one channel, an outbox.PublishResult, where
//     nats.go's future has one channel for the ack and one for the error.
//
// What it keeps of nats.go:
//
//   - at most maxPending publishes await an ack; past it a publish waits up
//     to stallWait (200ms) for a slot, then fails with
//     jetstream.ErrTooManyStalledMsgs, nothing sent;
//   - an ack not back within timeout fails with
//     jetstream.ErrAsyncPublishTimeout; one that comes later is dropped;
//   - a no-responders status (no stream on the subject, or its leader gone)
//     is retried retryAttempts times (2) retryWait apart (250ms), the
//     timeout stopped meanwhile, then fails with jetstream.ErrNoStreamResponse;
//   - a JetStream API error comes back as a *jetstream.APIError, an ack that
//     cannot be read as jetstream.ErrInvalidJSAck;
//   - when the connection drops, every pending publish fails with
//     nats.ErrDisconnected (the stream may hold it: publish it again with the
//     same Nats-Msg-Id).
//
// One addition: when the connection is closed, every pending publish fails
// with nats.ErrConnectionClosed at once, where nats.go lets it wait for its
// timeout.
type asyncPublisher struct {
	nc            *nats.Conn
	maxPending    int
	timeout       time.Duration
	stallWait     time.Duration
	retryWait     time.Duration
	retryAttempts int

	parse ackParser // used by the reply subscription's goroutine only

	mu      sync.Mutex
	sub     *nats.Subscription
	prefix  string // <inbox>.
	next    uint64 // the number of the next publish
	pending map[uint64]*pubFuture
	waiting futureList // pending, awaiting an ack, in deadline order
	retries futureList // pending, waiting to be sent again, in retry order
	stall   chan struct{}
	closed  bool

	wake chan struct{} // tells run that a list's head changed
	done chan struct{}
	wg   sync.WaitGroup
}

const (
	defaultStallWait     = 200 * time.Millisecond // as nats.go's defaultAsyncStallWait
	defaultRetryWait     = jetstream.DefaultPubRetryWait
	defaultRetryAttempts = jetstream.DefaultPubRetryAttempts
)

// newAsyncPublisher returns the async path on nc; start runs its timer.
func newAsyncPublisher(nc *nats.Conn, maxPending int, timeout time.Duration) *asyncPublisher {
	return &asyncPublisher{
		nc: nc, maxPending: maxPending, timeout: timeout,
		stallWait: defaultStallWait, retryWait: defaultRetryWait, retryAttempts: defaultRetryAttempts,
		pending: make(map[uint64]*pubFuture),
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
}

// start runs the goroutine that times publishes out and sends retries; close
// stops it and waits for it.
func (a *asyncPublisher) start() {
	a.wg.Go(a.run)
}

// pubFuture is a publish awaiting its ack. Its answer goes to done
// (buffered: sending never blocks), exactly once, by whoever takes it out of
// the pending set.
type pubFuture struct {
	msg  *nats.Msg
	id   uint64
	done chan outbox.PublishResult

	// Guarded by the publisher's mu.
	list       *futureList // the list it is on, nil when on none
	prev, next *pubFuture
	at         time.Time // its deadline on waiting, its send time on retries
	retried    int
}

// fail answers f with err.
func (f *pubFuture) fail(err error) { f.done <- outbox.PublishResult{Err: err} }

// publish sends m with a reply subject of its own; the channel receives the
// ack or an error. An error returned here means nothing was sent.
func (a *asyncPublisher) publish(m *nats.Msg) (<-chan outbox.PublishResult, error) {
	f := &pubFuture{msg: m, done: make(chan outbox.PublishResult, 1)}
	a.mu.Lock()
	if err := a.subscribeLocked(); err != nil {
		a.mu.Unlock()
		return nil, err
	}
	if len(a.pending) >= a.maxPending {
		if err := a.stallLocked(); err != nil { // unlocks and locks again
			a.mu.Unlock()
			return nil, err
		}
	}
	a.next++
	f.id = a.next
	var b [20]byte
	reply := a.prefix + string(strconv.AppendUint(b[:0], f.id, 10))
	a.pending[f.id] = f
	a.pushLocked(&a.waiting, f, time.Now().Add(a.timeout))
	a.mu.Unlock()

	err := a.nc.PublishMsg(&nats.Msg{Subject: m.Subject, Reply: reply, Header: m.Header, Data: m.Data})
	if err != nil {
		a.mu.Lock()
		a.removeLocked(f)
		a.mu.Unlock()
		return nil, err
	}
	return f.done, nil
}

// subscribeLocked makes the reply subscription on the first publish.
func (a *asyncPublisher) subscribeLocked() error {
	if a.closed {
		return nats.ErrConnectionClosed
	}
	if a.sub != nil {
		return nil
	}
	// The prefix is set before the handler can run (it reads it unlocked).
	a.prefix = a.nc.NewInbox() + "."
	sub, err := a.nc.Subscribe(a.prefix+"*", a.handleReply)
	if err != nil {
		return err
	}
	// At most one ack per pending publish is in the pipe (and a no-responders
	// answer per retry): a MaxPending above nats.go's default limit must not
	// make the subscription drop acks as a slow consumer.
	if err := sub.SetPendingLimits(max(2*a.maxPending, nats.DefaultSubPendingMsgsLimit), nats.DefaultSubPendingBytesLimit); err != nil {
		sub.Unsubscribe()
		return err
	}
	a.sub = sub
	return nil
}

// stallLocked waits, with mu released, up to stallWait for a free slot.
func (a *asyncPublisher) stallLocked() error {
	timer := time.NewTimer(a.stallWait)
	defer timer.Stop()
	for len(a.pending) >= a.maxPending {
		if a.stall == nil {
			a.stall = make(chan struct{})
		}
		stall := a.stall
		a.mu.Unlock()
		select {
		case <-stall:
			a.mu.Lock()
		case <-timer.C:
			a.mu.Lock()
			return jetstream.ErrTooManyStalledMsgs
		}
		if a.closed {
			return nats.ErrConnectionClosed
		}
	}
	return nil
}

// handleReply is the reply subscription's handler: it resolves the future
// the reply is for.
func (a *asyncPublisher) handleReply(m *nats.Msg) {
	if len(m.Subject) <= len(a.prefix) {
		return
	}
	id, err := strconv.ParseUint(m.Subject[len(a.prefix):], 10, 64)
	if err != nil {
		return
	}
	if len(m.Data) == 0 && m.Header.Get("Status") == "503" { // no responders
		a.noResponders(id)
		return
	}
	ack, ackErr := a.parse.parse(m.Data)
	a.mu.Lock()
	f := a.pending[id]
	if f == nil { // timed out, failed by a disconnect, or not ours
		a.mu.Unlock()
		return
	}
	a.removeLocked(f)
	a.mu.Unlock()
	if ackErr != nil {
		f.fail(ackErr)
		return
	}
	f.done <- outbox.PublishResult{Stream: ack.Stream, StreamSeq: ack.Sequence, Duplicate: ack.Duplicate}
}

// noResponders retries the publish of id after retryWait, or fails it with
// jetstream.ErrNoStreamResponse when it has been retried enough.
func (a *asyncPublisher) noResponders(id uint64) {
	a.mu.Lock()
	f := a.pending[id]
	if f == nil || f.list != &a.waiting {
		a.mu.Unlock()
		return
	}
	if f.retried >= a.retryAttempts {
		a.removeLocked(f)
		a.mu.Unlock()
		f.fail(jetstream.ErrNoStreamResponse)
		return
	}
	f.retried++
	a.unlinkLocked(f)
	a.pushLocked(&a.retries, f, time.Now().Add(a.retryWait))
	a.mu.Unlock()
}

// run times out the publishes past their deadline and sends again those
// whose retry is due, until close.
func (a *asyncPublisher) run() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next, resend := a.sweep(time.Now())
		for _, f := range resend {
			a.resend(f)
		}
		if len(resend) > 0 {
			continue // sending took time: sweep again
		}
		timer.Reset(next)
		select {
		case <-a.done:
			return
		case <-a.wake:
		case <-timer.C:
		}
	}
}

// sweep fails the publishes past their deadline, takes the retries due, and
// says how long until the next deadline or retry.
func (a *asyncPublisher) sweep(now time.Time) (next time.Duration, resend []*pubFuture) {
	var expired []*pubFuture
	a.mu.Lock()
	for f := a.waiting.head; f != nil && !f.at.After(now); f = a.waiting.head {
		a.removeLocked(f)
		expired = append(expired, f)
	}
	for f := a.retries.head; f != nil && !f.at.After(now); f = a.retries.head {
		a.unlinkLocked(f)
		a.pushLocked(&a.waiting, f, now.Add(a.timeout))
		resend = append(resend, f)
	}
	next = time.Hour
	if f := a.waiting.head; f != nil {
		next = min(next, f.at.Sub(now))
	}
	if f := a.retries.head; f != nil {
		next = min(next, f.at.Sub(now))
	}
	a.mu.Unlock()
	for _, f := range expired {
		f.fail(jetstream.ErrAsyncPublishTimeout)
	}
	return next, resend
}

// resend publishes f again with the same reply subject.
func (a *asyncPublisher) resend(f *pubFuture) {
	a.mu.Lock()
	if a.pending[f.id] != f {
		a.mu.Unlock()
		return
	}
	reply := a.prefix + strconv.FormatUint(f.id, 10)
	a.mu.Unlock()
	m := f.msg
	if err := a.nc.PublishMsg(&nats.Msg{Subject: m.Subject, Reply: reply, Header: m.Header, Data: m.Data}); err != nil {
		a.mu.Lock()
		removed := a.removeLocked(f)
		a.mu.Unlock()
		if removed {
			f.fail(err)
		}
	}
}

// failAll fails every pending publish with err: the connection dropped
// (nats.ErrDisconnected) or closed (nats.ErrConnectionClosed).
func (a *asyncPublisher) failAll(err error) {
	a.mu.Lock()
	failed := make([]*pubFuture, 0, len(a.pending))
	for _, f := range a.pending {
		failed = append(failed, f)
	}
	clear(a.pending)
	a.waiting, a.retries = futureList{}, futureList{}
	for _, f := range failed {
		f.list, f.prev, f.next = nil, nil, nil
	}
	a.unstallLocked()
	a.mu.Unlock()
	for _, f := range failed {
		f.fail(err)
	}
}

// close fails every pending publish with nats.ErrConnectionClosed and stops
// the timer goroutine. Call it once the connection is closed.
func (a *asyncPublisher) close() {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return
	}
	a.closed = true
	close(a.done)
	a.mu.Unlock()
	a.wg.Wait()
	a.failAll(nats.ErrConnectionClosed)
}

// pendingCount returns the number of publishes awaiting an ack.
func (a *asyncPublisher) pendingCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.pending)
}

// removeLocked takes f out of the pending set; false when it was not in it
// (resolved already).
func (a *asyncPublisher) removeLocked(f *pubFuture) bool {
	if a.pending[f.id] != f {
		return false
	}
	delete(a.pending, f.id)
	a.unlinkLocked(f)
	a.unstallLocked()
	return true
}

func (a *asyncPublisher) unstallLocked() {
	if a.stall != nil && len(a.pending) < a.maxPending {
		close(a.stall)
		a.stall = nil
	}
}

// pushLocked appends f to l with time at; a new head wakes run.
func (a *asyncPublisher) pushLocked(l *futureList, f *pubFuture, at time.Time) {
	f.at = at
	l.push(f)
	if l.head == f {
		select {
		case a.wake <- struct{}{}:
		default:
		}
	}
}

func (a *asyncPublisher) unlinkLocked(f *pubFuture) {
	if f.list != nil {
		f.list.remove(f)
	}
}

// futureList is a doubly linked list of futures threaded through them.
type futureList struct{ head, tail *pubFuture }

func (l *futureList) push(f *pubFuture) {
	f.list, f.prev, f.next = l, l.tail, nil
	if l.tail != nil {
		l.tail.next = f
	} else {
		l.head = f
	}
	l.tail = f
}

func (l *futureList) remove(f *pubFuture) {
	if f.prev != nil {
		f.prev.next = f.next
	} else {
		l.head = f.next
	}
	if f.next != nil {
		f.next.prev = f.prev
	} else {
		l.tail = f.prev
	}
	f.list, f.prev, f.next = nil, nil, nil
}
