package relay_test

import (
	"math"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/relay"
)

// TestBackoffDistribution: Relay.Backoff spreads delays uniformly over the
// jitter band (as cenkalti/backoff did before it): mean at the base, both
// ends reached.
func TestBackoffDistribution(t *testing.T) {
	r, err := relay.New(nil, nil, relay.Config{Jitter: 0.2})
	if err != nil {
		t.Fatal(err)
	}
	e := &outbox.Event{Retry: &outbox.RetryPolicy{InitialInterval: 100 * time.Millisecond, MaxInterval: time.Second, Multiplier: 2}}
	const n = 20000
	base := 400 * time.Millisecond // attempt 3
	var sum float64
	lo, hi := time.Duration(math.MaxInt64), time.Duration(0)
	for range n {
		d := r.Backoff(e, 3)
		sum += float64(d)
		lo, hi = min(lo, d), max(hi, d)
	}
	if mean := sum / n; math.Abs(mean-float64(base)) > 0.01*float64(base) {
		t.Errorf("mean %s, want %s", time.Duration(mean), base)
	}
	if lo < 320*time.Millisecond || lo > 322*time.Millisecond || hi > 480*time.Millisecond || hi < 478*time.Millisecond {
		t.Errorf("range [%s, %s], want about [320ms, 480ms]", lo, hi)
	}
	// A policy outside the bounds (a file written before they existed)
	// falls back to the relay's.
	bad := &outbox.Event{Retry: &outbox.RetryPolicy{InitialInterval: 2200000 * time.Hour, MaxInterval: 2200000 * time.Hour, Multiplier: 5}}
	if d := r.Backoff(bad, 1); d < 800*time.Millisecond || d > 1200*time.Millisecond {
		t.Errorf("out-of-bounds policy: %s, want the relay's first interval 1s ±20%%", d)
	}
}

// TestIdleWait: the reader's sleep until the next event falls due is never
// negative and never longer than relay.MaxIdleWait (the store's times are
// wall-clock times, the timer is monotonic: a clock set forward must not
// hold events back for long).
func TestIdleWait(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		next time.Time
		want time.Duration
	}{
		{"in a second", now.Add(time.Second), time.Second},
		{"now", now, 0},
		{"in the past", now.Add(-time.Hour), 0},
		{"in 1693 (an overflowed time)", time.Date(1693, 1, 1, 0, 0, 0, 0, time.UTC), 0},
		{"in a week", now.Add(7 * 24 * time.Hour), relay.MaxIdleWait},
		{"in year 9999", time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), relay.MaxIdleWait},
	}
	for _, tt := range tests {
		if got := relay.IdleWait(now, tt.next); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
		}
	}
}
