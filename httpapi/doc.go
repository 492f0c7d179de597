// Package httpapi is the sidecar's HTTP API: applications that cannot write
// the bbolt file themselves enqueue events over HTTP, and operators and
// probes read the outbox's state. It owns the HTTP contract (routes, status
// codes, the JSON error body) and turns requests into calls on a Store; it
// keeps no state of its own.
//
// # Routes
//
//	POST /v1/events        one event        → 201 the stored event; 200 if the id is stored with the same content
//	POST /v1/events/batch  {"events":[...]} → 201 {"events":[...]}; 200 if every event was stored already
//	                       (both POSTs answer Outbox-Created: how many events were newly stored)
//	GET  /v1/events/{id}   the event with its current status, or 404
//	GET  /v1/stats?user_id=  Stats of every event or of one user's:
//	                       {"total","pending","processing","completed","failed","stale","oldest_pending_at",
//	                        "newest_completed_at","success_rate","has_issues","pending_by_priority","bytes"}
//	GET  /healthz          200 {"status":"ok"} while the process is up
//	GET  /readyz           200 when Options.Ready and the store answer, 503 otherwise
//	GET  /metrics          Options.Metrics (Prometheus exposition), when set
//
// The admin API, registered when the Store also implements AdminStore (as
// *boltstore.Store does):
//
//	GET    /v1/events?status=&user_id=&entity_id=&type=&limit=&cursor=
//	                                  → {"events":[...],"next_cursor":"..."} ("" on the last page)
//	POST   /v1/events/{id}/retry      → the event, pending again; 404 unknown; 409 not failed
//	POST   /v1/events/retry?status=failed&user_id=    → {"count":N}
//	DELETE /v1/events/{id}            → {"count":1}; 404 unknown
//	DELETE /v1/events?entity_id=a&entity_id=b         → {"count":N}
//	DELETE /v1/events?user_id=u                       → {"count":N}
//	DELETE /v1/events?status=completed&older_than=24h[&limit=N] → {"count":N}
//	GET    /v1/stale?user_id=&limit=  → {"events":[...]}
//	GET    /v1/status                 → Report: stats, stale and failed events, NATS, stream, issues
//	POST   /v1/backup                 → a consistent hot copy of the store file (application/octet-stream)
//	POST   /v1/reset?confirm=yes      → {"count":N}: deletes every event (the emergency reset)
//
// Query parameters are checked like bodies: an unknown parameter, a
// single-valued one given twice, a bad status, limit (1..1000, default 100),
// duration or cursor is a 400 naming it, so that a typo never widens what a
// DELETE touches. entity_id on DELETE is repeated for several entities;
// each value is one entity, byte for byte (never split on commas, never
// trimmed: "a,b" is the entity named a,b, and " c" can be deleted); an
// empty value names nothing.
//
// # Access
//
// With Options.Token set, every request but GET /healthz and GET /readyz
// needs "Authorization: Bearer <token>" (compared in constant time) and is
// answered 401 otherwise, whether the route exists or not, before anything
// else is looked at and before any body is read. With
// Options.AllowedTypes set, an event of another type is a 400 naming the
// allowed types (CheckType).
//
// # Admission control
//
// When the store refuses new events because a high-water mark is passed
// (boltstore.ErrOutboxFull), ingest answers 503 with a Retry-After header
// and {"error":"outbox full: <mark> ..."}. Nothing of the request is stored
// and nothing stored before is dropped.
//
// # Self-protection
//
// A request is checked in this order, each refusal answered at once:
// the token (401); the cap on concurrent requests, Options.MaxConcurrent
// (default 256), over which a request is answered 503 with Retry-After: 1
// (the probes GET /healthz and GET /readyz are never refused); the route
// (404, 405); the body's declared size against Options.MaxBodyBytes
// (default 16 MiB), a 413 before any of it is read; the body budget (503);
// then the route's own checks (415, 400, ...).
//
// The body budget, Options.MaxInflightBodyBytes (default 128 MiB), is
// shared by all the requests being served: a request reserves its
// Content-Length, or MaxBodyBytes when it is sent chunked, before its body
// is read, and releases it when its handler returns. A request the budget
// cannot cover now is answered 503 with Retry-After: 1; MaxBodyBytes is
// held to at most the budget, so a body the budget could never cover is a
// 413. Memory follows the budget: a request allocates about 2.7 times
// its body in all (BenchmarkPostBatch1MiB, "bodies/op", for a 1 MiB batch
// of 1 KiB JSON payloads): 1 to read it; 0.4 for the events, whose
// strings are copied but whose metadata and compact JSON payloads stay
// slices of the body (a payload with white space between its tokens is
// compacted into a copy, a base64 payload decoded into one: up to 1
// more); and 1.3 to write the answer, one buffer, which carries every
// event back with the fields the store fills. The answer is built while
// the body and the events are held, so at the peak all of it is live at
// once. Options.MaxInflightBodyBytes times 3 is thus about the most
// memory the bodies being served hold.
//
// An HTTP/1.x answer given without reading the request's whole body (a
// 401, 404, 405, 413 by Content-Length, 415, 503, or a route that takes no
// body) says "Connection: close", and the connection is closed after it:
// net/http would otherwise read the rest of the body before sending the
// answer, and a client that declares a body and never sends it would hold
// both until the server's read timeout. The rest of the body is given
// 500ms to arrive (so that a client still sending it sees its answer, not
// a reset), then the connection is closed.
//
// The http.Server around the API sets the timeouts (ReadHeaderTimeout,
// ReadTimeout, WriteTimeout, IdleTimeout). A route that streams its
// answer for longer is wrapped with Streaming, which lifts the write
// deadline for it: POST /v1/backup is; a route of the daemon's own
// registered with Server.Handle must be wrapped by the daemon.
//
// # Events
//
// Events use outbox.Event's JSON form: snake_case fields; "payload" holds any
// JSON value (stored as its JSON bytes, content type application/json) and
// "payload_base64" raw bytes. Fields the store assigns (seq, status, ...) are
// accepted so that a client can post back what it got, and ignored, except
// created_at, which the store keeps.
//
// What is stored is what was posted, byte for byte: encoding/json would
// replace invalid UTF-8, and every \uD800–\uDFFF escape that is not a high
// surrogate followed by a low one, with U+FFFD, so that two different ids
// would become one. Every string of an event (id, type, entity_id,
// user_id, content_type, payload_base64, and every key and value inside
// metadata and retry) is checked in the raw JSON and refused with a 400
// naming the field ("invalid entity_id: not valid UTF-8", "invalid
// metadata: lone surrogate escape \udc00 ..."). The payload must be valid
// UTF-8 too; its escapes, lone surrogates included, are kept as written,
// since it is stored as its JSON text. All other rules and limits of an
// event (its fields, its payload against store.max_payload, its message
// against the broker's limit) are the store's: outbox.Event.Validate,
// called by Store.Enqueue.
//
// An event is decoded in one pass over its JSON, without encoding/json:
// the pass checks the JSON, refuses an unknown key by its exact name,
// checks the text and decodes each field into outbox.Event as it goes. It
// accepts exactly what encoding/json and Event.UnmarshalJSON accepted,
// into the same event, with the same errors (a fuzz test compares it with
// them): a key given twice keeps its last value, and of several faults
// the one answered is, in order, malformed JSON anywhere in the body, an
// unknown key (the first in the order of the keys), text, then the first
// value that does not decode. A body of another shape than
// {"events":[...]}, or with any fault, is decoded again by the general
// path that finds that first fault. The events posted and fetched are
// written back without reflection, into one buffer, byte for byte as
// encoding/json wrote them (a fuzz test holds the two to the same bytes).
//
// With Options.Schemas set (the daemon's event_types with payload_schema or
// metadata_schema, compiled by package schema), each event is checked
// against the schemas of its type once it is decoded and its type allowed,
// before the store sees it: a violation is a 400 naming the field and the
// JSON pointer of the failing value ("invalid payload/score: must be <= 5";
// in a batch "events[2]: invalid metadata/tenant: ..."), and a type with a
// payload schema refuses an event without a JSON payload.
//
// More routes are added with Server.Handle.
//
// # Errors
//
// Every error is a JSON body {"error": "..."} that names the field at fault
// and, in a batch, the event's index ("events[3]: invalid type: ..."):
//
//   - 400: malformed JSON, data after the JSON value, a body that is not an
//     object, an unknown field, a field of the wrong JSON type, text that
//     JSON would alter (invalid UTF-8, a lone surrogate escape), a
//     validation failure (outbox.ErrInvalidEvent), a schema violation
//     (Options.Schemas), an empty batch;
//   - 404: an unknown id or route;
//   - 405: a known route with another method (with an Allow header);
//   - 401: a missing or wrong token, when Options.Token is set;
//   - 409: an id stored with different content (boltstore.ErrDuplicate), a
//     retry of an event that is not failed (boltstore.ErrNotRetryable);
//   - 413: an event the store refuses as too large (outbox.ErrPayloadTooLarge:
//     a payload over the store's max_payload, metadata over its limit, a
//     message over the broker's limit); a body over Options.MaxBodyBytes,
//     by its Content-Length before it is read or, sent chunked, once it
//     passes the limit;
//   - 415: a Content-Type other than application/json (parameters allowed,
//     a charset only if UTF-8), or none;
//   - 500: a store failure or a bug (a handler panic is recovered and
//     logged); the message starts with "internal: ";
//   - 503: the request's context ended (client gone, deadline), not
//     ready, or the outbox is full (with Retry-After); the server is busy:
//     over Options.MaxConcurrent, or the body budget cannot cover the body
//     now ("busy: ...", with Retry-After: 1).
//
// Client input never causes a 5xx. Every HTTP/1.x answer given without
// reading the request's whole body closes the connection (Self-protection).
//
// # Guarantees
//
// Nothing from a rejected request is stored. A batch is one Store.Enqueue
// call, one transaction: all of its events are stored or none. A 201 or 200
// means the events are durable. Re-posting an event with its id is
// idempotent, which makes a POST safe to retry after a timeout.
//
// # Caveats
//
// Bodies are read whole into memory, up to Options.MaxBodyBytes, and cost
// several times their size while a request is served (Self-protection).
// A chunked body reserves the whole MaxBodyBytes of the budget. Keys must
// be spelled exactly as in the JSON form (matching is case-sensitive, unlike
// encoding/json's). Routes must be registered before the server serves.
package httpapi
