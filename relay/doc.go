// Package relay moves events from the store to JetStream: it takes due events
// in priority order, publishes them asynchronously with a bounded number in
// flight, and marks them completed, in batched transactions, only on
// JetStream's ack.
//
// # Guarantees
//
//   - At least once into JetStream, exactly once in the stream: every publish
//     carries Nats-Msg-Id = event id, and an event is completed only after its
//     ack (a duplicate ack counts). Inside the stream's duplicate window
//     JetStream de-duplicates a re-send; outside it the relay reads the stream
//     back before it sends again what may be there (see Unknown outcomes).
//   - Per-entity order: the store makes only an entity's head ready, so an
//     event is never published while an earlier one of its entity is
//     unfinished, whatever the priorities and retries.
//   - Per-event retries: a failed attempt sets attempt_count+1, last_error and
//     next_attempt_at from exponential backoff with jitter (the event's own
//     policy, or the relay's); at max_attempts the event becomes failed.
//   - Failed means the stream does not hold the event: only an attempt the
//     server answered (a JetStream error, no stream for the subject) or a
//     permanent error counts towards failing it, so an operator's retry of a
//     failed event cannot publish it twice.
//   - Outages cost nothing: while NATS (or the stream) is unreachable the relay
//     pauses; events whose outcome is unknown stay pending with no attempt
//     consumed and are published again, with the same id, once it is back.
//   - Crash safety: in-flight state lives only in memory; after a crash every
//     unfinished event is still pending in the store, and the start-up
//     read-back completes those the stream already holds.
//
// # Unknown outcomes
//
// A publish that got no answer (a timeout, a connection lost with the ack
// pending, a crash) may be in the stream: the publisher's Classify wraps such
// errors in outbox.ErrUnknownOutcome. Such an attempt never fails the
// event (outbox.Failure.Unknown), whatever its max_attempts; the next
// attempt is scheduled no later than half of Config.DuplicateWindow after the
// send, so that JetStream answers it for sure, a duplicate ack if it stored
// the first. An event whose first unknown publish is older than three
// quarters of the window when it is due again (a long outage, repeated
// timeouts) is not sent blind: the relay first reads the stream back from
// that publish's mark and completes the event if the stream holds it.
//
// The read-back mark, recorded with every batch, is a stream sequence: for
// each publish the relay keeps the stream's last sequence it had seen before
// sending (the stream's LastSeq when the publisher became ready, then the
// highest ack), and the mark is the least such sequence + 1 over the
// publishes in flight or of unknown outcome. A publish sent after the relay
// saw sequence L is stored, if at all, after L; no clock is involved, so a
// relay host whose clock differs from the servers' reads back exactly what it
// must. At start the relay reads the stream back from the mark (from a time
// less Config.ClockSkew for a file written by an older build, whose mark is a
// time). A mark above the stream's last sequence (the stream was deleted and
// created again) reads the stream from its start.
//
// An unknown outcome whose event an operator deletes, completes or fails is
// forgotten within seconds (the relay checks such entries with Store.Get
// every 5 s), so that it does not hold the mark back for good.
//
// # Broker limits
//
// Each time the publisher becomes ready the relay tells the store the
// broker's max_payload (Store.SetBrokerMaxPayload), so that the store never
// accepts an event the broker could not carry.
//
// # Timers
//
// The reader sleeps until the next delayed event falls due, never less than
// zero and never more than a minute (the store's times are wall-clock times;
// a clock set forward must not hold events back). Backoff is computed in
// constant time and bounded by the policy's MaxInterval × (1+Jitter).
//
// # Tracing
//
// With Config.TracerProvider set, every publish attempt is a span, "publish
// <event type>" of kind Producer (messaging.system nats,
// messaging.operation.type send, messaging.message.id the event id, and
// outbox.attempt, outbox.entity_seq and the like), from the send until its
// outcome is known: status Ok on an ack; otherwise the error recorded,
// status Error, error.type the publisher's classification and
// outbox.outcome what the relay made of it (retried, failed, unavailable;
// abandoned when the drain at shutdown timed out). Its parent is the
// event's stored trace context (outbox.Event.TraceContext), so that it sits
// in the trace of the request that wrote the event, and it links to that
// span context too; an event without one gets a root span. The message
// carries the event's trace context, not the publish span's: a subscriber's
// span (package handlers) is a child of the request, beside the publish
// attempts. The provider's sampler decides as for any span (the SDK's
// default follows the request's sampled flag). Without a TracerProvider no
// span is started and nothing is allocated for one; the relay never falls
// back to the global provider.
//
// # Vocabulary
//
// The relay speaks package outbox's words and the standard library's only:
// Store and Publisher take and give outbox.Event, outbox.Ack,
// outbox.Failure, outbox.PublishResult and plain values, and the relay
// branches on outbox.ErrNotFound and on the publisher's classification
// (outbox.ErrUnavailable, ErrPermanent, ErrUnknownOutcome, ErrRejected). It
// imports neither boltstore nor publisher: the daemon wires them, and
// asserts there that *boltstore.Store and *publisher.Publisher implement
// the interfaces. Classification is entirely the publisher's; the relay never
// makes up a publisher's answer. When the drain at shutdown times out, the
// publishes still unanswered get no outcome at all: their events stay
// pending with no attempt consumed, and the read-back mark already recorded
// covers them, so that no answer has to be invented for them.
//
// # Concurrency
//
// Run runs the reader (reads due events, publishes, reads the stream back)
// on its caller's goroutine and owns two more, which it waits for before it
// returns: the waiter (awaits the answers in publish order) and the
// completer (writes outcomes in batches, sweeps unknown outcomes). The
// Observer is called from the completer. One Relay per store.
package relay
