package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
	"github.com/fitiqcore/outbox/publisher"
	"github.com/nats-io/nats.go/jetstream"
)

// Store is what the relay needs of the outbox store. *boltstore.Store
// implements it; all methods must be safe for concurrent use.
type Store interface {
	// Due returns up to n due events, highest priority first, FIFO within a
	// priority, skipping those skip reports; next is when the earliest
	// delayed event falls due (zero when none). An error stops the relay.
	Due(ctx context.Context, now time.Time, n int, skip func(seq uint64) bool) (events []*outbox.Event, next time.Time, err error)
	// Record marks acked events completed and records failed attempts, in
	// one transaction, together with the read-back mark when it is not 0:
	// the stream sequence from which a restarted relay reads the stream
	// back. An error stops the relay.
	Record(ctx context.Context, acks []boltstore.Ack, fails []boltstore.Failure, mark uint64) error
	// ReadBackMark returns the read-back mark last recorded (0 when none): every
	// publish whose outcome was unknown when the relay stopped was stored, if
	// at all, at that stream sequence or later. since is the time-based mark
	// of an older build, used when from is 0.
	ReadBackMark(ctx context.Context) (from uint64, since time.Time, err error)
	// Get returns the event with that id, or an error wrapping
	// boltstore.ErrNotFound.
	Get(ctx context.Context, id string) (*outbox.Event, error)
	// SetBrokerMaxPayload holds new events to what a broker whose
	// max_payload is n can carry. The relay calls it whenever the publisher
	// becomes ready; an error is logged and the relay goes on.
	SetBrokerMaxPayload(ctx context.Context, n int64) error
	// Notify is signalled after commits that make events ready.
	Notify() <-chan struct{}
}

// Publisher is what the relay needs of the broker side. *publisher.Publisher
// implements it.
type Publisher interface {
	// PublishAsync sends e without waiting; an error means nothing was sent.
	// It is called from one goroutine.
	PublishAsync(e *outbox.Event, attempt int) (jetstream.PubAckFuture, error)
	// Ready blocks until publishing can succeed or ctx ends.
	Ready(ctx context.Context) error
	// Classify wraps a publish error in publisher.ErrUnavailable (retry later,
	// no attempt consumed) or publisher.ErrPermanent (fail the event now);
	// any other error is a failed attempt. It also wraps
	// publisher.ErrUnknownOutcome when the error is no answer from the
	// stream, which may hold the message. Safe for concurrent use.
	Classify(ctx context.Context, err error) error
	// LastSeq returns the stream's last sequence now: whatever is published
	// after the call is stored, if at all, at a higher sequence. Called
	// each time the publisher becomes ready.
	LastSeq(ctx context.Context) (uint64, error)
	// MaxPayload is the broker's max_payload (0 while never connected).
	MaxPayload() int64
	// StoredFrom calls fn for every event id the stream stored from stream
	// sequence from on, up to its last message at the time of the call
	// (the read-back of unknown outcomes).
	StoredFrom(ctx context.Context, from uint64, fn func(publisher.Stored) error) error
	// StoredSince is StoredFrom from a time by the servers' clock: for the
	// time-based mark of a store file written by an older build.
	StoredSince(ctx context.Context, since time.Time, fn func(publisher.Stored) error) error
}

var (
	_ Store     = (*boltstore.Store)(nil)
	_ Publisher = (*publisher.Publisher)(nil)
)

// Kind says what happened to one publish.
type Kind int

const (
	Published   Kind = iota // acked by JetStream (Duplicate tells a de-duplicated one)
	Retried                 // attempt failed or its outcome is unknown; retried at Next
	Failed                  // attempt failed for good; the event is failed
	Unavailable             // broker unreachable; no attempt consumed
)

func (k Kind) String() string {
	return [...]string{"published", "retried", "failed", "unavailable"}[k]
}

