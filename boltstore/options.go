package boltstore

import (
	"errors"
	"fmt"
	"time"

	"github.com/fitiqcore/outbox"
)

// Options tune a Store. The zero value works: a zero field takes its
// default (the Default constants below). Validate states the rules of the
// others; Open refuses options it does not accept.
type Options struct {
	// Timeout is how long Open waits for the file lock (default 2s).
	Timeout time.Duration
	// Event holds the defaults and limits applied to enqueued events: its
	// MaxPayload is 1..MaxPayloadLimit (0: outbox.DefaultPayload), its
	// MaxAttempts 1..outbox.MaxAttemptsLimit (0: outbox.DefaultMaxAttempts).
	Event outbox.Options
	// InitialMmapSize avoids remapping stalls while the file grows
	// (default 64 MiB; it reserves address space, not memory).
	InitialMmapSize int
	// Now is the clock (default time.Now); tests set it.
	Now func() time.Time

	// StaleAfter: a pending event created longer ago than this is stale
	// (default DefaultStaleAfter).
	StaleAfter time.Duration
	// Retention: RunRetention deletes completed events completed longer ago
	// than this. Zero means the default, DefaultRetention, unless
	// RemoveOnAck is set (then it deletes every completed event left);
	// negative keeps them forever.
	Retention time.Duration
	// RemoveOnAck (retention.completed = 0): Complete and MarkCompleted
	// delete the event instead of keeping it completed.
	RemoveOnAck bool
	// Admission high-water marks (0 = no limit): Enqueue and EnqueueTx
	// refuse new events with an error wrapping ErrOutboxFull while the
	// store holds MaxPending pending events or more (at most
	// MaxPendingLimit), MaxBytes bytes of records or more (at most
	// MaxBytesLimit), or a pending event older than MaxPendingAge (from 1s
	// to MaxAge).
	MaxPending    int64
	MaxBytes      int64
	MaxPendingAge time.Duration

	// IdempotencyWindow is how long the id of a removed event (by
	// retention, RemoveOnAck or an operator) is remembered: re-enqueueing it
	// within the window stores nothing, as for a stored one (default
	// DefaultIdempotencyWindow; keep it at least the stream's duplicate
	// window).
	IdempotencyWindow time.Duration
	// EntityHorizon is how long an entity is remembered once none of its
	// events is stored any more: past it the entity is forgotten and its
	// entity_seq starts again at 1 if it comes back (default
	// DefaultEntityHorizon; negative keeps every entity forever).
	EntityHorizon time.Duration

	// Fairness is how Due shares a priority among users: FairnessFIFO
	// (the default, "" too) or FairnessUser (fair.go).
	Fairness Fairness
}

func (o *Options) setDefaults() {
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.InitialMmapSize <= 0 {
		o.InitialMmapSize = 64 << 20
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.StaleAfter <= 0 {
		o.StaleAfter = DefaultStaleAfter
	}
	if o.Retention == 0 && !o.RemoveOnAck {
		o.Retention = DefaultRetention
	}
	if o.IdempotencyWindow <= 0 {
		o.IdempotencyWindow = DefaultIdempotencyWindow
	}
	if o.EntityHorizon == 0 {
		o.EntityHorizon = DefaultEntityHorizon
	}
	if o.Fairness == "" {
		o.Fairness = FairnessFIFO
	}
}

// Defaults of Options, and of RunRetention's interval.
const (
	DefaultStaleAfter = 5 * time.Minute
	DefaultRetention  = 24 * time.Hour

	DefaultIdempotencyWindow = 24 * time.Hour
	DefaultEntityHorizon     = 7 * 24 * time.Hour

	DefaultRetentionInterval = time.Minute
)

// The bounds Validate holds Options to.
const (
	// MaxPayloadLimit bounds Event.MaxPayload: the largest max_payload a
	// NATS server accepts (64 MiB), past which no event could be published.
	MaxPayloadLimit = 64 << 20
	// MaxPendingLimit and MaxBytesLimit bound the admission marks: a mark
	// beyond them is a typing error, not a limit.
	MaxPendingLimit = 1_000_000_000
	MaxBytesLimit   = 1 << 40 // 1 TiB
	// MaxAge bounds MaxPendingAge: an age past a year and a day is a typing
	// error.
	MaxAge = 366 * 24 * time.Hour
)

// ErrInvalidOptions wraps the error of Options that Validate (and Open)
// refuse.
var ErrInvalidOptions = errors.New("boltstore: invalid options")

// Validate checks the options as Open would use them (zero fields take
// their defaults), and is the one owner of these rules: a caller that takes
// them from elsewhere (the daemon's configuration file) calls it rather than
// restating them. The error is an *outbox.FieldError wrapping
// ErrInvalidOptions and naming the Go field ("boltstore: invalid options:
// MaxPending: ..."). The durations other than MaxPendingAge have a meaning
// for every value (see each field) and no rule here.
func (o *Options) Validate() error {
	d := *o
	d.setDefaults()
	return d.validate()
}

func (o *Options) validate() error {
	bad := func(field, format string, args ...any) error {
		return &outbox.FieldError{Kind: ErrInvalidOptions, Field: field, Err: fmt.Errorf(format, args...)}
	}
	switch e := o.Event; {
	case e.MaxPayload < 0 || e.MaxPayload > MaxPayloadLimit:
		return bad("Event.MaxPayload", "must be 1..%d bytes, got %d", MaxPayloadLimit, e.MaxPayload)
	case e.MaxAttempts < 0 || e.MaxAttempts > outbox.MaxAttemptsLimit:
		// An event that sets no max_attempts takes this one: past the
		// limit every such event would be refused.
		return bad("Event.MaxAttempts", "must be 1..%d, got %d", outbox.MaxAttemptsLimit, e.MaxAttempts)
	case o.MaxPending < 0 || o.MaxPending > MaxPendingLimit:
		return bad("MaxPending", "must be 0 (no limit) up to %d, got %d", MaxPendingLimit, o.MaxPending)
	case o.MaxBytes < 0 || o.MaxBytes > MaxBytesLimit:
		return bad("MaxBytes", "must be 0 (no limit) up to %d (1 TiB), got %d", int64(MaxBytesLimit), o.MaxBytes)
	case o.Fairness != FairnessFIFO && o.Fairness != FairnessUser:
		return bad("Fairness", "must be %s or %s, got %q", FairnessFIFO, FairnessUser, o.Fairness)
	case o.MaxPendingAge != 0 && (o.MaxPendingAge < time.Second || o.MaxPendingAge > MaxAge):
		return bad("MaxPendingAge", "must be 0s (no limit) or from 1s to %dh, got %s", MaxAge/time.Hour, o.MaxPendingAge)
	}
	return nil
}
