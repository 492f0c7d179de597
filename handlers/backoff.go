package handlers

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/fitiqcore/outbox"
)

// retryDelay is the wait after the n-th delivery failed (n >= 1):
// InitialInterval × Multiplier^(n-1), plus up to 10% jitter so that events
// failing together do not come back together, at most MaxInterval. It is
// never below the exact exponential value unless MaxInterval caps it.
func retryDelay(p outbox.RetryPolicy, n uint64) time.Duration {
	if n < 1 {
		n = 1
	}
	d := float64(p.InitialInterval) * math.Pow(p.Multiplier, float64(n-1))
	if math.IsNaN(d) || d >= float64(p.MaxInterval) {
		return p.MaxInterval
	}
	d += d / 10 * rand.Float64()
	return min(time.Duration(d), p.MaxInterval)
}

// policy returns the event's backoff, from its headers, or def when the
// headers carry none or one that outbox.RetryPolicy.Validate refuses (a
// foreign publisher's): every delay is then at most outbox.MaxRetryInterval.
func policy(e *outbox.Event, def outbox.RetryPolicy) outbox.RetryPolicy {
	if e != nil && e.Retry != nil && e.Retry.Validate() == nil {
		return *e.Retry
	}
	return def
}

// maxAttempts returns the event's max_attempts, from its headers, or def
// when the headers carry none or one outside 1..outbox.MaxAttemptsLimit, which
// the relay never publishes.
func maxAttempts(e *outbox.Event, def int) int {
	if e != nil && e.MaxAttempts > 0 && e.MaxAttempts <= outbox.MaxAttemptsLimit {
		return e.MaxAttempts
	}
	return def
}
