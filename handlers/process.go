package handlers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/fitiqcore/outbox"
)

// process handles one message and sends its outcome: ack, nak with the
// event's backoff, or dead letter and term.
func (s *session) process(m *inflight) {
	msg := m.msg
	meta, err := msg.Metadata()
	if err != nil { // not a JetStream message: cannot happen on a pull consumer
		s.log.Error("message without JetStream metadata; terminating it", "subject", msg.Subject(), "err", err)
		_ = msg.Term()
		s.done(m)
		return
	}
	e, err := outbox.FromMessage(msg.Headers(), msg.Data()) // validates the id and the type
	if err != nil {
		s.deadLetter(m, meta, nil, "undecodable", fmt.Errorf("%w: %w", ErrUndecodable, err))
		return
	}
	d := Delivery{
		Stream: meta.Stream, Consumer: meta.Consumer, Subject: msg.Subject(),
		StreamSeq: meta.Sequence.Stream, NumDelivered: meta.NumDelivered,
		MaxAttempts: maxAttempts(e, s.o.maxAttempts),
	}

	key := ""
	if s.kv != nil {
		key = dedupKey(s.r.durable, e.ID)
		seen, err := s.seen(key)
		switch {
		case err != nil:
			s.log.Warn("idempotency check failed; retrying", "id", e.ID, "err", err)
			s.retry(m, e, d)
			return
		case seen:
			s.log.Debug("event already handled; acking", "id", e.ID, "type", e.Type, "stream_seq", d.StreamSeq)
			s.ack(m, e)
			return
		}
	}

	// The event's trace context, with or without a span of the Router's.
	ctx := e.TraceContext(withDelivery(s.work, d))
	var span trace.Span
	if s.o.tracer != nil {
		ctx, span = startSpan(ctx, s.o.tracer, s.r.durable, e, d)
	}
	h, err := s.table.lookup(e)
	if err == nil && h == nil {
		err = Permanent(fmt.Errorf("%w: type %s", ErrNoHandler, e.Type))
	}
	if err == nil {
		err = call(ctx, h, e)
	}
	outcome := Outcome(ctx, d, err)
	if span != nil {
		endSpan(span, outcome, err)
	}
	switch outcome {
	case OutcomeAck:
		if key != "" {
			s.record(key, d.StreamSeq)
		}
		s.ack(m, e)
	case OutcomeReleased:
		s.release(m)
	case OutcomeDeadLetter:
		reason := "max_attempts"
		switch {
		case errors.Is(err, ErrNoHandler):
			reason = "no_handler"
		case isPermanent(err):
			reason = "permanent"
		}
		s.deadLetter(m, meta, e, reason, err)
	default:
		s.retry(m, e, d)
	}
}

// call runs h, turning a panic of the middleware into an error too.
func call(ctx context.Context, h Handler, e *outbox.Event) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = panicError("middleware", v)
		}
	}()
	return h.Handle(ctx, e)
}

// opContext bounds one ack, KV operation or publish; it outlives the
// shutdown of Run, whose acks must still go out.
func (s *session) opContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(s.work), opTimeout)
}

// ack acks m and waits for the server's confirmation (DoubleAck): when Run
// returns, every event it reports handled is acked on the server.
func (s *session) ack(m *inflight, e *outbox.Event) {
	defer s.done(m)
	ctx, cancel := s.opContext()
	defer cancel()
	if err := m.msg.DoubleAck(ctx); err != nil && !errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
		s.log.Warn("ack failed; the event will be delivered again", "id", e.ID, "type", e.Type, "err", err)
	}
}

// retry naks m with the delay of the event's backoff for this delivery.
func (s *session) retry(m *inflight, e *outbox.Event, d Delivery) {
	defer s.done(m)
	delay := retryDelay(policy(e, s.o.retry), d.NumDelivered)
	if err := m.msg.NakWithDelay(delay); err != nil {
		s.log.Warn("nak failed; the event comes back after the ack wait", "id", e.ID, "err", err)
	}
}

// release naks m for immediate redelivery, at shutdown.
func (s *session) release(m *inflight) {
	defer s.done(m)
	_ = m.msg.Nak() // if it is lost, the ack wait brings the message back
}

// retryLater naks m with the default backoff when no event could be decoded.
func (s *session) retryLater(m *inflight, e *outbox.Event, n uint64) {
	defer s.done(m)
	_ = m.msg.NakWithDelay(retryDelay(policy(e, s.o.retry), n))
}

// recovering turns a panic of h into an error wrapping ErrPanic, logging the
// stack.
func recovering(h Handler, log *slog.Logger) Handler {
	return HandlerFunc(func(ctx context.Context, e *outbox.Event) (err error) {
		defer func() {
			if v := recover(); v != nil {
				err = panicError("handler", v)
				log.Error("handler panicked", "id", e.ID, "type", e.Type, "panic", v, "stack", string(debug.Stack()))
			}
		}()
		return h.Handle(ctx, e)
	})
}

func panicError(where string, v any) error {
	return fmt.Errorf("%w: %s: %v", ErrPanic, where, v)
}
