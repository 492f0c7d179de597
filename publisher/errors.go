package publisher

import "errors"

var (
	// ErrUnavailable wraps errors that mean the broker or the stream cannot be
	// reached now: publish again later, consuming no attempt.
	ErrUnavailable = errors.New("publisher: broker unavailable")
	// ErrPermanent wraps errors that no retry can fix.
	ErrPermanent = errors.New("publisher: permanent publish error")
	// ErrUnknownOutcome wraps errors that are not the server's answer to the
	// publish (a timeout, a connection lost while the message may have been
	// delivered, an ack that cannot be read): the stream may hold the message.
	// Publish it again with the same id inside the stream's duplicate window,
	// where a duplicate ack says it was stored; never call the event failed
	// for such an attempt. It comes together with ErrUnavailable when the
	// broker cannot be reached either.
	ErrUnknownOutcome = errors.New("publisher: outcome unknown, the stream may hold the message")
	// ErrInvalidConfig wraps configuration errors, naming the field.
	ErrInvalidConfig = errors.New("publisher: invalid config")
)
