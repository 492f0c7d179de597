package handlers

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fitiqcore/outbox"
)

// MatchAll is the pattern that matches every event type.
const MatchAll = ">"

// Router routes the events of one durable JetStream consumer to the handlers
// registered for their types. Register handlers with Handle, HandleFunc and
// Use, then call Run. The methods are safe for concurrent use; routes added
// while Run is running take effect at the next Run.
type Router struct {
	js      jetstream.JetStream
	stream  string
	durable string
	opts    options

	mu      sync.Mutex
	routes  []route
	mws     []Middleware
	running bool
}

type route struct {
	pattern string // an exact type, a prefix ending in ".", or MatchAll
	h       Handler
}

// NewRouter returns a Router for the durable consumer named durable on
// stream, the stream the relay publishes to. The consumer is created, or
// updated to the Router's configuration, when Run starts.
func NewRouter(js jetstream.JetStream, stream, durable string, opts ...Option) (*Router, error) {
	if js == nil {
		return nil, invalidf("nil JetStream")
	}
	if err := outbox.ValidateName("stream", stream); err != nil {
		return nil, invalidf("%v", err)
	}
	if err := outbox.ValidateName("durable", durable); err != nil {
		return nil, invalidf("%v", err)
	}
	o := defaultOptions()
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	return &Router{js: js, stream: stream, durable: durable, opts: o}, nil
}

// Handle registers h for the events that pattern matches: an exact type
// ("mood.logged"), every type under a prefix when the pattern ends in "."
// ("mood." matches "mood.logged" and "mood.daily.summary"), or every type
// (MatchAll, ">"). Of the handlers whose pattern matches an event, exact
// patterns come first, then longer prefixes before shorter ones, then
// MatchAll, in the order of registration among equals; the first that accepts
// the event (see CanHandler) handles it.
//
// Like http.ServeMux.Handle, Handle panics on an invalid pattern or a nil
// handler: both are programming errors.
func (r *Router) Handle(pattern string, h Handler) {
	if err := validPattern(pattern); err != nil {
		panic(err)
	}
	if h == nil {
		panic("handlers: nil handler for " + pattern)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.routes = append(r.routes, route{pattern: pattern, h: h})
}

// HandleFunc registers f for pattern, as Handle does.
func (r *Router) HandleFunc(pattern string, f func(ctx context.Context, e *outbox.Event) error) {
	if f == nil {
		panic("handlers: nil handler func for " + pattern)
	}
	r.Handle(pattern, HandlerFunc(f))
}

// Use appends middleware that wraps every handler; the first given is the
// outermost.
func (r *Router) Use(mw ...Middleware) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mws = append(r.mws, mw...)
}

func validPattern(p string) error {
	if p == MatchAll {
		return nil
	}
	if err := outbox.ValidateType(strings.TrimSuffix(p, ".")); err != nil {
		return fmt.Errorf("handlers: invalid pattern %q: %w", p, err)
	}
	return nil
}

// table is the routing table of one Run: handlers wrapped in their
// middleware, sorted by precedence.
type table []entry

type entry struct {
	pattern string
	accept  CanHandler // the registered handler's, or nil
	h       Handler    // the registered handler wrapped in middleware
}

// rank orders patterns: exact first, then longer prefixes, then MatchAll.
func rank(p string) int {
	switch {
	case p == MatchAll:
		return 0
	case strings.HasSuffix(p, "."):
		return len(p)
	}
	return outbox.MaxTypeLen + 2
}

func newTable(routes []route, mws []Middleware, log *slog.Logger) table {
	t := make(table, 0, len(routes))
	for _, rt := range routes {
		h := recovering(rt.h, log) // so that middleware sees a panic as an error
		for j := len(mws) - 1; j >= 0; j-- {
			h = mws[j](h)
		}
		c, _ := rt.h.(CanHandler)
		t = append(t, entry{pattern: rt.pattern, accept: c, h: h})
	}
	slices.SortStableFunc(t, func(a, b entry) int { return rank(b.pattern) - rank(a.pattern) })
	return t
}

func matches(pattern, typ string) bool {
	switch {
	case pattern == MatchAll:
		return true
	case strings.HasSuffix(pattern, "."):
		return strings.HasPrefix(typ, pattern)
	}
	return pattern == typ
}

// lookup returns the handler for e, or nil when none accepts it. A CanHandle
// that panics makes the lookup fail with an error wrapping ErrPanic.
func (t table) lookup(e *outbox.Event) (h Handler, err error) {
	defer func() {
		if v := recover(); v != nil {
			h, err = nil, panicError("CanHandle", v)
		}
	}()
	for _, en := range t {
		if matches(en.pattern, e.Type) && (en.accept == nil || en.accept.CanHandle(e)) {
			return en.h, nil
		}
	}
	return nil, nil
}

func (t table) patterns() []string {
	out := make([]string, len(t))
	for i, en := range t {
		out[i] = en.pattern
	}
	return out
}

// filterSubjects derives the consumer's filter subjects from the patterns:
// <prefix>.<type> for an exact type, <prefix>.<p>.> for a prefix "p.", and
// <prefix>.> for MatchAll, without overlaps (the server rejects them).
func filterSubjects(subjectPrefix string, patterns []string) []string {
	var prefixes, exact []string
	for _, p := range patterns {
		switch {
		case p == MatchAll:
			return []string{subjectPrefix + ".>"}
		case strings.HasSuffix(p, "."):
			prefixes = append(prefixes, p)
		default:
			exact = append(exact, p)
		}
	}
	covered := func(s string, self string) bool {
		for _, p := range prefixes {
			if p != self && strings.HasPrefix(s, p) {
				return true
			}
		}
		return false
	}
	var out []string
	for _, p := range prefixes {
		if !covered(p, p) {
			out = append(out, subjectPrefix+"."+p+">")
		}
	}
	for _, t := range exact {
		if !covered(t, "") {
			out = append(out, subjectPrefix+"."+t)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