// Outcome reports one publish to an Observer.
type Outcome struct {
	Kind      Kind
	Event     *outbox.Event
	Attempt   int
	Sent      time.Time // when the publish was sent
	Done      time.Time // when its outcome was committed
	Duplicate bool
	// Unknown: no answer came for this attempt or an earlier one, so the
	// stream may hold the event; it is never failed for its attempts.
	Unknown bool
	Err     error
	Next    time.Time // next attempt, for Retried
}

// Observer receives every publish outcome after it is committed (metrics,
// tests). It is called from the completer goroutine and must not block.
type Observer func(Outcome)

// Config tunes a Relay. The zero value works.
type Config struct {
	BatchSize    int                // events read and published per round (default 1000)
	MaxInFlight  int                // publishes awaiting an ack (default 4096)
	Retry        outbox.RetryPolicy // default backoff: 1s, ×5, at most 10m
	Jitter       float64            // randomization factor of the backoff (default 0.2)
	DrainTimeout time.Duration      // how long Run waits for in-flight acks at shutdown (default 10s)
	// DuplicateWindow is the stream's duplicate window (default 2m, as
	// JetStream's; from 100ms to outbox.MaxRetryInterval). A publish whose
	// outcome is unknown is sent again no later than half of it after the
	// send, so that JetStream answers the re-send for sure (a duplicate ack
	// when it holds the event); later re-sends are preceded by a read-back.
	DuplicateWindow time.Duration
	// DisableReconcile skips reading the stream back, at start and before
	// re-sending an unknown outcome past the duplicate window. Without the
	// read-back, a publish whose ack was lost (in a crash, in a long outage)
	// and that is sent again after the stream's duplicate window is in the
	// stream twice.
	DisableReconcile bool
	// ClockSkew widens the read-back of a store file written by an older
	// build, whose mark is a time by this host's clock, to cover a
	// difference with the NATS servers' clocks (default 2s). The relay's own
	// mark is a stream sequence, which no clock affects.
	ClockSkew time.Duration
	Logger    *slog.Logger
	Observer  Observer
	Now       func() time.Time
}

// DefaultDuplicateWindow is JetStream's default duplicate window.
const DefaultDuplicateWindow = 2 * time.Minute

func (c *Config) setDefaults() {
	if c.BatchSize <= 0 {
		c.BatchSize = 1000
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 4096
	}
	if c.Retry == (outbox.RetryPolicy{}) {
		c.Retry = DefaultRetry
	}
	if c.Jitter == 0 {
		c.Jitter = outbox.DefaultJitter
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 10 * time.Second
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = DefaultDuplicateWindow
	}
	if c.ClockSkew <= 0 {
		c.ClockSkew = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

func (c *Config) validate() error {
	if err := c.Retry.Validate(); err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	if !(c.Jitter >= 0 && c.Jitter < 1) { // NaN fails too
		return fmt.Errorf("relay: jitter must be in [0,1), got %g", c.Jitter)
	}
	if c.DuplicateWindow < 100*time.Millisecond || c.DuplicateWindow > outbox.MaxRetryInterval {
		return fmt.Errorf("relay: duplicate window must be from 100ms to %s, got %s", outbox.MaxRetryInterval, c.DuplicateWindow)
	}
	return nil
}

// DefaultRetry is the relay's default backoff: outbox.DefaultRetryPolicy.
var DefaultRetry = outbox.DefaultRetryPolicy

// Relay publishes the store's events. Create it with New, start it with Run.
type Relay struct {
	store Store
	pub   Publisher
	cfg   Config
	log   *slog.Logger

	// low is a lower bound of the stream's last sequence: LastSeq when the
	// publisher last became ready, raised by every ack. A publish sent after
	// the relay saw it is stored, if at all, above it.
	low atomic.Uint64

	mu         sync.Mutex
	inflight   map[uint64]uint64      // seq → low when its publish was sent
	unknown    map[uint64]unknownSend // seq → its first publish of unknown outcome, until acked, failed or dropped
	paused     bool                   // an outage was seen: wait for Ready before publishing
	reconciled bool                   // the start-up read-back is done

	// The sweep of unknown outcomes whose event is no longer pending.
	sweepEvery, sweepAge time.Duration

	kick chan struct{} // completer → reader: room freed or events back
}

// New returns a relay over store and pub.
func New(store Store, pub Publisher, cfg Config) (*Relay, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Relay{
		store: store, pub: pub, cfg: cfg, log: cfg.Logger,
		inflight:   make(map[uint64]uint64),
		unknown:    make(map[uint64]unknownSend),
		paused:     true, // Ready before the first publish
		sweepEvery: sweepEvery, sweepAge: sweepAge,
		kick: make(chan struct{}, 1),
	}, nil
}

// InFlight reports whether the event with store sequence seq is being
// published now (its status shows as processing).
func (r *Relay) InFlight(seq uint64) bool {
	r.mu.Lock()
	_, ok := r.inflight[seq]
	r.mu.Unlock()
	return ok
}

// InFlightCount is the number of publishes awaiting an outcome.
func (r *Relay) InFlightCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.inflight)
}

