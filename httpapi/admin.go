package httpapi

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
)

// AdminStore is what the admin API needs of the store on top of Store: the
// operator's queries and repairs. *boltstore.Store implements it. Every
// method must be safe for concurrent use. Errors wrapping
// boltstore.ErrNotFound are answered 404, boltstore.ErrNotRetryable 409,
// boltstore.ErrBadCursor 400; any other error is a server fault (500).
type AdminStore interface {
	Store
	// List returns one page of the events matching q, in store order, and
	// the cursor of the next page ("" on the last).
	List(ctx context.Context, q boltstore.Query) (boltstore.Page, error)
	// UserStats is Stats for the events of one user.
	UserStats(ctx context.Context, userID string) (boltstore.Stats, error)
	// StaleEvents returns up to limit events pending longer than the store's
	// stale_after, of one user or of all ("").
	StaleEvents(ctx context.Context, userID string, limit int) ([]*outbox.Event, error)
	// FetchByStatus returns up to limit events in status st, of one user or
	// of all ("").
	FetchByStatus(ctx context.Context, st outbox.Status, userID string, limit int) ([]*outbox.Event, error)
	// Retry makes one failed event pending again with its attempts reset.
	Retry(ctx context.Context, id string) (*outbox.Event, error)
	// RetryWhere retries every failed event of a user ("" all) and returns
	// how many.
	RetryWhere(ctx context.Context, st outbox.Status, userID string) (int, error)
	// Delete removes one event.
	Delete(ctx context.Context, id string) error
	// DeleteByEntityIDs removes every event of the entities and returns how
	// many.
	DeleteByEntityIDs(ctx context.Context, entityIDs []string) (int, error)
	// DeleteUser removes every event of a user and returns how many.
	DeleteUser(ctx context.Context, userID string) (int, error)
	// DeleteCompletedBefore removes up to max events completed before
	// before, in one short transaction, and returns how many.
	DeleteCompletedBefore(ctx context.Context, before time.Time, max int) (int, error)
	// Reset removes every event (the emergency reset) and returns how many.
	Reset(ctx context.Context) (int, error)
	// Backup writes a consistent copy of the store file to w while the
	// store keeps serving.
	Backup(ctx context.Context, w io.Writer) (int64, error)
}

var _ AdminStore = (*boltstore.Store)(nil)

// countBody is the answer of the routes that change several events.
type countBody struct {
	Count int `json:"count"`
}

// eventsBody is a list of events; Events is never null.
type eventsBody struct {
	Events []*outbox.Event `json:"events"`
}

func (s *Server) registerAdmin() {
	s.mux.HandleFunc("GET /v1/events", s.listEvents)
	s.mux.HandleFunc("POST /v1/events/{id}/retry", s.retryEvent)
	s.mux.HandleFunc("POST /v1/events/retry", s.retryEvents)
	s.mux.HandleFunc("DELETE /v1/events/{id}", s.deleteEvent)
	s.mux.HandleFunc("DELETE /v1/events", s.deleteEvents)
	s.mux.HandleFunc("GET /v1/stale", s.staleEvents)
	s.mux.HandleFunc("GET /v1/status", s.status)
	s.mux.Handle("POST /v1/backup", Streaming(http.HandlerFunc(s.backup)))
	s.mux.HandleFunc("POST /v1/reset", s.reset)
}

// listEvents answers one page of events:
// GET /v1/events?status=&user_id=&entity_id=&type=&limit=&cursor=.
func (s *Server) listEvents(w http.ResponseWriter, r *http.Request) {
	p := queryParams(r, "status", "user_id", "entity_id", "type", "limit", "cursor")
	q := boltstore.Query{
		Status:   p.status("status"),
		UserID:   p.str("user_id"),
		EntityID: p.str("entity_id"),
		Type:     p.str("type"),
		Limit:    p.limit("limit"),
		Cursor:   p.str("cursor"),
	}
	if p.err != nil {
		s.fail(w, r, p.err)
		return
	}
	page, err := s.admin.List(r.Context(), q)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if page.Events == nil {
		page.Events = []*outbox.Event{}
	}
	s.writeJSON(w, http.StatusOK, Page{Events: page.Events, NextCursor: page.NextCursor})
}

