package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
)

// Store is what the API needs of the outbox store. Its methods must be safe
// for concurrent use: the server calls them from every request's goroutine.
type Store interface {
	// Enqueue stores events in one transaction, all or nothing, and fills
	// them in (id, defaults, seq, entity_seq, status, created_at). An id
	// stored already with the same content stores nothing and fills the
	// event from the store; created counts the new ones. Errors wrapping
	// outbox.ErrInvalidEvent (and outbox.ErrPayloadTooLarge) are the
	// client's, answered 400 (413): Enqueue is the one owner of the event
	// rules and limits (outbox.Event.Validate with the store's MaxPayload
	// and MaxMessage). An id stored with other content, or repeated in the
	// call with other content, fails with an error wrapping
	// boltstore.ErrDuplicate, answered 409. A multi-event call prefixes
	// both kinds with the event's index, "events[i]: ", and a one-event
	// call does not (the API adds "events[0]: " for a batch of one).
	Enqueue(ctx context.Context, events ...*outbox.Event) (created int, err error)
	// Get returns the event with its current status, or an error wrapping
	// boltstore.ErrNotFound (also for an id that is not a UUID), answered 404.
	Get(ctx context.Context, id string) (*outbox.Event, error)
	// Stats counts the events per status. The readiness probe calls it too:
	// an error means the store cannot serve.
	Stats(ctx context.Context) (boltstore.Stats, error)
}

var _ Store = (*boltstore.Store)(nil)

// Checker checks an event against the schemas of its type (a *schema.Set
// is one, compiled from the daemon's event_types). The server calls Check
// for every event posted, once it is decoded and its type allowed, before
// the store sees it, from every request's goroutine: Check must be safe for
// concurrent use, must not change the event and must not keep it. It
// returns nil for a valid event and for a type without schemas. An error
// wrapping outbox.ErrInvalidEvent is the client's, answered 400 with its
// message (an *outbox.ValidationError naming the field and the JSON
// pointer of the failing value: "invalid payload/score: must be <= 5"; in
// a batch after the event's index); any other error is answered 500.
type Checker interface {
	Check(e *outbox.Event) error
}

// Options tune a Server. The zero value works: a zero limit takes its
// default (the Default constants below). Validate states the rules of the
// other fields; New serves any Options, so callers that take them from an
// operator (the daemon's configuration file) call Validate first.
type Options struct {
	// MaxBodyBytes is the per-request body limit (default
	// DefaultMaxBodyBytes, 16 MiB; at most MaxInflightBodyBytes): a
	// Content-Length over it is answered 413 before anything is read, a
	// chunked body 413 once it passes it. Bodies are read whole into
	// memory. The payload limit is the store's (Store.Enqueue), not this.
	MaxBodyBytes int64
	// MaxInflightBodyBytes is the byte budget that the bodies of all the
	// requests being served share (default DefaultMaxInflightBodyBytes,
	// 128 MiB; negative: no budget). A request reserves its Content-Length,
	// or MaxBodyBytes when it is sent chunked, before its body is read,
	// and releases it when its handler returns; a request the budget
	// cannot cover now is answered 503 with Retry-After: 1 at once.
	MaxInflightBodyBytes int64
	// MaxConcurrent caps the requests served at once (default
	// DefaultMaxConcurrent, 256; negative: no cap). A request over the cap
	// is answered 503 with Retry-After: 1 at once, without waiting; the
	// probes (GET /healthz, GET /readyz) are never refused.
	MaxConcurrent int
	// Ready reports whether the sidecar can publish (NATS is connected);
	// GET /readyz calls it. Nil means always ready.
	Ready func(ctx context.Context) error
	// Logger receives server faults and panics, and the operator's changes
	// through the admin API (default: discarded).
	Logger *slog.Logger

	// Token, when set, is required as "Authorization: Bearer <Token>" on
	// every request but GET /healthz and GET /readyz (compared in constant
	// time); others are answered 401. It has no white space: a bearer
	// token is one word (RFC 6750), and the server trims what it receives.
	Token string
	// AllowedTypes, when not empty, is the event type allowlist: an event of
	// another type is answered 400 naming the allowed ones (see CheckType).
	// Each is a valid type (outbox.ValidateType): no event has another.
	AllowedTypes []string
	// Schemas, when set, checks every event posted against the schemas of
	// its type (see Checker): a violation is answered 400 naming the field
	// and the JSON pointer of the failing value.
	Schemas Checker
	// Broker reports the NATS connection and the stream for GET /v1/status;
	// nil leaves them out of the report.
	Broker Broker
	// Metrics, when set, is served at GET /metrics (Prometheus exposition).
	Metrics http.Handler
	// Enqueued, when set, is called after every successful ingest request
	// with the events it newly stored (not those stored already): metrics
	// count them. It is called from the request's goroutine and must not
	// block. The events' metadata and payloads may be slices of the
	// request's body: an event kept past the call keeps the body's memory.
	Enqueued func(events ...*outbox.Event)
}

