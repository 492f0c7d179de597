// Package publisher owns the relay's connection to NATS and its JetStream
// stream: it connects (reconnecting forever), creates or updates the stream
// when it manages it, turns events into CloudEvents messages on
// <subject_prefix>.<type> with Nats-Msg-Id = event id, publishes them
// asynchronously with a bounded number in flight, and says what each publish
// error means for the caller.
//
// # Publishing
//
// Messages are built by one outbox.Encoder made at Connect: the headers that
// are the same for every event of the stream (ce-specversion, ce-source, the
// relay's default retry policy, common numbers and content types) are
// formatted once and shared.
//
// PublishAsync does not go through nats.go's jetstream.PublishMsgAsync but
// through an async path of the publisher's own over core NATS (async.go):
// one wildcard reply subscription, a reply subject per publish, the ack read
// by a hand-written parser (puback.go) where nats.go decodes every ack with
// encoding/json, and one timer for every pending publish where nats.go arms
// one each; the answer is one outbox.PublishResult on a buffered channel,
// where nats.go's future has a channel for the ack and one for the error,
// and no goroutine is started per publish. It keeps PublishMsgAsync's
// semantics: at most MaxPending
// publishes await an ack (past it a publish waits 200ms for a slot, then
// fails with jetstream.ErrTooManyStalledMsgs, nothing sent); an ack not back
// within PublishTimeout fails with jetstream.ErrAsyncPublishTimeout; no
// responders is retried twice 250ms apart, then jetstream.ErrNoStreamResponse;
// a server error is a *jetstream.APIError, an unreadable ack
// jetstream.ErrInvalidJSAck; a dropped connection fails every pending publish
// with nats.ErrDisconnected. It differs in one point: Close fails the pending
// publishes at once with nats.ErrConnectionClosed, where nats.go's wait for
// their timeout. Publish (the synchronous path, for tools and probes) stays
// on nats.go.
//
// # Error contract
//
// Classification is the publisher's alone: the relay only branches on the
// answer. Classify maps any error from a publish to one of the sentinels of
// package outbox (the vocabulary the relay shares, without importing this
// package; ErrUnavailable, ErrPermanent and ErrUnknownOutcome here are the
// same values):
//
//   - outbox.ErrUnavailable: the broker could not be reached, or could not
//     answer for the stream right now (disconnected, reconnecting, JetStream
//     or the stream leader unavailable, back-pressure). Publish again later
//     with the same id, consuming no attempt.
//   - outbox.ErrPermanent: the publish can never succeed (message over the
//     stream's or server's size limit, sealed stream, wrong stream).
//   - outbox.ErrUnknownOutcome: the error is not the server's answer to the
//     publish and came after the message may have reached the server (a
//     timeout while the server answers pings, an unreadable ack): the stream
//     may hold the message. Such an attempt must not fail the event: publish
//     it again with the same id inside the stream's duplicate window, where a
//     duplicate ack says it was stored. It comes together with
//     ErrUnavailable when the broker cannot be reached either (a connection
//     lost with the ack pending, a timeout the server does not answer a ping
//     after).
//   - outbox.ErrRejected: the server answered and stored nothing (a
//     JetStream API error, no stream for the subject while the stream
//     answers), or an error the publisher does not know: a failed attempt;
//     back off and retry. Its text is the error's own, as last_error shows it.
//
// Server answers and errors that mean the message was never sent never wrap
// ErrUnknownOutcome.
//
// A duplicate ack (the stream had the id already) is a success.
//
// # Reading the stream back
//
// LastSeq gives the stream's last sequence: whatever is published after it
// is stored at a higher one. StoredFrom reads back, headers only, every
// message on the publisher's subjects from a sequence to the stream's last
// message at the time of the call (StoredSince from a time, for the marks of
// older relays). A read-back ends when it has seen that last sequence, or
// when a fetch comes back empty and the consumer has nothing left to deliver;
// an empty fetch alone, which a slow server can give while messages remain,
// does not end it.
//
// Config.Source (ce-source, default outbox.DefaultSource) is held to
// outbox.ValidateSource: it is part of every message's headers, which
// outbox.HeaderAllowance bounds.
//
// # Caveats
//
// When the connection drops, every pending future fails with
// nats.ErrDisconnected, even for messages the server stored; Classify calls
// that ErrUnavailable and ErrUnknownOutcome. The re-publish with the same id
// is de-duplicated by the stream within its duplicate window; past it only a
// read-back (StoredFrom) can tell.
package publisher
