package outbox

import (
	"errors"
	"fmt"
)

// ErrInvalidEvent is wrapped by every validation failure (see ValidationError).
var ErrInvalidEvent = errors.New("outbox: invalid event")

// ErrPayloadTooLarge is wrapped by the validation failure of a payload over
// the configured limit, so an HTTP edge can answer 413 rather than 400.
var ErrPayloadTooLarge = errors.New("outbox: payload too large")

// ValidationError names the field of an Event that failed validation.
type ValidationError struct {
	Field  string // snake_case name of the field, as in the JSON form
	Reason string
	// tooLarge marks a payload over the limit.
	tooLarge bool
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("invalid %s: %s", e.Field, e.Reason)
}

// Is reports whether target is ErrInvalidEvent, or ErrPayloadTooLarge for a
// payload over the limit.
func (e *ValidationError) Is(target error) bool {
	return target == ErrInvalidEvent || (e.tooLarge && target == ErrPayloadTooLarge)
}

func invalid(field, format string, args ...any) *ValidationError {
	return &ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)}
}
