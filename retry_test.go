package outbox_test

import (
	"math"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/fitiqcore/outbox"
)

// TestDelay: the delay after the n-th failed attempt is InitialInterval ×
// Multiplier^(n-1) capped at MaxInterval, spread by ±jitter; computed in
// constant time however many attempts (an event that never fails for its
// attempts, issue 9, can reach any count), never negative, never above
// MaxInterval × (1+jitter).
func TestDelay(t *testing.T) {
	week := outbox.MaxRetryInterval
	def := outbox.DefaultRetryPolicy
	tests := []struct {
		name    string
		p       outbox.RetryPolicy
		attempt int
		base    time.Duration // before jitter
	}{
		{"first", def, 1, time.Second},
		{"second", def, 2, 5 * time.Second},
		{"fourth", def, 4, 125 * time.Second},
		{"capped", def, 5, 10 * time.Minute},
		{"attempt 0 counts as the first", def, 0, time.Second},
		{"negative attempt", def, -3, time.Second},
		{"multiplier 1", outbox.RetryPolicy{InitialInterval: time.Minute, MaxInterval: time.Hour, Multiplier: 1}, 1000, time.Minute},
		{"largest policy, huge attempt", outbox.RetryPolicy{InitialInterval: week, MaxInterval: week, Multiplier: outbox.MaxRetryMultiplier}, math.MaxInt, week},
		{"growth past float range", outbox.RetryPolicy{InitialInterval: time.Nanosecond, MaxInterval: week, Multiplier: outbox.MaxRetryMultiplier}, 1 << 40, week},
		{"just under the cap", outbox.RetryPolicy{InitialInterval: time.Second, MaxInterval: 1025 * time.Second, Multiplier: 2}, 11, 1024 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, jitter := range []float64{0, 0.2, 0.99} {
				lo, hi := float64(tt.base)*(1-jitter), float64(tt.base)*(1+jitter)
				for _, u := range []float64{0, 0.5, math.Nextafter(1, 0)} {
					d := tt.p.Delay(tt.attempt, jitter, u)
					if d < 0 || float64(d) < lo-1 || float64(d) > hi+1 || float64(d) > float64(tt.p.MaxInterval)*(1+jitter)+1 {
						t.Errorf("jitter %g, u %g: %s, want within [%s, %s]", jitter, u, d, time.Duration(lo), time.Duration(hi))
					}
				}
			}
			if d := tt.p.Delay(tt.attempt, 0.2, 0.5); d != tt.base {
				t.Errorf("middle of the jitter band: %s, want %s", d, tt.base)
			}
		})
	}
}

// TestDelayIsCenkaltis: Delay has the distribution of cenkalti/backoff's
// ExponentialBackOff with RandomizationFactor jitter, attempt for attempt:
// its band's middle is cenkalti's interval without jitter, and every one of
// cenkalti's jittered delays lies inside its band. (cenkalti walks through
// the attempts; Delay computes the n-th at once.)
func TestDelayIsCenkaltis(t *testing.T) {
	for _, p := range []outbox.RetryPolicy{
		outbox.DefaultRetryPolicy,
		{InitialInterval: 100 * time.Millisecond, MaxInterval: time.Minute, Multiplier: 2},
		{InitialInterval: time.Second, MaxInterval: time.Hour, Multiplier: 1.5},
	} {
		exact := cenkalti(p, 0)
		jittered := cenkalti(p, outbox.DefaultJitter)
		for attempt := 1; attempt <= 30; attempt++ {
			want := exact.NextBackOff()
			if got := p.Delay(attempt, outbox.DefaultJitter, 0.5); absDur(got-want) > time.Microsecond {
				t.Errorf("%+v attempt %d: middle %s, cenkalti %s", p, attempt, got, want)
			}
			lo, hi := p.Delay(attempt, outbox.DefaultJitter, 0), p.Delay(attempt, outbox.DefaultJitter, math.Nextafter(1, 0))
			if d := jittered.NextBackOff(); d < lo-time.Microsecond || d > hi+time.Microsecond {
				t.Errorf("%+v attempt %d: cenkalti's %s outside [%s, %s]", p, attempt, d, lo, hi)
			}
		}
	}
}

func cenkalti(p outbox.RetryPolicy, jitter float64) *backoff.ExponentialBackOff {
	b := &backoff.ExponentialBackOff{
		InitialInterval: p.InitialInterval, RandomizationFactor: jitter, Multiplier: p.Multiplier,
		MaxInterval: p.MaxInterval, Stop: backoff.Stop, Clock: backoff.SystemClock,
	}
	b.Reset()
	return b
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
