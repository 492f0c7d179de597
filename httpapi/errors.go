package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
)

// requestError is a client error found by this package (content type, body
// size, JSON shape) before the store is involved. Its message names the
// offending field where there is one.
type requestError struct {
	status     int
	msg        string
	retryAfter int // seconds; sent as Retry-After when positive
}

func (e *requestError) Error() string { return e.msg }

func reject(status int, format string, args ...any) *requestError {
	return &requestError{status: status, msg: fmt.Sprintf(format, args...)}
}

// withIndex prefixes a batch element's error with its place in the batch,
// keeping the status it maps to.
func withIndex(i int, err error) error {
	status, msg := statusOf(err)
	return &requestError{status: status, msg: fmt.Sprintf("events[%d]: %s", i, msg)}
}

// statusOf maps an error to its HTTP status and the message of the JSON
// error body. Everything the client can fix is a 4xx; a cancelled or timed
// out request is a 503; anything else is a server fault, a 500.
func statusOf(err error) (int, string) {
	var re *requestError
	switch {
	case errors.As(err, &re):
		return re.status, re.msg
	case errors.Is(err, outbox.ErrPayloadTooLarge): // before ErrInvalidEvent: it wraps both
		return http.StatusRequestEntityTooLarge, err.Error()
	case errors.Is(err, outbox.ErrInvalidEvent):
		return http.StatusBadRequest, err.Error()
	case errors.Is(err, boltstore.ErrDuplicate):
		return http.StatusConflict, err.Error()
	case errors.Is(err, boltstore.ErrNotFound):
		return http.StatusNotFound, err.Error()
	case errors.Is(err, boltstore.ErrNotRetryable):
		return http.StatusConflict, err.Error()
	case errors.Is(err, boltstore.ErrBadCursor):
		return http.StatusBadRequest, "invalid cursor: " + err.Error()
	case errors.Is(err, syscall.ENOSPC):
		return http.StatusInsufficientStorage, "store full: no space left on the relay's disk; nothing of this request was stored (set store.max_bytes to refuse earlier with 503)"
	case errors.Is(err, boltstore.ErrInvalidQuery):
		return http.StatusBadRequest, err.Error()
	case errors.Is(err, boltstore.ErrWrongStatus), errors.Is(err, boltstore.ErrNotHead):
		return http.StatusConflict, err.Error()
	case errors.Is(err, boltstore.ErrOutboxFull):
		var fe *boltstore.FullError
		if errors.As(err, &fe) {
			return http.StatusServiceUnavailable, "outbox full: " + strings.TrimPrefix(fe.Error(), boltstore.ErrOutboxFull.Error()+": ")
		}
		return http.StatusServiceUnavailable, "outbox full: " + err.Error()
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, "unavailable: " + err.Error()
	}
	return http.StatusInternalServerError, "internal: " + err.Error()
}

// errorBody is the JSON form of every error response.
type errorBody struct {
	Error string `json:"error"`
}

// fail answers err as a JSON error body. Server faults are logged here, once.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, msg := statusOf(err)
	var re *requestError
	switch {
	case errors.Is(err, boltstore.ErrOutboxFull):
		// Admission control: push back on the writer; nothing was stored.
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(err)))
	case errors.As(err, &re) && re.retryAfter > 0:
		w.Header().Set("Retry-After", strconv.Itoa(re.retryAfter))
	}
	switch {
	case status >= 500 && status != http.StatusServiceUnavailable:
		s.log.ErrorContext(r.Context(), "httpapi: request failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	case status >= 500:
		s.log.WarnContext(r.Context(), "httpapi: request failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	}
	s.writeJSON(w, status, errorBody{Error: msg})
}

// writeJSON answers v as JSON with the given status.
func (s *Server) writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := marshal(v)
	if err != nil {
		s.log.Error("httpapi: encode response", "err", err)
		status = http.StatusInternalServerError
		b, _ = json.Marshal(errorBody{Error: "internal: encode response: " + err.Error()})
	}
	s.writeBytes(w, status, b)
}

// writeBytes answers b, JSON, with the given status.
func (s *Server) writeBytes(w http.ResponseWriter, status int, b []byte) {
	h := w.Header()
	h.Set("Content-Type", outbox.ContentTypeJSON)
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(b) //nolint:errcheck // the client went away; nothing to do
}

// marshal encodes v as one line of JSON and a newline, without escaping
// HTML characters: answers are application/json (with nosniff), and a JSON
// payload comes back byte for byte as it was stored ("&" stays "&").
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// defaultRetryAfter is the Retry-After of a 503 "outbox full" whose error
// suggests no wait of its own.
const defaultRetryAfter = 5 * time.Second

// retryAfterSeconds is how long a writer refused by admission control should
// wait, in whole seconds, at least 1.
func retryAfterSeconds(err error) int {
	d := defaultRetryAfter
	var fe *boltstore.FullError
	if errors.As(err, &fe) && fe.RetryAfter > 0 {
		d = fe.RetryAfter
	}
	return max(1, int(math.Ceil(d.Seconds())))
}