func (r *Relay) isInFlight(seq uint64) bool {
	_, ok := r.inflight[seq] // called under r.mu by reader
	return ok
}

type sent struct {
	e       *outbox.Event
	attempt int
	at      time.Time
	low     uint64 // the relay's low when it sent: the stream held at least this much
	fut     jetstream.PubAckFuture
	err     error // set when the publish failed
	unsent  bool  // PublishAsync refused it: nothing reached the broker
}

type result struct {
	sent
	ack *jetstream.PubAck
}

// Run relays until ctx ends, then stops reading, waits up to DrainTimeout for
// the acks of in-flight publishes, records them, and returns nil. It returns
// an error only when the store fails.
func (r *Relay) Run(ctx context.Context) error {
	// The completer and waiter outlive ctx while draining: they use their own.
	bg, cancelBg := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBg()
	futures := make(chan sent, r.cfg.MaxInFlight)
	results := make(chan result, r.cfg.MaxInFlight)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); r.wait(bg, futures, results) }()
	errc := make(chan error, 1)
	// A store that cannot record outcomes (a full disk, a broken file) stops
	// the reader: publishing what can never be completed would republish the
	// same events in a loop.
	readCtx, stopRead := context.WithCancel(ctx)
	defer stopRead()
	go func() {
		defer wg.Done()
		err := r.complete(bg, results, stopRead)
		errc <- err
	}()

	err := r.read(readCtx, futures, results)
	close(futures)
	drained := make(chan struct{})
	go func() { wg.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(r.cfg.DrainTimeout):
		r.log.Warn("drain timed out; unacked events stay pending and will be published again", "in_flight", r.InFlightCount())
		cancelBg()
		<-drained
	}
	if cerr := <-errc; err == nil {
		err = cerr
	}
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// read is the reader loop.
func (r *Relay) read(ctx context.Context, futures chan<- sent, results chan<- result) error {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	retryLater := func(what string, err error) {
		r.log.Warn(what+"; will try again", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	for ctx.Err() == nil {
		r.mu.Lock()
		paused, room := r.paused, r.cfg.MaxInFlight-len(r.inflight)
		r.mu.Unlock()
		if paused {
			if err := r.pub.Ready(ctx); err != nil {
				return nil // ctx ended
			}
			if err := r.connected(ctx); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				retryLater("getting ready to publish failed", err)
				continue
			}
			r.mu.Lock()
			r.paused = false
			r.mu.Unlock()
			r.log.Debug("publishing")
		}
		if room <= 0 {
			select {
			case <-ctx.Done():
			case <-r.kick:
			}
			continue
		}
		now := r.cfg.Now()
		r.mu.Lock() // held while Due calls skip: the completer waits briefly
		events, next, err := r.store.Due(ctx, now, min(room, r.cfg.BatchSize), r.isInFlight)
		var from uint64
		low := r.low.Load()
		if err == nil {
			for _, e := range events {
				r.inflight[e.Seq] = low
			}
			from = r.staleFrom(events, now)
		}
		r.mu.Unlock()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("relay: %w", err)
		}
		if len(events) == 0 {
			var due <-chan time.Time
			if !next.IsZero() {
				d := idleWait(now, next)
				if timer == nil {
					timer = time.NewTimer(d)
				} else {
					timer.Reset(d)
				}
				due = timer.C
			}
			select {
			case <-ctx.Done():
			case <-r.store.Notify():
			case <-r.kick:
			case <-due:
			}
			continue
		}
		if from != 0 {
			rest, err := r.checkStale(ctx, events, from)
			if err != nil {
				r.releaseSeqs(events)
				if ctx.Err() != nil {
					return nil
				}
				r.mu.Lock()
				r.paused = true
				r.mu.Unlock()
				retryLater("reading the stream back before a late re-send failed", err)
				continue
			}
			events = rest
		}
		for _, e := range events {
			s := sent{e: e, attempt: e.AttemptCount + 1, at: r.cfg.Now(), low: low}
			s.fut, s.err = r.pub.PublishAsync(e, s.attempt)
			if s.err != nil {
				s.unsent = true
				results <- result{sent: s} // never blocks: one slot per in-flight event
				continue
			}
			futures <- s
		}
	}
	return nil
}

