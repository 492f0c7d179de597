package handlers

import (
	"context"
	"errors"

	"github.com/fitiqcore/outbox"
)

// Handler handles the events of the types it is registered for.
//
// Handle is called by the Router's workers, never twice at once for events of
// the same entity, possibly at once for different entities: a Handler
// registered for many entities must be safe for concurrent use. Its outcome
// decides what happens to the message:
//
//   - nil: the event is done; the message is acked.
//   - an error wrapping ErrPermanent (see Permanent): no retry can help; the
//     message is dead-lettered at once.
//   - any other error, or a panic: the event is retried after the event's own
//     backoff, and dead-lettered once it has been delivered max_attempts times.
//
// Handle must return soon after ctx is done (shutdown); an error it then
// returns releases the message for redelivery and is never dead-lettered.
// Delivery is at least once: make Handle idempotent, or enable the Router's
// de-duplication (WithIdempotency).
type Handler interface {
	Handle(ctx context.Context, e *outbox.Event) error
}

// HandlerFunc adapts a function to a Handler.
type HandlerFunc func(ctx context.Context, e *outbox.Event) error

// Handle calls f(ctx, e).
func (f HandlerFunc) Handle(ctx context.Context, e *outbox.Event) error { return f(ctx, e) }

// CanHandler is implemented by a Handler that looks at an event before it
// accepts it (FitIQ's canHandle). Of the handlers whose pattern matches an
// event, the Router calls the first that accepts it; a Handler without
// CanHandle accepts every event its pattern matches. CanHandle must be fast
// and free of side effects; it may be called for an event that a more
// specific handler then takes.
type CanHandler interface {
	CanHandle(e *outbox.Event) bool
}

// Middleware wraps a Handler with a cross-cutting concern (logging, metrics,
// tracing). Router.Use(a, b) makes a the outermost: a(b(handler)).
type Middleware func(Handler) Handler

// Delivery describes the JetStream message an event came in. The Router puts
// it in the ctx given to handlers and middleware; read it with
// DeliveryFromContext.
type Delivery struct {
	Stream       string // the stream that stores the event
	Consumer     string // the durable consumer's name
	Subject      string // the subject the event was published to
	StreamSeq    uint64 // the message's sequence in the stream
	NumDelivered uint64 // 1 on the first delivery, 2 on the first retry, ...
	MaxAttempts  int    // the event's max_attempts, or the Router's default
}

// LastAttempt reports whether a failure now would dead-letter the event.
func (d Delivery) LastAttempt() bool { return d.NumDelivered >= uint64(d.MaxAttempts) }

type deliveryKey struct{}

// DeliveryFromContext returns the Delivery the Router stored in ctx, if any.
func DeliveryFromContext(ctx context.Context) (Delivery, bool) {
	d, ok := ctx.Value(deliveryKey{}).(Delivery)
	return d, ok
}

func withDelivery(ctx context.Context, d Delivery) context.Context {
	return context.WithValue(ctx, deliveryKey{}, d)
}

// Outcomes of one delivery, as the Metrics and Logging middleware label them.
const (
	OutcomeAck        = "ack"         // handled; acked
	OutcomeRetry      = "retry"       // failed; redelivered after a backoff
	OutcomeDeadLetter = "dead_letter" // failed for good; dead-lettered
	OutcomeReleased   = "released"    // interrupted by shutdown; redelivered
)

// Outcome tells what the Router does with a message whose handler returned
// err, for the delivery d: OutcomeAck, OutcomeRetry, OutcomeDeadLetter, or
// OutcomeReleased when ctx was cancelled (shutdown). Middleware uses it to
// label its records the way the Router acts.
func Outcome(ctx context.Context, d Delivery, err error) string {
	switch {
	case err == nil:
		return OutcomeAck
	case ctx.Err() != nil:
		return OutcomeReleased
	case isPermanent(err) || d.LastAttempt():
		return OutcomeDeadLetter
	}
	return OutcomeRetry
}

func isPermanent(err error) bool {
	return errors.Is(err, ErrPermanent)
}
