package publisher

import (
	"errors"

	"github.com/fitiqcore/outbox"
)

// The classification of a publish error is outbox's vocabulary, shared with
// the relay (which does not import the publisher): Classify wraps
// outbox.ErrUnavailable, outbox.ErrPermanent, outbox.ErrUnknownOutcome or
// outbox.ErrRejected. The names below are the same values, kept for callers
// of this package.
var (
	// ErrUnavailable is outbox.ErrUnavailable: the broker or the stream
	// cannot be reached now; publish again later, consuming no attempt.
	ErrUnavailable = outbox.ErrUnavailable
	// ErrPermanent is outbox.ErrPermanent: no retry can fix the publish.
	ErrPermanent = outbox.ErrPermanent
	// ErrUnknownOutcome is outbox.ErrUnknownOutcome: the error is not the
	// server's answer to the publish (a timeout, a connection lost while the
	// message may have been delivered, an ack that cannot be read), so the
	// stream may hold the message. Publish it again with the same id inside
	// the stream's duplicate window, where a duplicate ack says it was
	// stored; never call the event failed for such an attempt. It comes
	// together with ErrUnavailable when the broker cannot be reached either.
	ErrUnknownOutcome = outbox.ErrUnknownOutcome
)

// ErrInvalidConfig wraps configuration errors, naming the field.
var ErrInvalidConfig = errors.New("publisher: invalid config")
