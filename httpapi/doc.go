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
//	GET  /v1/stats         {"total","pending","processing","completed","failed"}
//	GET  /healthz          200 {"status":"ok"} while the process is up
//	GET  /readyz           200 when Options.Ready and the store answer, 503 otherwise
//
// Events use outbox.Event's JSON form: snake_case fields; "payload" holds any
// JSON value (stored as its JSON bytes, content type application/json) and
// "payload_base64" raw bytes. Fields the store assigns (seq, status, ...) are
// accepted so that a client can post back what it got, and ignored, except
// created_at, which the store keeps.
//
// More routes (the admin API) are added with Server.Handle.
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
//   - 409: an id stored with different content (boltstore.ErrDuplicate);
//   - 413: a payload over Options.MaxPayload or the store's limit, a body
//     over Options.MaxBodyBytes;
//   - 415: a Content-Type other than application/json (parameters allowed,
//     a charset only if UTF-8), or none;
//   - 500: a store failure or a bug (a handler panic is recovered and
//     logged); the message starts with "internal: ";
//   - 503: the request's context ended (client gone, deadline), or not
//     ready.
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
