package relay

import (
	"context"
	"time"

	"github.com/fitiqcore/outbox"
)

// The relay's two dependencies, declared where they are consumed, in the
// words of package outbox and the standard library only: the relay imports
// neither the store nor the publisher, and tests run its loop against
// in-memory implementations. The daemon (cmd/relay) asserts at compile time
// that *boltstore.Store and *publisher.Publisher implement them.

// Store is what the relay needs of the outbox store. All methods must be
// safe for concurrent use: the reader, the completer and the read-back call
// them from different goroutines.
type Store interface {
	// Due returns up to n due events, highest priority first, FIFO within a
	// priority, only the head of each entity, skipping those skip reports;
	// next is when the earliest delayed event falls due (zero when none).
	// skip is called while the relay holds a lock: it must not call back
	// into the relay. An error stops the relay.
	Due(ctx context.Context, now time.Time, n int, skip func(seq uint64) bool) (events []*outbox.Event, next time.Time, err error)
	// Record marks acked events completed and records failed attempts, in
	// one transaction, together with the read-back mark when it is not 0:
	// the stream sequence from which a restarted relay reads the stream
	// back. An ack or failure of an event that is no longer its entity's
	// pending head (deleted, completed or failed by an operator meanwhile)
	// is ignored. An error stops the relay.
	Record(ctx context.Context, acks []outbox.Ack, fails []outbox.Failure, mark uint64) error
	// ReadBackMark returns the read-back mark last recorded (0 when none): every
	// publish whose outcome was unknown when the relay stopped was stored, if
	// at all, at that stream sequence or later. since is the time-based mark
	// of an older build, used when from is 0.
	ReadBackMark(ctx context.Context) (from uint64, since time.Time, err error)
	// Get returns the event with that id, or an error wrapping
	// outbox.ErrNotFound.
	Get(ctx context.Context, id string) (*outbox.Event, error)
	// SetBrokerMaxPayload holds new events to what a broker whose
	// max_payload is n can carry. The relay calls it whenever the publisher
	// becomes ready; an error is logged and the relay goes on.
	SetBrokerMaxPayload(ctx context.Context, n int64) error
	// Notify is signalled after commits that make events ready.
	Notify() <-chan struct{}
}

// Publisher is what the relay needs of the broker side. Classification of
// publish errors is entirely the publisher's: the relay branches on the
// sentinels Classify wraps and on nothing else.
type Publisher interface {
	// PublishAsync sends e without waiting; attempt is the 1-based number
	// of this attempt. The channel receives exactly one answer, the ack or
	// the error that ended the wait for it; every answer must come, at the
	// latest when the wait times out or the connection closes, and the
	// channel must be buffered, so that an answer the relay does not read
	// (it stopped waiting) holds nothing up. The relay awaits the answers in
	// publish order. An error returned means nothing was sent. It is called
	// from one goroutine.
	PublishAsync(e *outbox.Event, attempt int) (<-chan outbox.PublishResult, error)
	// Ready blocks until publishing can succeed or ctx ends.
	Ready(ctx context.Context) error
	// Classify says what a publish error (returned by PublishAsync or in a
	// PublishResult) means, wrapping exactly one of outbox.ErrUnavailable
	// (retry later, no attempt consumed; the relay pauses until Ready),
	// outbox.ErrPermanent (fail the event now), outbox.ErrUnknownOutcome
	// (the stream may hold it: publish it again within the duplicate
	// window, never fail the event for it) and outbox.ErrRejected (a failed
	// attempt: back off, fail at max_attempts); ErrUnknownOutcome may come
	// together with ErrUnavailable. An error wrapping none of them counts
	// as ErrRejected. It may probe the broker before it answers. Safe for
	// concurrent use.
	Classify(ctx context.Context, err error) error
	// LastSeq returns the stream's last sequence now: whatever is published
	// after the call is stored, if at all, at a higher sequence. Called
	// each time the publisher becomes ready.
	LastSeq(ctx context.Context) (uint64, error)
	// MaxPayload is the broker's max_payload (0 while never connected).
	MaxPayload() int64
	// StoredFrom calls fn with the id (Nats-Msg-Id), the stream sequence
	// and the server's time of every message the stream stored from stream
	// sequence from on, in stream order, up to its last message at the time
	// of the call (the read-back of unknown outcomes). An error from fn
	// ends the read-back and is returned.
	StoredFrom(ctx context.Context, from uint64, fn func(id string, streamSeq uint64, stored time.Time) error) error
	// StoredSince is StoredFrom from a time by the servers' clock: for the
	// time-based mark of a store file written by an older build.
	StoredSince(ctx context.Context, since time.Time, fn func(id string, streamSeq uint64, stored time.Time) error) error
}
