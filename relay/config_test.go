package relay_test

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/relay"
)

func TestConfigDuplicateWindow(t *testing.T) {
	for _, tt := range []struct {
		window time.Duration
		ok     bool
	}{
		{0, true}, {100 * time.Millisecond, true}, {2 * time.Minute, true}, {outbox.MaxDuplicateWindow, true},
		{time.Millisecond, false}, {-time.Second, false}, {outbox.MaxDuplicateWindow + 1, false},
	} {
		_, err := relay.New(nil, nil, relay.Config{DuplicateWindow: tt.window})
		if (err == nil) != tt.ok {
			t.Errorf("duplicate window %s: %v", tt.window, err)
		}
	}
}

// TestConfigValidate: Validate checks a config as New uses it (a zero field
// stands for its default) and names the Go field it refuses, so that the
// daemon can name its own key.
func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name  string
		cfg   relay.Config
		field string // "" when valid
		msg   string
	}{
		{"the zero value", relay.Config{}, "", ""},
		{"every field set", relay.Config{BatchSize: 10, MaxInFlight: 10, Retry: outbox.RetryPolicy{InitialInterval: time.Second, MaxInterval: time.Minute, Multiplier: 2},
			Jitter: 0.5, DrainTimeout: time.Second, DuplicateWindow: time.Minute, ClockSkew: time.Second}, "", ""},
		{"jitter 1", relay.Config{Jitter: 1}, "Jitter", "relay: invalid config: Jitter: must be in [0,1), got 1"},
		{"jitter NaN", relay.Config{Jitter: math.NaN()}, "Jitter", "relay: invalid config: Jitter: must be in [0,1), got NaN"},
		{"negative jitter", relay.Config{Jitter: -0.1}, "Jitter", "relay: invalid config: Jitter: must be in [0,1), got -0.1"},
		{"duplicate window", relay.Config{DuplicateWindow: time.Millisecond}, "DuplicateWindow", "relay: invalid config: DuplicateWindow: must be from 100ms to 168h, got 1ms"},
		{"retry", relay.Config{Retry: outbox.RetryPolicy{InitialInterval: time.Second, MaxInterval: time.Millisecond, Multiplier: 2}}, "Retry", "relay: invalid config: Retry: invalid retry.max_interval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			_, newErr := relay.New(nil, nil, tt.cfg)
			if (err == nil) != (newErr == nil) {
				t.Errorf("Validate says %v, New %v", err, newErr)
			}
			if tt.field == "" {
				if err != nil {
					t.Errorf("Validate: %v", err)
				}
				return
			}
			var ce *outbox.FieldError
			if !errors.As(err, &ce) || ce.Field != tt.field || !errors.Is(err, relay.ErrInvalidConfig) || !strings.HasPrefix(err.Error(), tt.msg) {
				t.Errorf("Validate: %v, want a FieldError for %s: %q", err, tt.field, tt.msg)
			}
			if tt.field == "Retry" {
				var ve *outbox.ValidationError
				if !errors.As(err, &ve) || ve.Field != "retry.max_interval" {
					t.Errorf("Validate: %v, want outbox's *ValidationError inside", err)
				}
			}
		})
	}
}
