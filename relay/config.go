package relay

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/fitiqcore/outbox"
)

// Config tunes a Relay. The zero value works: a zero field stands for its
// default.
type Config struct {
	BatchSize    int                // events read and published per round (default 1000)
	MaxInFlight  int                // publishes awaiting an ack (default 4096)
	Retry        outbox.RetryPolicy // default backoff: outbox.DefaultRetryPolicy (1s, ×5, at most 10m)
	Jitter       float64            // spread of the backoff, in [0,1) (default outbox.DefaultJitter, 0.2)
	DrainTimeout time.Duration      // how long Run waits for in-flight acks at shutdown (default 10s)
	// DuplicateWindow is the stream's duplicate window (default
	// outbox.DefaultDuplicateWindow, 2m as JetStream's; from
	// outbox.MinDuplicateWindow to outbox.MaxDuplicateWindow). A publish whose
	// outcome is unknown is sent again no later than half of it after the
	// send, so that JetStream answers the re-send for sure (a duplicate ack
	// when it holds the event); later re-sends are preceded by a read-back.
	DuplicateWindow time.Duration
	// DisableReconcile skips reading the stream back, at start and before
	// re-sending an unknown outcome past the duplicate window. Without the
	// read-back, a publish whose ack was lost (in a crash, in a long outage)
	// and that is sent again after the stream's duplicate window is in the
	// stream twice.
	DisableReconcile bool
	// ClockSkew widens the read-back of a store file written by an older
	// build, whose mark is a time by this host's clock, to cover a
	// difference with the NATS servers' clocks (default 2s). The relay's own
	// mark is a stream sequence, which no clock affects.
	ClockSkew time.Duration
	Logger    *slog.Logger // default: discard
	Observer  Observer     // default: none
	// TracerProvider, when set, gives every publish attempt a span in the
	// trace of the request that wrote the event (see the package doc,
	// Tracing). Nil: no spans, and nothing spent on them.
	TracerProvider trace.TracerProvider
	Now            func() time.Time
}

// The relay's defaults, for the fields whose zero value stands for them.
const (
	DefaultBatchSize    = 1000
	DefaultMaxInFlight  = 4096
	DefaultDrainTimeout = 10 * time.Second
	// DefaultDuplicateWindow is JetStream's default duplicate window:
	// outbox.DefaultDuplicateWindow.
	DefaultDuplicateWindow = outbox.DefaultDuplicateWindow
	DefaultClockSkew       = 2 * time.Second
)

// DefaultRetry is the relay's default backoff: outbox.DefaultRetryPolicy.
var DefaultRetry = outbox.DefaultRetryPolicy

// ErrInvalidConfig is wrapped by every error of Config.Validate.
var ErrInvalidConfig = errors.New("relay: invalid config")

func (c *Config) setDefaults() {
	if c.BatchSize <= 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.Retry == (outbox.RetryPolicy{}) {
		c.Retry = DefaultRetry
	}
	if c.Jitter == 0 {
		c.Jitter = outbox.DefaultJitter
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = outbox.DefaultDuplicateWindow
	}
	if c.ClockSkew <= 0 {
		c.ClockSkew = DefaultClockSkew
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate checks c as New would use it, its zero fields standing for their
// defaults, and returns an *outbox.FieldError naming the first field it refuses.
// New calls it.
func (c *Config) Validate() error {
	d := *c
	d.setDefaults()
	bad := func(field, format string, args ...any) error {
		return &outbox.FieldError{Kind: ErrInvalidConfig, Field: field, Err: fmt.Errorf(format, args...)}
	}
	if err := d.Retry.Validate(); err != nil {
		return &outbox.FieldError{Kind: ErrInvalidConfig, Field: "Retry", Err: err}
	}
	if !(d.Jitter >= 0 && d.Jitter < 1) { // NaN fails too
		return bad("Jitter", "must be in [0,1), got %g", d.Jitter)
	}
	// The publisher holds the stream's window to the same bounds.
	if d.DuplicateWindow < outbox.MinDuplicateWindow || d.DuplicateWindow > outbox.MaxDuplicateWindow {
		return bad("DuplicateWindow", "must be from %s to %dh, got %s", outbox.MinDuplicateWindow, outbox.MaxDuplicateWindow/time.Hour, d.DuplicateWindow)
	}
	return nil
}
