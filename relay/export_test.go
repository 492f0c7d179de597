package relay

import (
	"time"

	"github.com/fitiqcore/outbox"
)

// SetSweep shortens the sweep of unknown outcomes for a test; call it before
// Run.
func SetSweep(r *Relay, every, age time.Duration) { r.sweepEvery, r.sweepAge = every, age }

// IdleWait is idleWait, BackoffOf backoff, MaxIdleWait maxIdleWait.
var (
	IdleWait  = idleWait
	BackoffOf = func(p outbox.RetryPolicy, jitter float64, attempt int, u float64) time.Duration {
		return backoff(p, jitter, attempt, u)
	}
)

const MaxIdleWait = maxIdleWait
