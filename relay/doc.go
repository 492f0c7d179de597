// Package relay moves events from the store to JetStream: it takes due events
// in priority order, publishes them asynchronously with a bounded number in
// flight, and marks them completed, in batched transactions, only on
// JetStream's ack.
//
// # Guarantees
//
//   - At least once into JetStream, exactly once in the stream within its
//     duplicate window: every publish carries Nats-Msg-Id = event id, and an
//     event is completed only after its ack (a duplicate ack counts).
//   - Per-entity order: the store makes only an entity's head ready, so an
//     event is never published while an earlier one of its entity is
//     unfinished, whatever the priorities and retries.
//   - Per-event retries: a failed attempt sets attempt_count+1, last_error and
//     next_attempt_at from exponential backoff with jitter (the event's own
//     policy, or the relay's); at max_attempts the event becomes failed.
//   - Outages cost nothing: while NATS (or the stream) is unreachable the relay
//     pauses; events whose outcome is unknown stay pending with no attempt
//     consumed and are published again, with the same id, once it is back.
//   - Crash safety: in-flight state lives only in memory; after a crash every
//     unfinished event is still pending in the store and is published again.
//
// # Concurrency
//
// Run owns three goroutines: the reader (reads due events, publishes), the
// waiter (awaits acks in publish order) and the completer (writes outcomes in
// batches). One Relay per store.
package relay