// The defaults of Options' limits.
const (
	DefaultMaxBodyBytes         = 16 << 20  // Options.MaxBodyBytes
	DefaultMaxInflightBodyBytes = 128 << 20 // Options.MaxInflightBodyBytes
	DefaultMaxConcurrent        = 256       // Options.MaxConcurrent
)

// ErrInvalidOptions wraps the error of Options that Validate refuses.
var ErrInvalidOptions = errors.New("httpapi: invalid options")

// Validate reports the first field of o that cannot work as meant, in an
// *outbox.FieldError naming the Go field ("httpapi: invalid options:
// AllowedTypes[1]: ..."). It is the one owner of these rules. The limits
// have a meaning for every value (see each field) and no rule here.
func (o *Options) Validate() error {
	bad := func(field, format string, args ...any) error {
		return &outbox.FieldError{Kind: ErrInvalidOptions, Field: field, Err: fmt.Errorf(format, args...)}
	}
	if strings.ContainsAny(o.Token, " \t\r\n") {
		return bad("Token", "must not contain white space")
	}
	for i, t := range o.AllowedTypes {
		if err := outbox.ValidateType(t); err != nil {
			return bad(fmt.Sprintf("AllowedTypes[%d]", i), "%v", err)
		}
	}
	return nil
}

// readyTimeout bounds a readiness check whose client set no deadline.
const readyTimeout = 5 * time.Second

func (o *Options) setDefaults() {
	if o.MaxInflightBodyBytes == 0 {
		o.MaxInflightBodyBytes = DefaultMaxInflightBodyBytes
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.MaxInflightBodyBytes > 0 {
		// A body over the whole budget could never be served.
		o.MaxBodyBytes = min(o.MaxBodyBytes, o.MaxInflightBodyBytes)
	}
	if o.MaxConcurrent == 0 {
		o.MaxConcurrent = DefaultMaxConcurrent
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Server is the sidecar's HTTP API; it implements http.Handler and is safe
// for concurrent use.
type Server struct {
	store    Store
	admin    AdminStore // nil when store does not implement it
	ready    func(context.Context) error
	log      *slog.Logger
	maxBody  int64
	bodies   *budget // nil: no budget
	gate     gate
	token    *[sha256.Size]byte // nil: no auth
	allowed  []string
	schemas  Checker // nil: no schemas
	broker   Broker
	enqueued func(...*outbox.Event)
	mux      *http.ServeMux
}

// New returns the API over store. When store also implements AdminStore
// (as *boltstore.Store does), the admin routes are registered too. It panics
// when store is nil.
func New(store Store, opts Options) *Server {
	if store == nil {
		panic("httpapi: New with a nil Store")
	}
	opts.setDefaults()
	s := &Server{
		store:    store,
		ready:    opts.Ready,
		log:      opts.Logger,
		maxBody:  opts.MaxBodyBytes,
		bodies:   newBudget(opts.MaxInflightBodyBytes),
		gate:     newGate(opts.MaxConcurrent),
		allowed:  slices.Clone(opts.AllowedTypes),
		schemas:  opts.Schemas,
		broker:   opts.Broker,
		enqueued: opts.Enqueued,
		mux:      http.NewServeMux(),
	}
	if opts.Token != "" {
		h := sha256.Sum256([]byte(opts.Token))
		s.token = &h
	}
	s.mux.HandleFunc("POST /v1/events", s.postEvent)
	s.mux.HandleFunc("POST /v1/events/batch", s.postBatch)
	s.mux.HandleFunc("GET /v1/events/{id}", s.getEvent)
	s.mux.HandleFunc("GET /v1/stats", s.stats)
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /readyz", s.readyz)
	if admin, ok := store.(AdminStore); ok {
		s.admin = admin
		s.registerAdmin()
	}
	if opts.Metrics != nil {
		s.mux.Handle("GET /metrics", opts.Metrics)
	}
	return s
}

// Handle registers h for a ServeMux pattern ("DELETE /v1/events/{id}") on
// the server's own mux, behind the same panic recovery and JSON 404/405
// answers. Register routes before serving; a pattern that conflicts with a
// registered one panics, as with http.ServeMux.
func (s *Server) Handle(pattern string, h http.Handler) {
	s.mux.Handle(pattern, h)
}

// ServeHTTP routes the request. In order: the token (401), the cap on
// concurrent requests (503), the route (404, 405), the body's size and
// the shared body budget (413, 503), then the route's handler. A panic in
// a handler is logged and answered 500; requests that match no route are
// answered 404 or 405 with a JSON body. An answer to a request whose body
// has not been read to its end closes the connection (see responseWriter).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rw := &responseWriter{ResponseWriter: w}
	if r.Body != nil && r.Body != http.NoBody && r.ProtoMajor == 1 {
		rw.body = &bodyReader{ReadCloser: r.Body}
		r.Body = rw.body
		defer rw.finish()
	}
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		if v == http.ErrAbortHandler { //nolint:errorlint // a sentinel panic value, compared as net/http does
			panic(v)
		}
		s.log.ErrorContext(r.Context(), "httpapi: panic", "method", r.Method, "path", r.URL.Path,
			"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
		if !rw.wroteHeader {
			s.writeJSON(rw, http.StatusInternalServerError, errorBody{Error: "internal: server error"})
		}
	}()
	if !s.authorized(r) {
		s.unauthorized(rw, r)
		return
	}
	probe := isOpenPath(r.URL.Path)
	if !probe {
		if !s.gate.enter() {
			s.fail(rw, r, s.gate.busy())
			return
		}
		defer s.gate.leave()
	}
	if h, pattern := s.mux.Handler(r); pattern == "" {
		s.unrouted(rw, r, h)
		return
	}
	if !probe && r.ContentLength != 0 {
		n, err := s.reserveBody(r)
		if err != nil {
			s.fail(rw, r, err)
			return
		}
		defer s.bodies.release(n)
	}
	s.mux.ServeHTTP(rw, r)
}

// unrouted runs the mux's own answer to a request that matches no pattern
// (404, or 405 with an Allow header) and rewrites its plain-text body as
// JSON.
func (s *Server) unrouted(w http.ResponseWriter, r *http.Request, h http.Handler) {
	c := &capture{header: make(http.Header)}
	h.ServeHTTP(c, r)
	switch c.status {
	case http.StatusNotFound:
		s.writeJSON(w, c.status, errorBody{Error: fmt.Sprintf("not found: no route for %s %s", r.Method, r.URL.Path)})
	case http.StatusMethodNotAllowed:
		allow := c.header.Get("Allow")
		w.Header().Set("Allow", allow)
		s.writeJSON(w, c.status, errorBody{Error: fmt.Sprintf("method %s not allowed on %s (allowed: %s)", r.Method, r.URL.Path, allow)})
	default: // not an error (a redirect): pass it on as it is
		for k, v := range c.header {
			w.Header()[k] = v
		}
		w.WriteHeader(c.status)
		w.Write(c.body.Bytes()) //nolint:errcheck // the client went away
	}
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	s.writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz answers 200 when NATS is ready and the store answers, 503 otherwise.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, readyTimeout)
		defer cancel()
	}
	if s.ready != nil {
		if err := s.ready(ctx); err != nil {
			s.writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "not ready: " + err.Error()})
			return
		}
	}
	if _, err := s.store.Stats(ctx); err != nil {
		s.writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "not ready: store: " + err.Error()})
		return
	}
	s.writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// responseWriter notes whether the response has started, so that the panic
