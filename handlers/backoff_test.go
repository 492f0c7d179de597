package handlers_test

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/fitiqcore/outbox/internal/poll"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/handlers"
)

// TestRetryDelayStaysInBounds: whatever retry policy an event's headers carry
// (a foreign publisher's, or one from before outbox bounded them), the delay
// of a Nak is positive and at most outbox.MaxRetryInterval plus the jitter; a
// policy that outbox.RetryPolicy.Validate refuses is replaced by the Router's.
func TestRetryDelayStaysInBounds(t *testing.T) {
	def := outbox.RetryPolicy{InitialInterval: time.Second, MaxInterval: time.Minute, Multiplier: 2}
	week := outbox.MaxRetryInterval
	for _, tc := range []struct {
		name  string
		retry *outbox.RetryPolicy
		own   bool // the event's policy applies (else the Router's)
	}{
		{name: "none", retry: nil},
		{name: "valid", retry: &outbox.RetryPolicy{InitialInterval: 10 * time.Millisecond, MaxInterval: time.Second, Multiplier: 3}, own: true},
		{name: "at the bounds", retry: &outbox.RetryPolicy{InitialInterval: week, MaxInterval: week, Multiplier: outbox.MaxRetryMultiplier}, own: true},
		{name: "interval past year 2262", retry: &outbox.RetryPolicy{InitialInterval: 2200000 * time.Hour, MaxInterval: 2200000 * time.Hour, Multiplier: 2}},
		{name: "max interval past the bound", retry: &outbox.RetryPolicy{InitialInterval: time.Second, MaxInterval: week + 1, Multiplier: 2}},
		{name: "negative interval", retry: &outbox.RetryPolicy{InitialInterval: -time.Second, MaxInterval: time.Second, Multiplier: 2}},
		{name: "max below initial", retry: &outbox.RetryPolicy{InitialInterval: time.Minute, MaxInterval: time.Second, Multiplier: 2}},
		{name: "NaN multiplier", retry: &outbox.RetryPolicy{InitialInterval: time.Second, MaxInterval: time.Minute, Multiplier: math.NaN()}},
		{name: "infinite multiplier", retry: &outbox.RetryPolicy{InitialInterval: time.Second, MaxInterval: time.Minute, Multiplier: math.Inf(1)}},
		{name: "shrinking multiplier", retry: &outbox.RetryPolicy{InitialInterval: time.Second, MaxInterval: time.Minute, Multiplier: 0.5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &outbox.Event{Retry: tc.retry}
			want := def
			if tc.own {
				want = *tc.retry
			}
			// The relay's backoff (outbox.RetryPolicy.Delay): spread by
			// ±outbox.DefaultJitter around the exponential value.
			spread := func(d time.Duration, f float64) time.Duration { return time.Duration(float64(d) * f) }
			hi := spread(min(want.MaxInterval, outbox.MaxRetryInterval), 1+outbox.DefaultJitter)
			for _, n := range []uint64{0, 1, 2, 10, 64, 1000, 1 << 40, math.MaxUint64} {
				d := handlers.RetryDelay(e, def, n)
				if d <= 0 || d > hi {
					t.Errorf("delivery %d: delay %s, want in (0, %s]", n, d, hi)
				}
				if lo, hi := spread(want.InitialInterval, 1-outbox.DefaultJitter), spread(want.InitialInterval, 1+outbox.DefaultJitter); n <= 1 && (d < lo || d > hi) {
					t.Errorf("delivery %d: delay %s, want the initial interval %s ±20%%", n, d, want.InitialInterval)
				}
			}
		})
	}
}

// TestMaxAttemptsStaysInBounds: an event's max_attempts is the one its
// headers carry only within outbox's bounds (1 to outbox.MaxAttemptsLimit):
// a foreign ce-maxattempts of a million does not retry an event for years.
func TestMaxAttemptsStaysInBounds(t *testing.T) {
	for _, tc := range []struct{ header, want int }{
		{0, 7}, {-1, 7}, {1, 1}, {outbox.MaxAttemptsLimit, outbox.MaxAttemptsLimit},
		{outbox.MaxAttemptsLimit + 1, 7}, {math.MaxInt, 7},
	} {
		if got := handlers.MaxAttempts(&outbox.Event{MaxAttempts: tc.header}, 7); got != tc.want {
			t.Errorf("ce-maxattempts %d: max attempts %d, want %d", tc.header, got, tc.want)
		}
	}
	if got := handlers.MaxAttempts(nil, 7); got != 7 {
		t.Errorf("no event: %d, want 7", got)
	}
}

