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

// FieldError is the error of a library's options that their Validate
// refuses (boltstore.Options, publisher.Config, relay.Config,
// httpapi.Options). It names the Go field, as a path ("Stream.Name", a list
// element "AllowedTypes[1]"), so that a caller that reads the options from a
// file names its own key for it, with no parsing of messages. It wraps Kind,
// the library's sentinel (publisher.ErrInvalidConfig, ...), and Err, the
// reason, which is an *ValidationError for a retry policy.
type FieldError struct {
	Kind  error
	Field string
	Err   error
}

func (e *FieldError) Error() string   { return e.Kind.Error() + ": " + e.Field + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() []error { return []error{e.Kind, e.Err} }
