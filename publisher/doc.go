// Package publisher owns the relay's connection to NATS and its JetStream
// stream: it connects (reconnecting forever), creates or updates the stream
// when it manages it, turns events into CloudEvents messages on
// <subject_prefix>.<type> with Nats-Msg-Id = event id, publishes them
// asynchronously with a bounded number in flight, and says what each publish
// error means for the caller.
//
// # Error contract
//
// Classify maps any error from a publish to one of three answers:
//
//   - ErrUnavailable: the broker could not be reached, or could not answer
//     for the stream right now (disconnected, reconnecting, JetStream or the
//     stream leader unavailable, back-pressure). The outcome is unknown: publish
//     again later with the same id, consuming no attempt.
//   - ErrPermanent: the publish can never succeed (message over the stream's
//     or server's size limit, sealed stream, wrong stream).
//   - anything else: a failed attempt; back off and retry.
//
// A duplicate ack (the stream had the id already) is a success.
//
// # Caveats
//
// When the connection drops, every pending future fails with
// nats.ErrDisconnected, even for messages the server stored; Classify calls
// that ErrUnavailable, and the re-publish with the same id is de-duplicated by
// the stream within its duplicate window.
package publisher
