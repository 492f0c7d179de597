package handlers

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fitiqcore/outbox"
)

const (
	opTimeout = 5 * time.Second // one ack, KV operation or dead-letter publish
	maxBatch  = 256             // most messages asked for in one pull
)

// Run creates or updates the durable consumer, then fetches and handles its
// messages until ctx ends or the consumer goes away. When ctx ends it stops
// fetching, lets the workers finish the messages they hold (handlers running
// and those queued behind them), waits for their acks and returns nil. At the
// shutdown timeout the handlers' contexts are cancelled and the messages not
// yet handled are released for redelivery; Run then returns an error wrapping
// ErrShutdownTimeout. Nothing is lost either way: a message that was not acked
// is delivered again.
//
// Before its first fetch, Run may wait up to about one AckWait for messages
// that an earlier process left unacked (see WithStartupHold).
//
// Run returns at once with an error when the consumer, the dead-letter check
// or the idempotency bucket cannot be set up, with ErrNoHandlers when no
// handler is registered, and with ErrRunning while another Run is in progress;
// it returns nil when ctx ends before it started fetching. A Router may be Run
// again after Run returned.
func (r *Router) Run(ctx context.Context) error {
	r.mu.Lock()
	switch {
	case r.running:
		r.mu.Unlock()
		return ErrRunning
	case len(r.routes) == 0:
		r.mu.Unlock()
		return ErrNoHandlers
	}
	r.running = true
	t := newTable(r.routes, r.mws, r.opts.logger)
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.running = false
		r.mu.Unlock()
	}()

	s, err := r.start(ctx, t)
	if err == nil {
		err = s.hold(ctx)
	}
	switch {
	case ctx.Err() != nil: // told to stop while starting
		return nil
	case err != nil:
		return err
	}
	return s.run(ctx)
}

// session is the state of one Run.
type session struct {
	r         *Router
	o         options // with the subject and dead-letter prefixes resolved
	table     table
	cons      jetstream.Consumer
	kv        jetstream.KeyValue // nil without WithIdempotency
	dlqStream bool               // a stream keeps the dead letters
	dlqName   string             // its name
	dlqMaxMsg atomic.Int64       // its max_msg_size (<= 0: none), read at the start and after a refusal
	log       *slog.Logger

	work       context.Context // the handlers' context, cancelled at the shutdown timeout
	cancelWork context.CancelFunc
	tokens     chan struct{} // one per message held: the MaxAckPending budget
	queues     []chan *inflight
	next       atomic.Uint64 // round robin for events without an entity

	mu   sync.Mutex
	held map[*inflight]struct{} // kept alive with in-progress acks
}

// inflight is a message from the moment it is fetched until it is acked,
// naked, terminated or abandoned.
type inflight struct {
	msg jetstream.Msg
}

func (s *session) run(ctx context.Context) error {
	s.work, s.cancelWork = context.WithCancel(context.WithoutCancel(ctx))
	defer s.cancelWork()

	var workers sync.WaitGroup
	for _, q := range s.queues {
		workers.Go(func() {
			for m := range q {
				if s.work.Err() != nil {
					s.release(m)
					continue
				}
				s.process(m)
			}
		})
	}
	stopKeepalive := make(chan struct{})
	var keepalive sync.WaitGroup
	keepalive.Go(func() { s.keepalive(stopKeepalive) })

	// The shutdown timeout counts from the end of ctx (or of fetching, when
	// the consumer went away), although the pull in progress still runs to its
	// expiry: its messages are handled too.
	fetchCtx, stopFetch := context.WithCancel(ctx)
	defer stopFetch()
	finished, expired := make(chan struct{}), make(chan struct{})
	var watch sync.WaitGroup
	watch.Go(func() {
		select {
		case <-fetchCtx.Done():
		case <-finished:
			return
		}
		t := time.NewTimer(s.o.shutdownTimeout)
		defer t.Stop()
		select {
		case <-t.C:
			s.cancelWork() // handlers return, queued messages are released
			close(expired)
		case <-finished:
		}
	})

	fetchErr := s.fetch(fetchCtx)
	stopFetch()
	for _, q := range s.queues {
		close(q)
	}
	drained := make(chan struct{})
	go func() { workers.Wait(); close(drained) }()

	var shutdownErr error
	select {
	case <-drained:
	case <-expired:
		select {
		case <-drained:
			shutdownErr = fmt.Errorf("%w: handlers interrupted after %s; their messages were released", ErrShutdownTimeout, s.o.shutdownTimeout)
		case <-time.After(s.o.shutdownTimeout):
			shutdownErr = fmt.Errorf("%w: %d handlers still running after their context was cancelled; their messages come back after the ack wait",
				ErrShutdownTimeout, s.holding())
		}
	}
	close(finished)
	watch.Wait()
	close(stopKeepalive)
	keepalive.Wait()
	if err := s.r.js.Conn().FlushTimeout(opTimeout); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		s.log.Warn("flush acks", "err", err)
	}
	return errors.Join(fetchErr, shutdownErr)
}

