package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"slices"
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
	// client's, answered 400 (413); a multi-event call prefixes them with
	// "events[i]: ". An id stored with other content fails with an error
	// wrapping boltstore.ErrDuplicate, answered 409.
	Enqueue(ctx context.Context, events ...*outbox.Event) (created int, err error)
	// Get returns the event with its current status, or an error wrapping
	// boltstore.ErrNotFound (also for an id that is not a UUID), answered 404.
	Get(ctx context.Context, id string) (*outbox.Event, error)
	// Stats counts the events per status. The readiness probe calls it too:
	// an error means the store cannot serve.
	Stats(ctx context.Context) (boltstore.Stats, error)
}

var _ Store = (*boltstore.Store)(nil)

// Options tune a Server. The zero value works.
type Options struct {
	// MaxPayload is the per-event payload limit in bytes (default
	// outbox.DefaultPayload). A larger payload is answered 413 before the
	// store sees it; the store applies its own limit too.
	MaxPayload int
	// MaxBodyBytes is the request body limit (default 64 MiB); a larger
	// body is answered 413. Bodies are read whole into memory.
	MaxBodyBytes int64
	// Ready reports whether the sidecar can publish (NATS is connected);
	// GET /readyz calls it. Nil means always ready.
	Ready func(ctx context.Context) error
	// Logger receives server faults and panics, and the operator's changes
	// through the admin API (default: discarded).
	Logger *slog.Logger

	// Token, when set, is required as "Authorization: Bearer <Token>" on
	// every request but GET /healthz and GET /readyz (compared in constant
	// time); others are answered 401.
	Token string
	// AllowedTypes, when not empty, is the event type allowlist: an event of
	// another type is answered 400 naming the allowed ones (see CheckType).
	AllowedTypes []string
	// Broker reports the NATS connection and the stream for GET /v1/status;
	// nil leaves them out of the report.
	Broker Broker
	// Metrics, when set, is served at GET /metrics (Prometheus exposition).
	Metrics http.Handler
	// Enqueued, when set, is called after every successful ingest request
	// with the events it newly stored (not those stored already): metrics
	// count them. It is called from the request's goroutine and must not
	// block.
	Enqueued func(events ...*outbox.Event)
}

// DefaultMaxBodyBytes is the request body limit when Options.MaxBodyBytes is zero.
const DefaultMaxBodyBytes = 64 << 20

// readyTimeout bounds a readiness check whose client set no deadline.
const readyTimeout = 5 * time.Second

func (o *Options) setDefaults() {
	if o.MaxPayload <= 0 {
		o.MaxPayload = outbox.DefaultPayload
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Server is the sidecar's HTTP API; it implements http.Handler and is safe
// for concurrent use.
type Server struct {
	store      Store
	admin      AdminStore // nil when store does not implement it
	ready      func(context.Context) error
	log        *slog.Logger
	maxPayload int
	maxBody    int64
	token      *[sha256.Size]byte // nil: no auth
	allowed    []string
	broker     Broker
	enqueued   func(...*outbox.Event)
	mux        *http.ServeMux
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
		store:      store,
		ready:      opts.Ready,
		log:        opts.Logger,
		maxPayload: opts.MaxPayload,
		maxBody:    opts.MaxBodyBytes,
		allowed:    slices.Clone(opts.AllowedTypes),
		broker:     opts.Broker,
		enqueued:   opts.Enqueued,
		mux:        http.NewServeMux(),
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

// ServeHTTP routes the request. A panic in a handler is logged and answered
// 500; requests that match no route are answered 404 or 405 with a JSON
// body.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rw := &responseWriter{ResponseWriter: w}
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
	if h, pattern := s.mux.Handler(r); pattern == "" {
		s.unrouted(rw, r, h)
		return
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
// recovery does not write a second header.
type responseWriter struct {
	http.ResponseWriter
	wroteHeader bool
}

func (w *responseWriter) WriteHeader(status int) {
	w.wroteHeader = true
	w.ResponseWriter.WriteHeader(status)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	w.wroteHeader = true
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

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
