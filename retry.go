package outbox

import (
	"encoding/json"
	"fmt"
	"math"
	"time"
)

// RetryPolicy is an exponential backoff: the n-th retry waits
// InitialInterval * Multiplier^(n-1), at most MaxInterval, spread by a jitter
// (Delay). It is the one backoff of the project: the relay's between publish
// attempts, and the handlers' between deliveries to a failing handler. An
// event may carry its own policy; the relay's configured one applies
// otherwise, and travels in the headers of the events that carry none.
type RetryPolicy struct {
	InitialInterval time.Duration `json:"initial_interval"`
	MaxInterval     time.Duration `json:"max_interval"`
	Multiplier      float64       `json:"multiplier"`
}

type retryPolicyJSON struct {
	InitialInterval string  `json:"initial_interval"`
	MaxInterval     string  `json:"max_interval"`
	Multiplier      float64 `json:"multiplier"`
}

// MarshalJSON writes the intervals as Go duration strings ("1s", "10m0s").
func (p RetryPolicy) MarshalJSON() ([]byte, error) {
	return json.Marshal(retryPolicyJSON{p.InitialInterval.String(), p.MaxInterval.String(), p.Multiplier})
}

// UnmarshalJSON reads the intervals as Go duration strings ("1s", "10m").
func (p *RetryPolicy) UnmarshalJSON(b []byte) error {
	var j retryPolicyJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	var err error
	if p.InitialInterval, err = time.ParseDuration(j.InitialInterval); err != nil {
		return invalid("retry.initial_interval", "not a duration: %q", j.InitialInterval)
	}
	if p.MaxInterval, err = time.ParseDuration(j.MaxInterval); err != nil {
		return invalid("retry.max_interval", "not a duration: %q", j.MaxInterval)
	}
	p.Multiplier = j.Multiplier
	return nil
}

// Validate checks that the policy makes sense and that every backoff it
// gives can be computed with: intervals up to MaxRetryInterval, a multiplier
// from 1 to MaxRetryMultiplier. It is the one owner of these rules: the
// daemon's retry configuration and the handlers' policies call it too.
func (p RetryPolicy) Validate() error {
	switch {
	case p.InitialInterval <= 0 || p.InitialInterval > MaxRetryInterval:
		return invalid("retry.initial_interval", "must be positive and at most %s, got %s", fmtDuration(MaxRetryInterval), p.InitialInterval)
	case p.MaxInterval < p.InitialInterval || p.MaxInterval > MaxRetryInterval:
		return invalid("retry.max_interval", "must be from initial_interval (%s) to %s, got %s", p.InitialInterval, fmtDuration(MaxRetryInterval), p.MaxInterval)
	case !(p.Multiplier >= 1 && p.Multiplier <= MaxRetryMultiplier): // NaN fails too
		return invalid("retry.multiplier", "must be from 1 to %d, got %g", MaxRetryMultiplier, p.Multiplier)
	}
	return nil
}

// fmtDuration writes whole hours as "168h" rather than "168h0m0s".
func fmtDuration(d time.Duration) string {
	if d%time.Hour == 0 {
		return fmt.Sprintf("%dh", d/time.Hour)
	}
	return d.String()
}

// DefaultRetryPolicy is close to FitIQ's 1s, 5s, 30s, 120s, 600s: the relay's
// default, and the handlers' for events that carry no policy.
var DefaultRetryPolicy = RetryPolicy{InitialInterval: time.Second, MaxInterval: 10 * time.Minute, Multiplier: 5}

// DefaultJitter is the default spread of a delay: ±20%, so that events that
// fail together do not come back together.
const DefaultJitter = 0.2

// Delay is the wait after the attempt-th failed attempt (attempt >= 1; less
// counts as 1): InitialInterval × Multiplier^(attempt-1), at most
// MaxInterval, then spread uniformly over ±jitter (0 <= jitter < 1), u in
// [0, 1) choosing where (pass rand.Float64()). It takes O(1) whatever the
// attempt, and is never negative nor above MaxInterval × (1+jitter) for a
// policy that Validate accepts. It is the distribution of
// github.com/cenkalti/backoff/v4's ExponentialBackOff with
// RandomizationFactor jitter (the tests hold it to it), without its O(n)
// walk through the attempts.
func (p RetryPolicy) Delay(attempt int, jitter, u float64) time.Duration {
	d := float64(p.MaxInterval)
	if g := float64(p.InitialInterval) * math.Pow(p.Multiplier, float64(max(attempt, 1)-1)); g < d {
		d = g // +Inf and NaN compare false: the cap holds
	}
	return time.Duration(d * (1 - jitter + 2*jitter*u))
}