// connected runs each time the publisher becomes ready: it learns the
// stream's last sequence, tells the store the broker's max_payload and, the
// first time, reads the stream back from the recorded mark.
func (r *Relay) connected(ctx context.Context) error {
	last, err := r.pub.LastSeq(ctx)
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	r.raise(last)
	if n := r.pub.MaxPayload(); n > 0 {
		if err := r.store.SetBrokerMaxPayload(ctx, n); err != nil && ctx.Err() == nil {
			r.log.Error("could not hold the store to the broker's max_payload", "max_payload", n, "err", err)
		}
	}
	if !r.reconciled {
		if err := r.reconcile(ctx); err != nil {
			return err
		}
		r.reconciled = true
	}
	return nil
}

// wait resolves futures in publish order; acks arrive in about that order.
func (r *Relay) wait(ctx context.Context, futures <-chan sent, results chan<- result) {
	defer close(results)
	for s := range futures {
		select {
		case ack := <-s.fut.Ok():
			r.raise(ack.Sequence)
			results <- result{sent: s, ack: ack}
		case err := <-s.fut.Err():
			s.err = err
			results <- result{sent: s}
		case <-ctx.Done(): // drain timed out: outcome unknown, event stays pending
			s.err = fmt.Errorf("%w: %w: relay stopping before the ack", publisher.ErrUnavailable, publisher.ErrUnknownOutcome)
			results <- result{sent: s}
		}
	}
}

const maxCommit = 2048 // outcomes per transaction

// complete records outcomes in batched transactions, and sweeps the unknown
// outcomes every sweepEvery.
func (r *Relay) complete(ctx context.Context, results <-chan result, stopRead context.CancelFunc) error {
	batch := make([]result, 0, maxCommit)
	var storeErr error
	fail := func(err error) {
		storeErr = err
		stopRead()
		r.log.Error("recording publish outcomes failed; the relay stops, events stay pending", "err", err)
	}
	sweep := time.NewTicker(r.sweepEvery)
	defer sweep.Stop()
	for {
		var res result
		select {
		case <-sweep.C:
			if storeErr == nil {
				if err := r.sweep(ctx); err != nil {
					fail(err)
				}
			}
			continue
		case got, ok := <-results:
			if !ok {
				return storeErr
			}
			res = got
		}
		batch = append(batch[:0], res)
	fill:
		for len(batch) < maxCommit {
			select {
			case res, ok := <-results:
				if !ok {
					break fill
				}
				batch = append(batch, res)
			default:
				break fill
			}
		}
		if storeErr != nil { // keep draining so the waiter never blocks
			r.release(batch)
			continue
		}
		if err := r.commit(ctx, batch); err != nil {
			fail(err)
		}
		r.release(batch)
	}
}

func (r *Relay) release(batch []result) {
	r.mu.Lock()
	for _, res := range batch {
		delete(r.inflight, res.e.Seq)
	}
	r.mu.Unlock()
	r.wake()
}

