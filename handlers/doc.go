// Package handlers turns a durable JetStream pull consumer into the
// application's event handlers: the subscriber side of the outbox. The relay
// publishes each event to <subject_prefix>.<type>; a Router registered with
// handlers per type (FitIQ's canHandle/handle) fetches them, decodes them with
// outbox.FromMessage and calls the handler, then acks, retries with the
// event's own backoff, or dead-letters.
//
// # Basics
//
//	r, err := handlers.NewRouter(js, "OUTBOX", "mood-service", handlers.WithWorkers(8))
//	r.Use(handlers.Logging(logger), handlers.Metrics(prometheus.DefaultRegisterer))
//	r.HandleFunc("mood.logged", onMoodLogged)     // one type
//	r.Handle("sleep.", sleepHandler)              // every type under sleep.
//	handlers.HandleJSON(r, stepsCounted, onSteps) // an outbox.Type[T]: onSteps gets the decoded T
//	err = r.Run(ctx)                              // until ctx ends, then drains
//
// Run creates the durable consumer, or updates it to the Router's settings:
// filter subjects derived from the patterns (mood.logged becomes
// <prefix>.mood.logged, sleep. becomes <prefix>.sleep.>), explicit acks,
// AckWait and MaxAckPending from the options, and no MaxDeliver (the Router
// decides when to give up). The package owns that consumer's configuration,
// the dead-letter subjects <dlq_prefix>.<type> and, with WithIdempotency, the
// keys <durable>.<event id> of the de-duplication bucket.
//
// # Outcomes
//
// Every message gets exactly one explicit outcome:
//
//   - The handler returned nil: DoubleAck, which waits for the server to
//     confirm, so that when Run returns, everything it handled is acked (a
//     plain Ack lost in a reconnect would run the handler once more). It costs
//     one round trip per event, in parallel across workers.
//   - A retryable error or a panic: NakWithDelay, the delay following the
//     event's backoff carried in its ce-retry* headers (the Router's
//     WithRetryPolicy otherwise): outbox.RetryPolicy.Delay, the relay's own
//     backoff, InitialInterval × Multiplier^(n-1), at most MaxInterval,
//     spread by ±20%, where n is the delivery count.
//     Headers outside outbox's bounds, which the relay never publishes (a
//     policy that outbox.RetryPolicy.Validate refuses, a max_attempts above
//     outbox.MaxAttemptsLimit), are ignored for the Router's own, so no delay
//     exceeds outbox.MaxRetryInterval.
//   - An error wrapping ErrPermanent (see Permanent; HandleJSON fails so on a
//     payload that does not decode), a failure at the n-th
//     delivery where n reaches the event's max_attempts (ce-maxattempts, the
//     Router's WithMaxAttempts otherwise), a message that is not an outbox
//     event, or an event no handler accepts: a copy of the message with the
//     failure in Outbox-DLQ-* headers (see Dead letters) goes to
//     <dlq_prefix>.<type>, and once it
//     is stored, TermWithReason. If the publish fails, the message is naked
//     and the whole handling is tried again later: nothing is terminated
//     before its dead letter is stored.
//   - Shutdown interrupted the handler (its ctx was cancelled): Nak, for
//     immediate redelivery; never a dead letter.
//
// The dead letters are kept when a stream covers <dlq_prefix>.> at Run's
// start: the Router then waits for that stream's ack. With no such stream it
// logs a warning and publishes them on core NATS, where they reach only the
// subscribers listening at that moment; create the stream to keep them.
//
// # Dead letters
//
// A dead letter is a copy of the message (its headers and payload) with
// these headers added:
//
//   - Outbox-DLQ-Reason: permanent, max_attempts, no_handler or undecodable.
//   - Outbox-DLQ-Error: the error text, one line of valid UTF-8 (control
//     characters become spaces), at most 4 KiB; a text that was cut ends
//     with "…".
//   - Outbox-DLQ-Deliveries: the deliveries so far, the failed one included.
//   - Outbox-DLQ-Stream, Outbox-DLQ-Stream-Seq, Outbox-DLQ-Subject: where the
//     original is (it stays in its stream: the Router terminates it, it does
//     not delete it).
//   - Outbox-DLQ-Consumer: the durable that gave up; Outbox-DLQ-Time: when.
//   - Outbox-DLQ-Payload-Omitted: the original payload's size in bytes, set
//     only on a dead letter that carries no payload (see below).
//   - Outbox-DLQ-Headers-Omitted: the size of the original's header block,
//     set only on a dead letter that carries none of the original's headers.
//   - Nats-Msg-Id: dlq:<stream>:<stream seq>, so a message dead-lettered
//     twice (a lost term) is stored once within the duplicate window.
//
// The original's headers in JetStream's Nats- namespace are not copied (the
// dead-letter stream would act on them: an expected stream or sequence
// refused for ever, a rollup, a TTL, a schedule), nor earlier Outbox-DLQ-*
// headers, nor a key that nats.go refuses to send.
//
// Every dead letter fits what the server takes: its max_payload (as the
// connection reports it, headers and payload counted together), the
// dead-letter stream's max_msg_size (read at Run's start) and JetStream's
// 64 KiB limit on a header block. To fit, the Router first cuts the error
// text; if the copy would not fit even with no error text (a foreign
// publisher filled the message to the limit, or the dead-letter stream takes
// less than the event stream), it sends the dead letter without the payload,
// then, should the headers still not fit, without the original's headers:
// nothing is lost, since the original stays at Outbox-DLQ-Stream /
// Outbox-DLQ-Stream-Seq. The error text is also kept short enough that a
// copy adds at most outbox.DeadLetterReserve bytes to the original, the room
// the relay keeps free under the broker's limit (outbox.MessageLimit): an
// event published by the relay is always dead-lettered whole. If the server
// still refuses a dead letter as too large (its limits changed), the Router
// reads the stream's limit again and sends a smaller one, never the same
// message twice; after three refusals, or when even the bare Outbox-DLQ-*
// headers do not fit, or on any other publish error, the message is naked
// with its backoff and handled again later.
//
// # Tracing
//
// The ctx given to middleware and handlers carries the event's W3C trace
// context (ce-traceparent, ce-tracestate: the span of the request that wrote
// the event, see outbox.Event.TraceContext) as its remote span context,
// with or without tracing configured, so that spans the application starts
// join the request's trace. With WithTracerProvider, the Router starts a
// span per handling, "handle <event type>" of kind Consumer, a child of that
// context (a root span for an event without one), with messaging.system
// nats, messaging.consumer.group.name the durable, messaging.message.id the
// event id and outbox.delivery_count; the handler runs in it, and it ends
// when the handler returns, with its error recorded and outbox.outcome the
// outcome the Router then gives the message (see Outcome). The relay's
// publish spans (package relay) are children of the same request span, so
// that one trace shows request, enqueue, publish and handling.
//
// # Guarantees
//
// At-least-once: a message is acked only after its handler succeeded, and a
// message that is not acked (crash, lost ack, shutdown timeout) is delivered
// again after AckWait. With WithIdempotency, a redelivery of an event whose
// handler succeeded is acked without running the handler: the id is checked
// before the handler runs and put after it succeeded, before the ack. What is
// left is a crash between the handler's success and that put: the handler
// then runs twice, so a handler with effects outside JetStream should still be
// idempotent (or record its own effect, as the example subscriber does).
// Entries expire after the bucket's TTL: a copy of an event delivered later
// than that (a replay) runs again.
//
// Per-entity order: events with the same entity id (ce-subject) are handled by
// one worker, one at a time, in the order the consumer delivers them, which is
// stream order; different entities run in parallel on up to WithWorkers
// workers (events without an entity id go to any worker). See the caveats for
// retries. Every
// message held, queued or running, gets an in-progress ack every AckWait/3, so
// a long handler or a long queue never makes the server redeliver it.
//
// # Concurrency
//
// A Handler registered for many entities is called from several goroutines at
// once. The Router's methods are safe for concurrent use; one Run at a time.
// Several processes may share a durable: the server spreads messages among
// them, and MaxAckPending bounds them together.
//
// # Shutdown
//
// When Run's ctx ends, the Router stops fetching (the pull in progress, at most
// one second, still delivers) and the workers finish the messages they hold,
// acking each. After WithShutdownTimeout the handlers' contexts are cancelled
// and messages not yet started are released with Nak; Run waits at most as
// long again for handlers that ignore their ctx, then returns an error wrapping
// ErrShutdownTimeout. Nothing is lost: what was not acked is redelivered.
//
// # Caveats
//
//   - Order holds within one process, across its restarts and crashes (see
//     WithStartupHold: a restarted Router first waits for the messages a dead
//     process held, which the server then redelivers ahead of newer ones), but
//     not across retries: a retried event (NakWithDelay) is handled after the
//     later events of its entity that succeed meanwhile. A handler that needs
//     strict order across retries should check the event's EntitySeq against
//     what it has applied, and fail (retry) an event that comes early. With
//     several processes on one durable, events of one entity can run in
//     different processes at once, and the startup hold only delays a restart.
//   - The delivery count includes redeliveries that were not failures (a
//     crash, a shutdown release): an event delivered that way has fewer retries
//     left when it does fail.
//   - Nak, Term and in-progress acks are not confirmed by the server; a lost
//     one costs a redelivery after AckWait, never a loss.
//   - A handler that ignores its ctx can outlive Run after a shutdown timeout;
//     its message is redelivered after AckWait and its late outcome is still
//     sent if the connection is open.
//   - The ce-type header routes; the subject names the dead-letter subject.
package handlers
