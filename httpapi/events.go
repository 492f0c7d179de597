package httpapi

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
)

// HeaderCreated is the header of the answers to POST /v1/events and
// /v1/events/batch that says how many of the events were newly stored (the
// others were stored already with the same content): what an importer
// counts, where the status (201 for any) does not tell.
const HeaderCreated = "Outbox-Created"

// batch is the body of POST /v1/events/batch, request and response.
type batch struct {
	Events []*outbox.Event `json:"events"`
}

// postEvent stores one event: 201 with the stored event, 200 when its id is
// stored already with the same content.
func (s *Server) postEvent(w http.ResponseWriter, r *http.Request) {
	body, err := s.readRequest(w, r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	e, err := decodeSingle(body)
	if err == nil {
		withRequestTrace(r, e)
		err = s.checkEvent(e)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	created, err := s.store.Enqueue(r.Context(), e)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.reportEnqueued([]*outbox.Event{e}, created)
	status := http.StatusOK
	if created > 0 {
		status = http.StatusCreated
	}
	w.Header().Set(HeaderCreated, strconv.Itoa(created))
	w.Header().Set("Location", "/v1/events/"+url.PathEscape(e.ID))
	s.writeEvent(w, status, e)
}

// postBatch stores a list of events in one transaction, all or nothing: 201
// with the stored events in order, 200 when every one was stored already
// with the same content. Errors name the event by its index.
func (s *Server) postBatch(w http.ResponseWriter, r *http.Request) {
	events, err := s.readBatch(w, r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	withRequestTrace(r, events...)
	created, err := s.store.Enqueue(r.Context(), events...)
	if err != nil && len(events) == 1 && (errors.Is(err, outbox.ErrInvalidEvent) || errors.Is(err, boltstore.ErrDuplicate)) {
		// The store names the event's index only among several (Store.Enqueue):
		// name it here for a batch of one, and only then, or the message
		// would say "events[1]: events[1]: ...".
		err = withIndex(0, err)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.reportEnqueued(events, created)
	status := http.StatusOK
	if created > 0 {
		status = http.StatusCreated
	}
	w.Header().Set(HeaderCreated, strconv.Itoa(created))
	s.writeEvents(w, status, events)
}

func (s *Server) readBatch(w http.ResponseWriter, r *http.Request) ([]*outbox.Event, error) {
	body, err := s.readRequest(w, r)
	if err != nil {
		return nil, err
	}
	return decodeBatch(body, s.checkEvent)
}

// checkEvent applies the server's own rules before the store sees the
// event: the type allowlist, then the schemas of its type (Options.Schemas).
// Every other rule and limit, the payload's size included, is the store's
// (Store.Enqueue).
func (s *Server) checkEvent(e *outbox.Event) error {
	if err := CheckType(s.allowed, e.Type); err != nil {
		return err
	}
	if s.schemas == nil {
		return nil
	}
	return s.schemas.Check(e)
}

// getEvent answers the event with its current status, or 404.
func (s *Server) getEvent(w http.ResponseWriter, r *http.Request) {
	e, err := s.store.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeEvent(w, http.StatusOK, e)
}

// reportEnqueued passes the events an ingest request newly stored to the
// Enqueued hook. The store gives new events sequences above every stored
// one, so the created new ones are those with the created highest distinct
// sequences; the others were stored already (an idempotent re-post).
func (s *Server) reportEnqueued(events []*outbox.Event, created int) {
	if s.enqueued == nil || created <= 0 {
		return
	}
	if created >= len(events) {
		s.enqueued(events...)
		return
	}
	seqs := make([]uint64, 0, len(events))
	for _, e := range events {
		seqs = append(seqs, e.Seq)
	}
	slices.Sort(seqs)
	seqs = slices.Compact(seqs)
	cut := seqs[max(len(seqs)-created, 0)]
	fresh := make([]*outbox.Event, 0, created)
	seen := make(map[uint64]bool, created)
	for _, e := range events {
		if e.Seq >= cut && !seen[e.Seq] {
			seen[e.Seq] = true
			fresh = append(fresh, e)
		}
	}
	s.enqueued(fresh...)
}

// withRequestTrace gives the events that carry no traceparent of their own
// the request's W3C trace context (its traceparent and tracestate headers),
// so that they join the trace of the request that wrote them. A traceparent
// header that does not parse is ignored, as W3C asks of a receiver (the
// request is answered as without one); an event's own traceparent field is
// validated with the event.
func withRequestTrace(r *http.Request, events ...*outbox.Event) {
	parent, state := outbox.ReceivedTraceContext(strings.TrimSpace(r.Header.Get("traceparent")), strings.TrimSpace(r.Header.Get("tracestate")))
	if parent == "" {
		return
	}
	for _, e := range events {
		if e.TraceParent == "" && e.TraceState == "" {
			e.TraceParent, e.TraceState = parent, state
		}
	}
}
