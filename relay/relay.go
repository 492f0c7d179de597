package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/fitiqcore/outbox"
)

// Relay publishes the store's events. Create it with New, start it with Run.
type Relay struct {
	store  Store
	pub    Publisher
	cfg    Config
	log    *slog.Logger
	tracer trace.Tracer // nil: no spans (Config.TracerProvider unset)

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

// New returns a relay over store and pub. It fails only when cfg.Validate
// does.
func New(store Store, pub Publisher, cfg Config) (*Relay, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	return &Relay{
		store: store, pub: pub, cfg: cfg, log: cfg.Logger, tracer: newTracer(cfg.TracerProvider),
		inflight:   make(map[uint64]uint64),
		unknown:    make(map[uint64]unknownSend),
		paused:     true, // Ready before the first publish
		sweepEvery: sweepEvery, sweepAge: sweepAge,
		kick: make(chan struct{}, 1),
	}, nil
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

// sent is one publish, from the reader to the waiter.
type sent struct {
	e       *outbox.Event
	attempt int
	at      time.Time
	low     uint64 // the relay's low when it sent: the stream held at least this much
	answer  <-chan outbox.PublishResult
	err     error      // set when the publish failed
	unsent  bool       // PublishAsync refused it: nothing reached the broker
	span    trace.Span // its span, ended with its outcome; nil without a TracerProvider
}

// result is one publish with its answer, from the waiter (or the reader,
// for a publish refused at once) to the completer.
type result struct {
	sent
	duplicate bool
}

// Run relays until ctx ends, then stops reading, waits up to DrainTimeout for
// the acks of in-flight publishes, records them, and returns nil. It returns
// an error only when the store fails.
//
// The reader runs on Run's own goroutine; Run starts two more, the waiter
// and the completer, and returns only after both have ended.
func (r *Relay) Run(ctx context.Context) error {
	// The completer and waiter outlive ctx while draining: they use their own.
	bg, cancelBg := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBg()
	futures := make(chan sent, r.cfg.MaxInFlight)
	results := make(chan result, r.cfg.MaxInFlight)
	// A store that cannot record outcomes (a full disk, a broken file) stops
	// the reader: publishing what can never be completed would republish the
	// same events in a loop.
	readCtx, stopRead := context.WithCancel(ctx)
	defer stopRead()
	var wg sync.WaitGroup
	wg.Go(func() { r.wait(bg, futures, results) })
	errc := make(chan error, 1)
	wg.Go(func() { errc <- r.complete(bg, results, stopRead) })

	err := r.read(readCtx, futures, results)
	close(futures)
	// The completer ends once the waiter has ended and it has recorded
	// every result.
	drain := time.NewTimer(r.cfg.DrainTimeout)
	defer drain.Stop()
	var cerr error
	select {
	case cerr = <-errc:
	case <-drain.C:
		r.log.Warn("drain timed out; unacked events stay pending and will be published again", "in_flight", r.InFlightCount())
		cancelBg()
		cerr = <-errc
	}
	wg.Wait()
	if err == nil {
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
			if r.tracer != nil {
				s.span = r.startSpan(e, s.attempt)
			}
			s.answer, s.err = r.pub.PublishAsync(e, s.attempt)
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

// wait awaits the answers in publish order; they arrive in about that order.
//
// When ctx ends (the drain timed out) it stops waiting: the publishes still
// unanswered are not reported. Their events stay pending, their attempts
// unconsumed, and the read-back mark already recorded covers them (each
// mark is below every publish in flight when it was recorded, and those
// sent later are above it), so that the next start reads them back. No
// outcome is made up for them: the relay never speaks for the publisher.
// Their spans end as abandoned.
func (r *Relay) wait(ctx context.Context, futures <-chan sent, results chan<- result) {
	defer close(results)
	for s := range futures {
		select {
		case ans := <-s.answer:
			res := result{sent: s}
			if ans.Err != nil {
				res.err = ans.Err
			} else {
				r.raise(ans.StreamSeq)
				res.duplicate = ans.Duplicate
			}
			results <- res
		case <-ctx.Done():
			if r.tracer != nil {
				endUnanswered(s.span, "abandoned", errAbandoned)
				// ctx ends only once the reader has returned and closed
				// futures: this ends.
				for s := range futures {
					endUnanswered(s.span, "abandoned", errAbandoned)
				}
			}
			return
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
			if r.tracer != nil {
				for _, res := range batch {
					endUnanswered(res.span, "unrecorded", res.err)
				}
			}
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
