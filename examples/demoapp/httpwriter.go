package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/fitiqcore/outbox"
)

// httpWriter posts batches to the relay sidecar's API.
type httpWriter struct {
	cfg *config
	hc  *http.Client
	log *slog.Logger

	mu       sync.Mutex
	accepted []accepted
	count    map[string]int64 // outcomes of POSTs by kind
	lastBody string           // the last error answer
	refusal  *refusal         // the last 503 refusal
}

// refusal is the last admission-control refusal seen (503 + Retry-After).
type refusal struct {
	Status     int    `json:"status"`
	Error      string `json:"error"`
	RetryAfter string `json:"retry_after"`
	At         int64  `json:"at"` // unix ms
	First      int64  `json:"first"`
}

func newHTTPWriter(cfg *config, log *slog.Logger) *httpWriter {
	return &httpWriter{cfg: cfg, log: log, hc: &http.Client{Timeout: 10 * time.Second}, count: map[string]int64{}}
}

// Write posts the batch until the relay answers it for good. A connection
// error, a timeout or a 5xx leaves the outcome unknown: the same body (the
// same ids) is posted again, and the relay answers 200 if it had stored it.
func (h *httpWriter) Write(ctx context.Context, events []*outbox.Event, paused func() bool) error {
	body, err := json.Marshal(map[string]any{"events": events})
	if err != nil {
		return err
	}
	wait := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		status, answer, retryAfter, err := h.post(ctx, body)
		switch {
		case err != nil:
			h.note("conn_errors", "", err.Error())
			if attempt == 1 || attempt%50 == 0 {
				h.log.Warn("relay unreachable; posting the batch again with the same ids", "attempt", attempt, "err", err)
			}
		case status == http.StatusCreated || status == http.StatusOK:
			var got struct {
				Events []*outbox.Event `json:"events"`
			}
			if err := json.Unmarshal(answer, &got); err != nil || len(got.Events) != len(events) {
				return fmt.Errorf("relay answered %d with %d events for %d (%v): %.200s", status, len(got.Events), len(events), err, answer)
			}
			h.record(got.Events, status, attempt)
			return nil
		case status == http.StatusServiceUnavailable:
			h.refused(status, answer, retryAfter)
			if paused() {
				return errAbandoned // a refusal stores nothing
			}
			wait = retryAfterDuration(retryAfter)
		case status >= 500:
			h.note("server_errors", string(answer), "")
			if paused() {
				return errAbandoned
			}
		default: // 4xx: nothing stored, and posting it again cannot help
			h.note("rejected", string(answer), "")
			h.log.Error("relay rejected the batch", "status", status, "answer", string(answer))
			return fmt.Errorf("relay answered %d: %s", status, answer)
		}
		if err := sleepOrPause(ctx, wait, paused); err != nil {
			return err
		}
		if status != http.StatusServiceUnavailable {
			wait = min(2*wait, time.Second)
		}
	}
}

// sleepOrPause sleeps d, waking every 100ms to see whether the load is being
// paused (so a refused batch can be given up promptly).
func sleepOrPause(ctx context.Context, d time.Duration, paused func() bool) error {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if paused() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(100*time.Millisecond, time.Until(end))):
		}
	}
	return nil
}

func retryAfterDuration(h string) time.Duration {
	n, err := strconv.Atoi(h)
	if err != nil || n < 1 {
		return time.Second
	}
	return time.Duration(n) * time.Second
}

func (h *httpWriter) post(ctx context.Context, body []byte) (status int, answer []byte, retryAfter string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.cfg.relayURL+"/v1/events/batch", bytes.NewReader(body))
	if err != nil {
		return 0, nil, "", err
	}
	req.Header.Set("Content-Type", outbox.ContentTypeJSON)
	if h.cfg.relayToken != "" {
		req.Header.Set("Authorization", "Bearer "+h.cfg.relayToken)
	}
	resp, err := h.hc.Do(req)
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	answer, err = io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return 0, nil, "", fmt.Errorf("read answer: %w", err)
	}
	return resp.StatusCode, answer, resp.Header.Get("Retry-After"), nil
}

func (h *httpWriter) record(events []*outbox.Event, status, attempt int) {
	now := time.Now().UnixMilli()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range events {
		h.accepted = append(h.accepted, accepted{ID: e.ID, EntityID: e.EntityID, EntitySeq: e.EntitySeq, Seq: e.Seq, At: now})
	}
	if status == http.StatusOK {
		h.count["reposts_200"]++ // the relay had stored it already: an answer was lost
	} else {
		h.count["created_201"]++
	}
	if attempt > 1 {
		h.count["retried_batches"]++
	}
}

func (h *httpWriter) note(kind, body, errText string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.count[kind]++
	if body != "" {
		h.lastBody = body
	}
	if errText != "" {
		h.lastBody = errText
	}
}

func (h *httpWriter) refused(status int, answer []byte, retryAfter string) {
	var eb struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(answer, &eb)
	now := time.Now().UnixMilli()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.count["refused_503"]++
	first := now
	if h.refusal != nil {
		first = h.refusal.First
	}
	h.refusal = &refusal{Status: status, Error: eb.Error, RetryAfter: retryAfter, At: now, First: first}
}

func (h *httpWriter) Accepted(context.Context) ([]accepted, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]accepted(nil), h.accepted...), nil
}

func (h *httpWriter) Stats() map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := map[string]any{"accepted": len(h.accepted), "last_answer": h.lastBody, "last_refusal": h.refusal}
	for _, k := range []string{"created_201", "reposts_200", "retried_batches", "conn_errors", "refused_503", "server_errors", "rejected"} {
		st[k] = h.count[k]
	}
	if n := len(h.accepted); n > 0 {
		st["last_accepted_at"] = h.accepted[n-1].At
	}
	return st
}