// recovery does not write a second header, and closes an HTTP/1.x
// connection after an answer given without reading the request's whole
// body.
//
// net/http, when a handler returns with a declared body unread, reads up
// to 256 KiB of it, to keep the connection, before it sends the answer and
// again before it takes the next request: a client that declares a body
// and never sends it would hold the answer (a 401, a 413, a 503) and the
// connection until the server's read timeout, if any. "Connection: close"
// sends the answer at once, and finish gives the rest of the body
// unreadBodyLinger to arrive before the connection is closed. (HTTP/2
// does not wait for unread bodies; there "Connection: close" would end
// every stream of the connection.)
type responseWriter struct {
	http.ResponseWriter
	body        *bodyReader // nil: the request has no body, or is not HTTP/1.x
	wroteHeader bool
	closing     bool // Connection: close was set for an unread body
}

// unreadBodyLinger is how long the server still reads (and drops) the rest
// of a body it answered without reading, before it closes the connection:
// long enough for a client that is sending it not to see its answer
// reset, as net/http lingers before a close.
const unreadBodyLinger = 500 * time.Millisecond

func (w *responseWriter) WriteHeader(status int) {
	if !w.wroteHeader && w.body != nil && !w.body.eof {
		w.Header().Set("Connection", "close")
		w.closing = true
	}
	w.wroteHeader = true
	w.ResponseWriter.WriteHeader(status)
}

// finish runs when ServeHTTP returns: after an answer that closes the
// connection for an unread body, it bounds the wait for that body.
func (w *responseWriter) finish() {
	if w.closing {
		_ = http.NewResponseController(w.ResponseWriter).SetReadDeadline(time.Now().Add(unreadBodyLinger))
	}
}

func (w *responseWriter) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// FlushError flushes what was written, starting the response first so
// that WriteHeader sees it (http.ResponseController calls it).
func (w *responseWriter) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the connection's writer (its
// SetWriteDeadline: see Streaming).
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// bodyReader notes whether the request body was read to its end. It is
// read and checked in the handler's goroutine.
type bodyReader struct {
	io.ReadCloser
	eof bool
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) {
		b.eof = true
	}
	return n, err
}

// capture records a response in memory.
type capture struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (c *capture) Header() http.Header { return c.header }

func (c *capture) WriteHeader(status int) {
	if c.status == 0 {
		c.status = status
	}
}

func (c *capture) Write(b []byte) (int, error) {
	c.WriteHeader(http.StatusOK)
	return c.body.Write(b)
}
