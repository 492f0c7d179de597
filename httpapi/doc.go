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
//	GET  /v1/events/{id}   the event with its current status, or 404
//	GET  /v1/stats?user_id=  boltstore.Stats of every event or of one user's:
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
//	DELETE /v1/events?entity_id=a,b&entity_id=c       → {"count":N}
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
// DELETE touches.
//
// # Access
//
// With Options.Token set, every request but GET /healthz and GET /readyz
// needs "Authorization: Bearer <token>" (compared in constant time) and is
// answered 401 otherwise, whether the route exists or not. With
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
// Events use outbox.Event's JSON form: snake_case fields; "payload" holds any
// JSON value (stored as its JSON bytes, content type application/json) and
// "payload_base64" raw bytes. Fields the store assigns (seq, status, ...) are
// accepted so that a client can post back what it got, and ignored, except
// created_at, which the store keeps.
//
// More routes are added with Server.Handle.
//
// # Errors
//
// Every error is a JSON body {"error": "..."} that names the field at fault
// and, in a batch, the event's index ("events[3]: invalid type: ..."):
//
//   - 400: malformed JSON, data after the JSON value, a body that is not an
//     object, an unknown field, a field of the wrong JSON type, a validation
//     failure (outbox.ErrInvalidEvent), an empty batch;
//   - 404: an unknown id or route;
//   - 405: a known route with another method (with an Allow header);
//   - 401: a missing or wrong token, when Options.Token is set;
//   - 409: an id stored with different content (boltstore.ErrDuplicate), a
//     retry of an event that is not failed (boltstore.ErrNotRetryable);
//   - 413: a payload over Options.MaxPayload or the store's limit, a body
//     over Options.MaxBodyBytes;
//   - 415: a Content-Type other than application/json (parameters allowed,
//     a charset only if UTF-8), or none;
//   - 500: a store failure or a bug (a handler panic is recovered and
//     logged); the message starts with "internal: ";
//   - 503: the request's context ended (client gone, deadline), not
//     ready, or the outbox is full (with Retry-After).
//
// Client input never causes a 5xx.
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
// Bodies are read whole into memory, up to Options.MaxBodyBytes. Keys must
// be spelled exactly as in the JSON form (matching is case-sensitive, unlike
// encoding/json's). Routes must be registered before the server serves.
package httpapi
