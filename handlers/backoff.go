package handlers

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/fitiqcore/outbox"
)

// retryDelay is the wait after the n-th delivery failed (n >= 1):
// outbox.RetryPolicy.Delay with outbox.DefaultJitter, the relay's backoff.
func retryDelay(p outbox.RetryPolicy, n uint64) time.Duration {
	return p.Delay(int(min(n, math.MaxInt32)), outbox.DefaultJitter, rand.Float64())
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
