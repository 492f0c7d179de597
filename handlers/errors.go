package handlers

import "errors"

// Errors of configuration, returned by NewRouter and Run.
var (
	// ErrInvalidOption is wrapped by every option that rejects its value.
	ErrInvalidOption = errors.New("handlers: invalid option")

	// ErrNoHandlers is returned by Run when no handler was registered: the
	// consumer would have no filter subject.
	ErrNoHandlers = errors.New("handlers: no handler registered")

	// ErrRunning is returned by Run while another Run of the same Router is
	// in progress.
	ErrRunning = errors.New("handlers: router already running")
)

// Errors of handling, seen by middleware and recorded in dead letters.
var (
	// ErrPermanent marks an error that no retry can fix: the event is
	// dead-lettered at once. Wrap an error with Permanent rather than
	// returning ErrPermanent itself, so the cause is kept.
	ErrPermanent = errors.New("handlers: permanent failure")

	// ErrPanic is wrapped by the error of a handler that panicked. A panic is
	// a retryable failure: the event is redelivered after its backoff.
	ErrPanic = errors.New("handlers: handler panicked")

	// ErrNoHandler is the permanent error of an event that matched the
	// consumer's filter but that no registered handler accepts (every
	// candidate's CanHandle said no). The event is dead-lettered.
	ErrNoHandler = errors.New("handlers: no handler accepts the event")

	// ErrUndecodable is the permanent error of a message that is not a valid
	// outbox event (see outbox.FromMessage). The message is dead-lettered.
	ErrUndecodable = errors.New("handlers: message is not an outbox event")
)

// Errors of shutdown.
var (
	// ErrShutdownTimeout is returned by Run when handlers were still running
	// after the shutdown timeout. Their messages were not acked and are
	// redelivered after the consumer's AckWait.
	ErrShutdownTimeout = errors.New("handlers: shutdown timed out")
)

// permanentError is what Permanent returns.
type permanentError struct{ err error }

func (p *permanentError) Error() string { return p.err.Error() }
func (p *permanentError) Unwrap() error { return p.err }

// Is makes errors.Is(err, ErrPermanent) true.
func (p *permanentError) Is(target error) bool { return target == ErrPermanent }

// Permanent marks err as permanent: a handler that returns it (or an error
// wrapping it) has its event dead-lettered at once, without retries.
// errors.Is(Permanent(err), ErrPermanent) is true, and the cause is still
// reachable with errors.Is and errors.As. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}
