package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
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
	// one transaction, together with the in-flight mark when it is not zero.
	Record(ctx context.Context, acks []boltstore.Ack, fails []boltstore.Failure, mark time.Time) error
	// Mark returns the in-flight mark last recorded (zero when none): every
	// publish whose outcome was unknown when the relay stopped was sent at or
	// after it.
	Mark(ctx context.Context) (time.Time, error)
	// Get returns the event with that id, or an error wrapping
	// boltstore.ErrNotFound.
	Get(ctx context.Context, id string) (*outbox.Event, error)
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
	// any other error is a failed attempt. Safe for concurrent use.
	Classify(ctx context.Context, err error) error
	// StoredSince calls fn for every event id the stream stored from since
	// on (used once at start to reconcile unknown outcomes).
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
	Retried                 // attempt failed; retried at Next
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
	Err       error
	Next      time.Time // next attempt, for Retried
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
	// DisableReconcile skips reading the stream back at start. Without the
	// read-back, a relay that stopped with publishes in flight and starts
	// again after the stream's duplicate window may publish them twice.
	DisableReconcile bool
	// ClockSkew widens the read-back window at start to cover a difference
	// between this host's clock and the NATS servers' (default 2s).
	ClockSkew time.Duration
	Logger    *slog.Logger
	Observer  Observer
	Now       func() time.Time
}

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
		c.Jitter = 0.2
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 10 * time.Second
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

// DefaultRetry is close to FitIQ's 1s, 5s, 30s, 120s, 600s.
var DefaultRetry = outbox.RetryPolicy{InitialInterval: time.Second, MaxInterval: 10 * time.Minute, Multiplier: 5}

// Relay publishes the store's events. Create it with New, start it with Run.
type Relay struct {
	store Store
	pub   Publisher
	cfg   Config
	log   *slog.Logger

	mu         sync.Mutex
	inflight   map[uint64]time.Time // seq → when its publish was sent (at the latest)
	unknown    map[uint64]time.Time // seq → first publish whose outcome is unknown, until acked or failed for good
	paused     bool                 // an outage was seen: wait for Ready before publishing
	reconciled bool                 // the start-up read-back is done

	kick chan struct{} // completer → reader: room freed or events back
}