// TestRouterPolicyValidated: the Router's own policy and max_attempts are
// held to outbox's bounds, DefaultRetryPolicy included (an exported variable
// an application may have changed), so that no Nak delay is out of range.
func TestRouterPolicyValidated(t *testing.T) {
	v := newEnv(t, false)
	for _, tc := range []struct {
		name    string
		opts    []handlers.Option
		dflt    *outbox.RetryPolicy // replaces DefaultRetryPolicy for the case
		wantErr error
	}{
		{name: "defaults"},
		{name: "policy past the bound", opts: []handlers.Option{handlers.WithRetryPolicy(outbox.RetryPolicy{InitialInterval: time.Second, MaxInterval: 2200000 * time.Hour, Multiplier: 2})}, wantErr: handlers.ErrInvalidOption},
		{name: "max attempts past the bound", opts: []handlers.Option{handlers.WithMaxAttempts(outbox.MaxAttemptsLimit + 1)}, wantErr: handlers.ErrInvalidOption},
		{name: "max attempts at the bound", opts: []handlers.Option{handlers.WithMaxAttempts(outbox.MaxAttemptsLimit)}},
		{name: "DefaultRetryPolicy changed to an invalid one", dflt: &outbox.RetryPolicy{InitialInterval: -time.Second, MaxInterval: time.Second, Multiplier: 2}, wantErr: handlers.ErrInvalidOption},
		{name: "DefaultRetryPolicy changed, overridden by WithRetryPolicy", dflt: &outbox.RetryPolicy{InitialInterval: -time.Second, MaxInterval: time.Second, Multiplier: 2},
			opts: []handlers.Option{handlers.WithRetryPolicy(outbox.RetryPolicy{InitialInterval: time.Second, MaxInterval: time.Minute, Multiplier: 2})}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.dflt != nil {
				saved := handlers.DefaultRetryPolicy
				handlers.DefaultRetryPolicy = *tc.dflt
				t.Cleanup(func() { handlers.DefaultRetryPolicy = saved })
			}
			_, err := handlers.NewRouter(v.js, stream, "svc", tc.opts...)
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("NewRouter: %v, want %v", err, tc.wantErr)
			}
		})
	}
}

// TestForeignHeaderBoundsEndToEnd: an event whose headers carry a retry
// policy and max_attempts outside outbox's bounds, as a foreign publisher may
// send them, is retried on the Router's policy and dead-lettered at the
// Router's max_attempts.
func TestForeignHeaderBoundsEndToEnd(t *testing.T) {
	v := newEnv(t, false)
	e := event(t, "mood.logged", "user-1", 1)
	msg := e.Message(prefix, "", 1, nil)
	msg.Header.Set(outbox.HeaderRetryInitial, "2200000h")
	msg.Header.Set(outbox.HeaderRetryMax, "2200000h")
	msg.Header.Set(outbox.HeaderRetryMultiply, "2")
	msg.Header.Set(outbox.HeaderMaxAttempts, "1000000")
	if _, err := v.js.PublishMsg(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	var c calls
	r := v.router("bounds", handlers.WithMaxAttempts(3),
		handlers.WithRetryPolicy(outbox.RetryPolicy{InitialInterval: 20 * time.Millisecond, MaxInterval: 50 * time.Millisecond, Multiplier: 2}))
	r.HandleFunc("mood.logged", func(ctx context.Context, e *outbox.Event) error {
		c.add(e)
		return errBoom
	})
	v.start(r, "bounds")
	if !poll.Within(10*time.Second, func() bool { return v.dlqCount() == 1 }) {
		t.Fatalf("no dead letter after 10s; the handler ran %d times", c.n())
	}
	v.settled("bounds", 5*time.Second)
	if n := c.n(); n != 3 {
		t.Errorf("handler ran %d times, want the Router's max_attempts 3", n)
	}
	if h := v.deadLetters()[0].Header; h.Get(handlers.HeaderDLQReason) != "max_attempts" || h.Get(handlers.HeaderDLQDeliveries) != "3" {
		t.Errorf("dead letter headers %v", h)
	}
}
