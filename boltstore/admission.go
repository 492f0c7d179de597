package boltstore

import (
	"time"

	"github.com/fitiqcore/outbox"
)

// fullRetryAfter is the Retry-After hint of a FullError: the store drains at
// the broker's pace, which it cannot predict, so this is only a polite pause.
const fullRetryAfter = 5 * time.Second

// overMark reports the first high-water mark (Options.MaxPending, MaxBytes,
// MaxPendingAge) that the store has reached at the start of the transaction,
// or nil. It reads the counters and the first pending_by_time key.
func (w *writer) overMark(now time.Time) *FullError {
	o := &w.s.opts
	if o.MaxPending > 0 {
		if n := w.c.status[statusCode(outbox.StatusPending)]; n >= o.MaxPending {
			return &FullError{Mark: "max_pending", Value: n, Limit: o.MaxPending, RetryAfter: fullRetryAfter}
		}
	}
	if o.MaxBytes > 0 && w.c.bytes >= o.MaxBytes {
		return &FullError{Mark: "max_bytes", Value: w.c.bytes, Limit: o.MaxBytes, RetryAfter: fullRetryAfter}
	}
	if o.MaxPendingAge > 0 {
		if tk, _ := pendingScan(w.byStatus, nil, nil, nil, 0, &w.c.prio); tk != nil {
			if age := now.Sub(timeOfKey(tk)); age > o.MaxPendingAge {
				return &FullError{Mark: "max_pending_age", Value: int64(age), Limit: int64(o.MaxPendingAge), RetryAfter: fullRetryAfter}
			}
		}
	}
	return nil
}

// admit refuses events when a high-water mark is passed, unless every one of
// them is stored already (a re-post, which stores nothing and is answered as
// usual).
func (w *writer) admit(events []*outbox.Event, now time.Time) error {
	full := w.overMark(now)
	if full == nil {
		return nil
	}
	for _, e := range events {
		if !w.exists(e.ID) {
			return full
		}
	}
	return nil
}
