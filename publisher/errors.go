package publisher

import "errors"

var (
	// ErrUnavailable wraps errors that mean the broker or the stream cannot be
	// reached now: publish again later, consuming no attempt.
	ErrUnavailable = errors.New("publisher: broker unavailable")
	// ErrPermanent wraps errors that no retry can fix.
	ErrPermanent = errors.New("publisher: permanent publish error")
	// ErrInvalidConfig wraps configuration errors, naming the field.
	ErrInvalidConfig = errors.New("publisher: invalid config")
)
