// Package outbox defines the event model of FitIQCore Outbox: the Event that
// an application enqueues, its lifecycle Status, its validation, and how an
// Event travels on NATS (the CloudEvents NATS protocol binding, binary
// content mode).
//
// The other packages build on it:
//
//   - boltstore keeps events durably in one bbolt file, written in the same
//     transaction as the application's own data;
//   - relay publishes due events to JetStream and marks them completed only on
//     JetStream's ack;
//   - publisher owns the NATS connection and the stream;
//   - handlers turns JetStream consumers into typed event handlers.
//
// # Guarantees
//
// Every event is published at least once into JetStream; with Nats-Msg-Id set
// to the event id the stream holds it exactly once within the stream's
// duplicate window. Events of one entity_id reach the stream in the order they
// were enqueued (entity_seq 1, 2, 3, ...).
//
// # Validation
//
// Validate returns a *ValidationError naming the offending field; it wraps
// ErrInvalidEvent, so callers can branch with errors.Is.
package outbox
