package relay

import (
	"time"
)

// SetSweep shortens the sweep of unknown outcomes for a test; call it before
// Run.
func SetSweep(r *Relay, every, age time.Duration) { r.sweepEvery, r.sweepAge = every, age }

// IdleWait is idleWait, MaxIdleWait maxIdleWait.
var IdleWait = idleWait

const MaxIdleWait = maxIdleWait