// stats answers the statistics of every event, or of one user's:
// GET /v1/stats?user_id=.
func (s *Server) stats(w http.ResponseWriter, r *http.Request) {
	p := queryParams(r, "user_id")
	user := p.str("user_id")
	if p.err == nil && user != "" && s.admin == nil {
		p.err = reject(http.StatusBadRequest, "invalid user_id: this store keeps no statistics per user")
	}
	if p.err != nil {
		s.fail(w, r, p.err)
		return
	}
	var (
		st  boltstore.Stats
		err error
	)
	if user == "" {
		st, err = s.store.Stats(r.Context())
	} else {
		st, err = s.admin.UserStats(r.Context(), user)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusOK, StatsOf(st))
}

// staleEvents answers the events pending longer than stale_after:
// GET /v1/stale?user_id=&limit=.
func (s *Server) staleEvents(w http.ResponseWriter, r *http.Request) {
	p := queryParams(r, "user_id", "limit")
	user, limit := p.str("user_id"), p.limit("limit")
	if p.err != nil {
		s.fail(w, r, p.err)
		return
	}
	events, err := s.admin.StaleEvents(r.Context(), user, limit)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusOK, eventsBody{Events: nonNil(events)})
}

// retryEvent makes one failed event pending again:
// POST /v1/events/{id}/retry → the event; 404 unknown; 409 not failed.
func (s *Server) retryEvent(w http.ResponseWriter, r *http.Request) {
	if p := queryParams(r); p.err != nil {
		s.fail(w, r, p.err)
		return
	}
	e, err := s.admin.Retry(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.InfoContext(r.Context(), "event retried by operator", "event_id", e.ID, "type", e.Type, "attempt", e.AttemptCount)
	s.writeJSON(w, http.StatusOK, e)
}

// retryEvents retries failed events in bulk:
// POST /v1/events/retry?status=&user_id= → {"count":N}.
func (s *Server) retryEvents(w http.ResponseWriter, r *http.Request) {
	p := queryParams(r, "status", "user_id")
	st, user := p.status("status"), p.str("user_id")
	if p.err == nil && st != "" && st != outbox.StatusFailed {
		p.err = reject(http.StatusBadRequest, "invalid status: %q (only failed events can be retried)", st)
	}
	if p.err != nil {
		s.fail(w, r, p.err)
		return
	}
	n, err := s.admin.RetryWhere(r.Context(), st, user)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.InfoContext(r.Context(), "failed events retried by operator", "count", n, "user_id", user)
	s.writeJSON(w, http.StatusOK, countBody{Count: n})
}

// deleteEvent removes one event: DELETE /v1/events/{id} → {"count":1}.
func (s *Server) deleteEvent(w http.ResponseWriter, r *http.Request) {
	if p := queryParams(r); p.err != nil {
		s.fail(w, r, p.err)
		return
	}
	id := r.PathValue("id")
	e, err := s.store.Get(r.Context(), id) // for the log line; 404 early
	if err == nil {
		err = s.admin.Delete(r.Context(), id)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.InfoContext(r.Context(), "event deleted by operator", "event_id", e.ID, "type", e.Type, "attempt", e.AttemptCount, "status", e.Status)
	s.writeJSON(w, http.StatusOK, countBody{Count: 1})
}

// purgeChunk is how many completed events one transaction of a purge
// deletes: small enough never to stall the relay.
const purgeChunk = 1000

// deleteEvents removes events in bulk, by exactly one selector:
//
//	DELETE /v1/events?entity_id=a&entity_id=b  every event of the entities
//	DELETE /v1/events?user_id=u                every event of the user
//	DELETE /v1/events?status=completed&older_than=24h[&limit=N]
//	                                           completed events older than that
//
// → {"count":N}. Neither, or several, is a 400. Each entity_id value is one
// entity, byte for byte: "a,b" is the entity named a,b.
func (s *Server) deleteEvents(w http.ResponseWriter, r *http.Request) {
	p := queryParams(r, "entity_id", "user_id", "status", "older_than", "limit")
	entities, user, st := p.list("entity_id"), p.str("user_id"), p.status("status")
	olderThan, hasAge := p.duration("older_than")
	limit := 0
	if v := p.str("limit"); v != "" && p.err == nil {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			p.err = reject(http.StatusBadRequest, "invalid limit: %q (want a positive integer)", v)
		}
		limit = n
	}
	if p.err == nil {
		selectors := 0
		for _, given := range []bool{len(entities) > 0, user != "", st != "" || hasAge} {
			if given {
				selectors++
			}
		}
		switch {
		case selectors == 0:
			p.err = reject(http.StatusBadRequest, "missing selector: give entity_id, user_id, or status=completed&older_than=DURATION")
		case selectors > 1:
			p.err = reject(http.StatusBadRequest, "invalid selector: give only one of entity_id, user_id, or status=completed&older_than=DURATION")
		case (st != "" || hasAge) && st != outbox.StatusCompleted:
			p.err = reject(http.StatusBadRequest, "invalid status: %q (only completed events are deleted by age; want status=completed)", st)
		case st != "" && !hasAge:
			p.err = reject(http.StatusBadRequest, "missing older_than: status=completed needs older_than=DURATION (0s for all)")
		case limit > 0 && st == "":
			p.err = reject(http.StatusBadRequest, "invalid limit: only with status=completed&older_than")
		}
	}
	if p.err != nil {
		s.fail(w, r, p.err)
		return
	}
	var (
		n   int
		err error
	)
	switch {
	case len(entities) > 0:
		n, err = s.admin.DeleteByEntityIDs(r.Context(), entities)
	case user != "":
		n, err = s.admin.DeleteUser(r.Context(), user)
	default:
		n, err = s.purge(r.Context(), time.Now().Add(-olderThan), limit)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.InfoContext(r.Context(), "events deleted by operator", "count", n, "entity_ids", len(entities), "user_id", user, "older_than", olderThan)
	s.writeJSON(w, http.StatusOK, countBody{Count: n})
}

// purge deletes events completed before before, purgeChunk per transaction,
// at most limit in all (0: no limit).
func (s *Server) purge(ctx context.Context, before time.Time, limit int) (int, error) {
	total := 0
	for {
		chunk := purgeChunk
		if limit > 0 {
			chunk = min(chunk, limit-total)
		}
		if chunk <= 0 {
			return total, nil
		}
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n, err := s.admin.DeleteCompletedBefore(ctx, before, chunk)
		total += n
		if err != nil || n < chunk {
			return total, err
		}
	}
}

// backup streams a consistent hot copy of the store file:
// POST /v1/backup → application/octet-stream. A failure after the copy
// started aborts the response, so the client sees a truncated transfer
// instead of a file that looks whole. The route is registered behind
// Streaming: a big file takes longer than the server's write timeout.
func (s *Server) backup(w http.ResponseWriter, r *http.Request) {
	if p := queryParams(r); p.err != nil {
		s.fail(w, r, p.err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Disposition", `attachment; filename="outbox-backup.db"`)
	h.Set("X-Content-Type-Options", "nosniff")
	cw := &countingWriter{w: w}
	n, err := s.admin.Backup(r.Context(), cw)
	if err != nil {
		if cw.n == 0 {
			h.Del("Content-Disposition")
			s.fail(w, r, err)
			return
		}
		s.log.ErrorContext(r.Context(), "httpapi: backup failed mid-stream; aborting the response", "bytes", cw.n, "err", err)
		panic(http.ErrAbortHandler)
	}
	s.log.InfoContext(r.Context(), "backup streamed", "bytes", n)
}

// countingWriter counts what reached the client.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// reset is the emergency reset: POST /v1/reset?confirm=yes deletes every
// event → {"count":N}. Take a backup first (relay reset --emergency does).
func (s *Server) reset(w http.ResponseWriter, r *http.Request) {
	p := queryParams(r, "confirm")
	if c := p.str("confirm"); p.err == nil && c != "yes" {
		p.err = reject(http.StatusBadRequest, "missing confirm: the emergency reset deletes every event; send confirm=yes")
	}
	if p.err != nil {
		s.fail(w, r, p.err)
		return
	}
	n, err := s.admin.Reset(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.WarnContext(r.Context(), "emergency reset by operator: every event deleted", "count", n)
	s.writeJSON(w, http.StatusOK, countBody{Count: n})
}

func nonNil(events []*outbox.Event) []*outbox.Event {
	if events == nil {
		return []*outbox.Event{}
	}
	return events
}
