package relay

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/fitiqcore/outbox"
)

// Backoff is the wait after the attempt-th failed attempt of e: the event's
// own policy (or the relay's, when the event has none or one outside the
// bounds of outbox.RetryPolicy.Validate, as a file of an older build may
// hold) grown exponentially, InitialInterval × Multiplier^(attempt-1) capped
// at MaxInterval, then spread uniformly by ±Jitter. It is computed in
// constant time and never exceeds MaxInterval × (1+Jitter).
func (r *Relay) Backoff(e *outbox.Event, attempt int) time.Duration {
	p := r.cfg.Retry
	if e.Retry != nil && e.Retry.Validate() == nil {
		p = *e.Retry
	}
	return backoff(p, r.cfg.Jitter, attempt, rand.Float64())
}

// backoff is the delay of attempt under p, with u in [0,1) choosing where in
// the jitter band it falls.
func backoff(p outbox.RetryPolicy, jitter float64, attempt int, u float64) time.Duration {
	d := float64(p.MaxInterval)
	if g := float64(p.InitialInterval) * math.Pow(p.Multiplier, float64(max(attempt, 1)-1)); g < d {
		d = g // +Inf and NaN compare false: the cap holds
	}
	return time.Duration(d * (1 - jitter + 2*jitter*u))
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
