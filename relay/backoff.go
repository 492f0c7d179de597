package relay

import (
	"math/rand/v2"
	"time"

	"github.com/fitiqcore/outbox"
)

// Backoff is the wait after the attempt-th failed attempt of e: the event's
// own policy (or the relay's, when the event has none or one outside the
// bounds of outbox.RetryPolicy.Validate, as a file of an older build may
// hold), outbox.RetryPolicy.Delay with the relay's Jitter: constant time,
// never above MaxInterval × (1+Jitter).
func (r *Relay) Backoff(e *outbox.Event, attempt int) time.Duration {
	p := r.cfg.Retry
	if e.Retry != nil && e.Retry.Validate() == nil {
		p = *e.Retry
	}
	return p.Delay(attempt, r.cfg.Jitter, rand.Float64())
}

// maxIdleWait bounds how long the reader sleeps until the next event falls
// due: the store's times are wall-clock times, the timer runs on the
// monotonic clock, and a clock set forward must not delay publishing by more
// than this.
const maxIdleWait = time.Minute

// idleWait is how long the reader waits for next at now: never negative,
// never more than maxIdleWait.
func idleWait(now, next time.Time) time.Duration {
	return min(max(next.Sub(now), 0), maxIdleWait)
}