func (r *Relay) releaseSeqs(events []*outbox.Event) {
	r.mu.Lock()
	for _, e := range events {
		delete(r.inflight, e.Seq)
	}
	r.mu.Unlock()
	r.wake()
}

func (r *Relay) wake() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// commit records the outcomes of a batch, with the read-back mark, in one
// transaction.
func (r *Relay) commit(ctx context.Context, batch []result) error {
	// Classify may probe the broker: not under r.mu.
	classified := make([]error, len(batch))
	for i, res := range batch {
		if res.err != nil {
			classified[i] = r.pub.Classify(ctx, res.err)
		}
	}
	now := r.cfg.Now()
	var acks []boltstore.Ack
	var fails []boltstore.Failure
	outcomes := make([]Outcome, 0, len(batch))
	r.mu.Lock()
	for i, res := range batch {
		seq := res.e.Seq
		o := Outcome{Event: res.e, Attempt: res.attempt, Sent: res.at}
		if res.err == nil {
			acks = append(acks, boltstore.Ack{Seq: seq, At: res.at})
			o.Kind, o.Duplicate = Published, res.ack != nil && res.ack.Duplicate
			delete(r.unknown, seq)
			outcomes = append(outcomes, o)
			continue
		}
		err := classified[i]
		o.Err = err
		o.Unknown = r.noteUnknown(res.sent, err)
		switch {
		case errors.Is(err, publisher.ErrUnavailable):
			r.paused = true
			o.Kind = Unavailable
		case errors.Is(err, publisher.ErrPermanent):
			fails = append(fails, boltstore.Failure{Seq: seq, At: res.at, Err: err.Error(), Permanent: true})
			o.Kind = Failed
			delete(r.unknown, seq)
		case o.Unknown:
			// Never failed for its attempts: the stream may hold it. The
			// re-send lands inside the duplicate window, where JetStream
			// answers it for sure.
			o.Next = r.nextUnknown(res.sent, now)
			fails = append(fails, boltstore.Failure{Seq: seq, At: res.at, Err: err.Error(), NextAttemptAt: o.Next, Unknown: true})
			o.Kind = Retried
		case res.attempt >= res.e.MaxAttempts:
			fails = append(fails, boltstore.Failure{Seq: seq, At: res.at, Err: err.Error(), Permanent: true})
			o.Kind = Failed
		default:
			o.Next = now.Add(r.Backoff(res.e, res.attempt))
			fails = append(fails, boltstore.Failure{Seq: seq, At: res.at, Err: err.Error(), NextAttemptAt: o.Next})
			o.Kind = Retried
		}
		outcomes = append(outcomes, o)
	}
	mark := r.markLocked(batch)
	r.mu.Unlock()
	if err := r.store.Record(ctx, acks, fails, mark); err != nil {
		return err
	}
	done := r.cfg.Now()
	for _, o := range outcomes {
		o.Done = done
		r.logOutcome(o)
		if r.cfg.Observer != nil {
			r.cfg.Observer(o)
		}
	}
	return nil
}

func (r *Relay) logOutcome(o Outcome) {
	attrs := []any{"event_id", o.Event.ID, "type", o.Event.Type, "attempt", o.Attempt}
	switch {
	case o.Kind == Published:
		if r.log.Enabled(context.Background(), slog.LevelDebug) {
			r.log.Debug("event published", append(attrs, "duplicate", o.Duplicate)...)
		}
	case o.Kind == Retried && o.Unknown:
		r.log.Warn("publish outcome unknown (the stream may hold it); will publish again within the duplicate window",
			append(attrs, "err", o.Err, "next_attempt_at", o.Next)...)
	case o.Kind == Retried:
		r.log.Warn("publish failed, will retry", append(attrs, "err", o.Err, "next_attempt_at", o.Next)...)
	case o.Kind == Failed:
		r.log.Error("publish failed for good; event is failed", append(attrs, "err", o.Err, "max_attempts", o.Event.MaxAttempts)...)
	case o.Kind == Unavailable:
		r.log.Debug("broker unavailable; event stays pending", append(attrs, "err", o.Err)...)
	}
}