// New returns a relay over store and pub.
func New(store Store, pub Publisher, cfg Config) (*Relay, error) {
	cfg.setDefaults()
	if err := cfg.Retry.Validate(); err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	if cfg.Jitter < 0 || cfg.Jitter >= 1 {
		return nil, fmt.Errorf("relay: jitter must be in [0,1), got %g", cfg.Jitter)
	}
	return &Relay{
		store: store, pub: pub, cfg: cfg, log: cfg.Logger,
		inflight: make(map[uint64]time.Time),
		unknown:  make(map[uint64]time.Time),
		paused:   true, // Ready before the first publish
		kick:     make(chan struct{}, 1),
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
	fut     jetstream.PubAckFuture
	err     error // set when the publish failed before sending
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
	for ctx.Err() == nil {
		r.mu.Lock()
		paused, room := r.paused, r.cfg.MaxInFlight-len(r.inflight)
		r.mu.Unlock()
		if paused {
			if err := r.pub.Ready(ctx); err != nil {
				return nil // ctx ended
			}
			if !r.reconciled {
				if err := r.reconcile(ctx); err != nil {
					if ctx.Err() != nil {
						return nil
					}
					r.log.Warn("reading the stream back failed; will try again", "err", err)
					select {
					case <-ctx.Done():
					case <-time.After(time.Second):
					}
					continue
				}
				r.reconciled = true
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
		if err == nil {
			for _, e := range events {
				r.inflight[e.Seq] = now
			}
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
				if timer == nil {
					timer = time.NewTimer(next.Sub(now))
				} else {
					timer.Reset(next.Sub(now))
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
		for _, e := range events {
			s := sent{e: e, attempt: e.AttemptCount + 1, at: r.cfg.Now()}
			s.fut, s.err = r.pub.PublishAsync(e, s.attempt)
			if s.err != nil {
				results <- result{sent: s} // never blocks: one slot per in-flight event
				continue
			}
			futures <- s
		}
	}
	return nil
}

// wait resolves futures in publish order; acks arrive in about that order.
func (r *Relay) wait(ctx context.Context, futures <-chan sent, results chan<- result) {
	defer close(results)
	for s := range futures {
		select {
		case ack := <-s.fut.Ok():
			results <- result{sent: s, ack: ack}
		case err := <-s.fut.Err():
			s.err = err
			results <- result{sent: s}
		case <-ctx.Done(): // drain timed out: outcome unknown, event stays pending
			s.err = fmt.Errorf("%w: relay stopping", publisher.ErrUnavailable)
			results <- result{sent: s}
		}
	}
}

const maxCommit = 2048 // outcomes per transaction

// complete records outcomes in batched transactions.
func (r *Relay) complete(ctx context.Context, results <-chan result, stopRead context.CancelFunc) error {
	batch := make([]result, 0, maxCommit)
	var storeErr error
	for res := range results {
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
			storeErr = err
			stopRead()
			r.log.Error("recording publish outcomes failed; the relay stops, events stay pending", "err", err)
		}
		r.release(batch)
	}
	return storeErr
}

func (r *Relay) release(batch []result) {
	r.mu.Lock()
	for _, res := range batch {
		delete(r.inflight, res.e.Seq)
	}
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

func (r *Relay) commit(ctx context.Context, batch []result) error {
	var acks []boltstore.Ack
	var fails []boltstore.Failure
	outcomes := make([]Outcome, 0, len(batch))
	outage := false
	for _, res := range batch {
		o := Outcome{Event: res.e, Attempt: res.attempt, Sent: res.at}
		if res.err == nil {
			acks = append(acks, boltstore.Ack{Seq: res.e.Seq, At: res.at})
			o.Kind, o.Duplicate = Published, res.ack != nil && res.ack.Duplicate
			outcomes = append(outcomes, o)
			continue
		}
		err := r.pub.Classify(ctx, res.err)
		o.Err = err
		switch {
		case errors.Is(err, publisher.ErrUnavailable):
			outage = true
			o.Kind = Unavailable
		case errors.Is(err, publisher.ErrPermanent) || res.attempt >= res.e.MaxAttempts:
			fails = append(fails, boltstore.Failure{Seq: res.e.Seq, At: res.at, Err: err.Error(), Permanent: true})
			o.Kind = Failed
		default:
			o.Next = r.cfg.Now().Add(r.Backoff(res.e, res.attempt))
			fails = append(fails, boltstore.Failure{Seq: res.e.Seq, At: res.at, Err: err.Error(), NextAttemptAt: o.Next})
			o.Kind = Retried
		}
		outcomes = append(outcomes, o)
	}
	mark := r.track(batch, outcomes, outage)
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

// track notes which publishes have an unknown outcome (the stream may hold
// them although no ack arrived) and returns the in-flight mark to record with
// this batch: the send time of the oldest publish still in flight or still
// unknown, or now. A restart reads the stream back from the mark.
func (r *Relay) track(batch []result, outcomes []Outcome, outage bool) time.Time {
	now := r.cfg.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if outage {
		r.paused = true
	}
	for i, o := range outcomes {
		seq := o.Event.Seq
		switch {
		case o.Kind == Published || o.Kind == Failed:
			delete(r.unknown, seq)
		case !isServerAnswer(batch[i].err):
			if _, ok := r.unknown[seq]; !ok {
				r.unknown[seq] = batch[i].at
			}
		}
	}
	mark := now
	for _, t := range r.inflight {
		if t.Before(mark) {
			mark = t
		}
	}
	for _, t := range r.unknown {
		if t.Before(mark) {
			mark = t
		}
	}
	return mark
}

// isServerAnswer reports whether err is JetStream's answer to the publish
// (which means the message was not stored) rather than a lost or missing one.
func isServerAnswer(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr)
}

// reconcile runs once before the first publish: it reads the stream back
// from the recorded in-flight mark and completes every pending event the
// stream already holds, so that an event whose ack was lost in a crash is not
// published again — even after the stream's duplicate window, when
// JetStream would no longer de-duplicate it. Then it records a fresh mark.
func (r *Relay) reconcile(ctx context.Context) error {
	mark, err := r.store.Mark(ctx)
	if err != nil {
		return err
	}
	found := 0
	if !mark.IsZero() && !r.cfg.DisableReconcile {
		started := time.Now()
		var acks []boltstore.Ack
		flush := func() error {
			if len(acks) == 0 {
				return nil
			}
			err := r.store.Record(ctx, acks, nil, time.Time{})
			acks = acks[:0]
			return err
		}
		read := 0
		err := r.pub.StoredSince(ctx, mark.Add(-r.cfg.ClockSkew), func(s publisher.Stored) error {
			read++
			e, err := r.store.Get(ctx, s.ID)
			if errors.Is(err, boltstore.ErrNotFound) {
				return nil // not ours, or deleted
			}
			if err != nil {
				return err
			}
			if e.Status != outbox.StatusPending {
				return nil
			}
			acks = append(acks, boltstore.Ack{Seq: e.Seq, At: s.Time})
			found++
			r.log.Info("event found in the stream after a restart; completed without publishing again",
				"event_id", e.ID, "type", e.Type, "attempt", e.AttemptCount+1, "stream_seq", s.StreamSeq)
			if len(acks) >= maxCommit {
				return flush()
			}
			return nil
		})
		if err == nil {
			err = flush()
		}
		if err != nil {
			return fmt.Errorf("relay: reconcile: %w", err)
		}
		r.log.Info("stream read back", "since", mark, "messages", read, "completed", found, "took", time.Since(started))
	}
	return r.store.Record(ctx, nil, nil, r.cfg.Now())
}

func (r *Relay) logOutcome(o Outcome) {
	attrs := []any{"event_id", o.Event.ID, "type", o.Event.Type, "attempt", o.Attempt}
	switch o.Kind {
	case Published:
		if r.log.Enabled(context.Background(), slog.LevelDebug) {
			r.log.Debug("event published", append(attrs, "duplicate", o.Duplicate)...)
		}
	case Retried:
		r.log.Warn("publish failed, will retry", append(attrs, "err", o.Err, "next_attempt_at", o.Next)...)
	case Failed:
		r.log.Error("publish failed for good; event is failed", append(attrs, "err", o.Err, "max_attempts", o.Event.MaxAttempts)...)
	case Unavailable:
		r.log.Debug("broker unavailable; event stays pending", append(attrs, "err", o.Err)...)
	}
}

// Backoff is the wait after the attempt-th failed attempt of e: the event's
// own policy or the relay's, exponential with jitter.
func (r *Relay) Backoff(e *outbox.Event, attempt int) time.Duration {
	p := r.cfg.Retry
	if e.Retry != nil {
		p = *e.Retry
	}
	b := &backoff.ExponentialBackOff{
		InitialInterval:     p.InitialInterval,
		RandomizationFactor: r.cfg.Jitter,
		Multiplier:          p.Multiplier,
		MaxInterval:         p.MaxInterval,
		MaxElapsedTime:      0,
		Stop:                backoff.Stop,
		Clock:               backoff.SystemClock,
	}
	b.Reset()
	d := b.NextBackOff()
	for i := 1; i < attempt; i++ {
		d = b.NextBackOff()
	}
	return d
}