// fetch pulls messages while ctx lasts, never holding more than
// MaxAckPending, and hands them to the workers.
func (s *session) fetch(ctx context.Context) error {
	wait := 100 * time.Millisecond
	for ctx.Err() == nil {
		select {
		case s.tokens <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		n := 1
	more:
		for n < maxBatch {
			select {
			case s.tokens <- struct{}{}:
				n++
			default:
				break more
			}
		}
		batch, err := s.cons.Fetch(n, jetstream.FetchMaxWait(s.o.pullExpiry))
		got := 0
		if err == nil {
			// The pull ends at its expiry even after ctx ends: its messages are
			// drained by the workers rather than left to the ack wait.
			for msg := range batch.Messages() {
				got++
				s.dispatch(msg)
			}
			err = batch.Error()
		}
		for range n - got {
			<-s.tokens
		}
		switch {
		case err == nil:
			wait = 100 * time.Millisecond
		case errors.Is(err, jetstream.ErrConsumerDeleted), errors.Is(err, jetstream.ErrConsumerNotFound),
			errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, jetstream.ErrConnectionClosed):
			return fmt.Errorf("handlers: fetch from %s: %w", s.r.durable, err)
		default:
			s.log.Warn("fetch failed; retrying", "err", err, "wait", wait)
			select {
			case <-time.After(wait):
			case <-ctx.Done():
			}
			wait = min(2*wait, 5*time.Second)
		}
	}
	return nil
}

// dispatch queues msg to the worker of its entity: events of one entity are
// handled by one worker, one at a time, in the order they were fetched.
func (s *session) dispatch(msg jetstream.Msg) {
	m := &inflight{msg: msg}
	s.mu.Lock()
	s.held[m] = struct{}{}
	s.mu.Unlock()
	var w uint64
	if id := msg.Headers().Get(outbox.HeaderSubject); id != "" {
		h := fnv.New64a()
		h.Write([]byte(id))
		w = h.Sum64()
	} else {
		w = s.next.Add(1)
	}
	s.queues[w%uint64(len(s.queues))] <- m
}

// done forgets m: its outcome was sent.
func (s *session) done(m *inflight) {
	s.mu.Lock()
	delete(s.held, m)
	s.mu.Unlock()
	<-s.tokens
}

func (s *session) holding() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.held)
}

// keepalive sends an in-progress ack for every message held, queued or being
// handled, every AckWait/3, so that none is redelivered while it waits.
func (s *session) keepalive(stop <-chan struct{}) {
	t := time.NewTicker(s.o.ackWait / 3)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		s.mu.Lock()
		msgs := make([]jetstream.Msg, 0, len(s.held))
		for m := range s.held {
			msgs = append(msgs, m.msg)
		}
		s.mu.Unlock()
		for _, msg := range msgs {
			_ = msg.InProgress() // fails only once the message is acked
		}
	}
}
