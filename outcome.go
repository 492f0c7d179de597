package outbox

import (
	"errors"
	"time"
)

// The outcome of a publish, in the words that the relay, the store and the
// publisher share: the relay (package relay) records outcomes and branches on
// the publisher's classification of its errors; the store (boltstore) keeps
// what the relay records; the publisher (publisher) sends, answers and
// classifies. Each of them speaks this vocabulary, and none speaks another's:
// the relay imports neither the store nor the publisher.

// Ack records that JetStream acked the publish of event Seq (a duplicate ack
// counts: the stream holds the event).
type Ack struct {
	Seq uint64
	At  time.Time // when the publish was sent
}

// Failure records a publish attempt that failed with Err. The event goes into
// backoff until NextAttemptAt, or becomes failed when Permanent is set or it
// has used its max_attempts. An attempt whose outcome is Unknown (no answer:
// the stream may hold the event) never fails the event for its attempts, only
// a Permanent one does: failed means the stream does not hold it, so that an
// operator's retry cannot publish it twice.
type Failure struct {
	Seq           uint64
	At            time.Time // when the publish was sent
	Err           string    // last_error
	NextAttemptAt time.Time
	Permanent     bool
	Unknown       bool
}

// PublishResult is the answer to one asynchronous publish: the ack (Err nil)
// or the error that ended the wait for it. An error is to be classified
// (ErrUnavailable, ErrPermanent, ErrUnknownOutcome, ErrRejected) by the
// publisher that sent it.
type PublishResult struct {
	Stream    string // the stream that stored the message
	StreamSeq uint64 // its sequence there (for a duplicate, the first copy's)
	Duplicate bool   // the stream held the id already: a success all the same
	Err       error
}

// ErrNotFound: no event has that id. The store's lookups wrap it.
var ErrNotFound = errors.New("outbox: event not found")

// The classification of a publish error: the publisher's Classify returns an
// error wrapping exactly one of ErrUnavailable, ErrPermanent,
// ErrUnknownOutcome and ErrRejected, except that ErrUnknownOutcome may come
// together with ErrUnavailable (an outage cut the wait for an answer). The
// relay branches on them and on nothing else of the publisher's.
var (
	// ErrUnavailable: the broker or the stream cannot be reached now.
	// Publish again later with the same id, consuming no attempt.
	ErrUnavailable = errors.New("outbox: broker unavailable")
	// ErrPermanent: no retry can make the publish succeed (the message is
	// too large, the stream sealed or not the one expected): fail the event
	// now. The stream does not hold it.
	ErrPermanent = errors.New("outbox: permanent publish error")
	// ErrUnknownOutcome: the error is no answer from the stream (a timeout,
	// a connection lost while the message may have been delivered, an ack
	// that cannot be read): the stream may hold the message. Publish it
	// again with the same id inside the stream's duplicate window, where a
	// duplicate ack says it was stored; never fail the event for such an
	// attempt.
	ErrUnknownOutcome = errors.New("outbox: outcome unknown, the stream may hold the message")
	// ErrRejected: the server answered and stored nothing (a JetStream API
	// error, no stream for the subject), or the error is none the publisher
	// knows, taken as such: a failed attempt. Back off and retry; at the
	// event's max_attempts it fails.
	ErrRejected = errors.New("outbox: publish rejected")
)
