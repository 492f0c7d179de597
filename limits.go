package outbox

import (
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// The bounds of an event, each checked in one place (Validate and
// RetryPolicy.Validate) and shared by every layer that needs them: the store,
// the HTTP edge, the daemon's config and the subscribers.
const (
	MaxTypeLen        = 128
	MaxIDFieldLen     = 256 // entity_id and user_id, in bytes
	MaxContentTypeLen = 256 // content_type, in bytes
	// MaxMetadataLen bounds metadata, compacted, in bytes: it travels in one
	// header, and JetStream refuses a header block over 65,535 bytes (error
	// 10097), which the dead letter of the event must fit in too.
	MaxMetadataLen = 32 << 10
	MaxSourceLen   = 256 // ce-source, in bytes (the publisher's configuration)
	MaxPriority    = 9
	DefaultPayload = 1 << 20 // default payload limit: 1 MiB
	MaxErrorLen    = 4096    // last_error, in bytes (TruncateError)
	// DefaultMaxAttempts is the max_attempts of an event that sets none
	// (Options.MaxAttempts when zero).
	DefaultMaxAttempts = 5
	// MaxNameLen bounds a stream or consumer name (ValidateName): JetStream's
	// own limit.
	MaxNameLen = 255

	// MaxRetryInterval bounds a retry policy's intervals: a week. With it
	// every backoff (doubled at most by jitter) lands within years the
	// store's nanosecond times can hold.
	MaxRetryInterval = 7 * 24 * time.Hour
	// MaxRetryMultiplier bounds a retry policy's growth factor.
	MaxRetryMultiplier = 100

	// MaxClockAhead is how far in the future a client's created_at may lie
	// (a device with a fast clock); MinCreatedAt is the earliest accepted.
	MaxClockAhead = 24 * time.Hour

	// MaxDeliverAhead bounds deliver_at: a year and a day ahead of the
	// store's clock.
	MaxDeliverAhead = 366 * 24 * time.Hour
	// MaxTraceStateLen bounds tracestate: W3C asks to propagate at least
	// 512 bytes, and it travels in a header.
	MaxTraceStateLen = 512
)

// The stream's duplicate window: JetStream de-duplicates a message id
// published again within it. The publisher creates the stream with it and
// the relay times its re-sends of unknown outcomes by it, so both hold it to
// these bounds.
const (
	DefaultDuplicateWindow = 2 * time.Minute        // JetStream's default
	MinDuplicateWindow     = 100 * time.Millisecond // JetStream's shortest
	// MaxDuplicateWindow bounds the ids JetStream holds in memory, and
	// keeps the relay's re-send at half of it a backoff it can compute.
	MaxDuplicateWindow = MaxRetryInterval
)

// MinCreatedAt is the earliest created_at an event may carry.
var MinCreatedAt = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// The broker's message limit. NATS counts headers and payload together
// against its max_payload; an event whose message would exceed it can never be
// published, so Validate refuses it (Options.MaxMessage).
const (
	// DefaultMaxMessage is NATS's default max_payload (1 MiB): the limit
	// assumed until the broker has told its own.
	DefaultMaxMessage = 1 << 20
	// HeaderAllowance bounds the bytes of an event's headers that do not
	// depend on its own fields: names, separators, ce-specversion, ce-source
	// (at most MaxSourceLen), ce-time, the numbers, the retry policy, the
	// ids. WireSize adds the event's own variable fields to it.
	HeaderAllowance = 1024
	// DeadLetterReserve is the room kept free under the broker's limit for
	// what a subscriber adds when it dead-letters an event (the handlers
	// package: the error text and its Outbox-DLQ-* headers), so that every
	// event that can be published can also be dead-lettered.
	DeadLetterReserve = 8 << 10
)

// MaxHeaderBlock is the largest header block JetStream stores (error 10097
// beyond it). The fields Validate bounds keep an event's block well under it,
// with room for a dead letter's headers.
const MaxHeaderBlock = 65535

// WireSize is an upper bound of the bytes that NATS counts against its
// max_payload for e's message: the payload plus the header block.
func (e *Event) WireSize() int {
	return len(e.Payload) + HeaderAllowance +
		2*len(e.ID) + len(e.Type) + len(e.EntityID) + len(e.UserID) + len(e.Metadata) + len(e.ContentType) +
		len(e.TraceParent) + len(e.TraceState)
}

// MessageLimit is the most WireSize an event may have on a broker whose
// max_payload is brokerMax: brokerMax less DeadLetterReserve.
func MessageLimit(brokerMax int64) int {
	if brokerMax <= DeadLetterReserve {
		return 0
	}
	return int(brokerMax - DeadLetterReserve)
}

// ValidateIdentifier checks a free-form identifier (entity_id, user_id) that
// travels in a NATS header: valid UTF-8 of at most MaxIDFieldLen bytes, no
// control characters, no white space at either end (NATS trims header values,
// so " a" and "a" would reach subscribers as one). field names it in the
// error.
func ValidateIdentifier(field, v string) error {
	if len(v) > MaxIDFieldLen {
		return invalid(field, "%d bytes, at most %d", len(v), MaxIDFieldLen)
	}
	if !utf8.ValidString(v) {
		return invalid(field, "not valid UTF-8")
	}
	for _, r := range v {
		if unicode.IsControl(r) {
			return invalid(field, "control character %U not allowed", r)
		}
	}
	if t := strings.TrimFunc(v, unicode.IsSpace); t != v {
		return invalid(field, "white space at the start or end of %q (NATS would trim it)", v)
	}
	return nil
}

// validateContentType checks content_type: printable ASCII of at most
// MaxContentTypeLen bytes with no white space at either end, so that the
// content-type header carries it unchanged.
func validateContentType(ct string) error {
	if len(ct) > MaxContentTypeLen {
		return invalid("content_type", "%d bytes, at most %d", len(ct), MaxContentTypeLen)
	}
	for i := 0; i < len(ct); i++ {
		if c := ct[i]; c < 0x20 || c > 0x7e {
			return invalid("content_type", "byte %#02x not allowed (printable ASCII only)", c)
		}
	}
	if strings.TrimSpace(ct) != ct {
		return invalid("content_type", "white space at the start or end of %q", ct)
	}
	return nil
}

// ValidateSource checks a ce-source value (the publisher's configuration):
// printable ASCII, at most MaxSourceLen bytes, no white space at either end.
func ValidateSource(s string) error {
	if s == "" {
		return invalid("source", "required")
	}
	if len(s) > MaxSourceLen {
		return invalid("source", "%d bytes, at most %d", len(s), MaxSourceLen)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= 0x20 || c > 0x7e {
			return invalid("source", "byte %#02x not allowed (printable ASCII without spaces)", c)
		}
	}
	return nil
}

// ValidateName checks the name of a JetStream stream or durable consumer,
// as the server does: 1 to MaxNameLen bytes, without white space, dots,
// wildcards (* and >) or slashes. It is the one check of such names: the
// publisher's stream, the handlers' stream and durable, and the daemon's
// stream.name all call it. field names the value in the error, a
// *ValidationError as ValidateSource returns.
func ValidateName(field, name string) error {
	switch {
	case name == "":
		return invalid(field, "required")
	case len(name) > MaxNameLen:
		return invalid(field, "%d bytes, at most %d", len(name), MaxNameLen)
	case strings.ContainsAny(name, " \t\r\n\f.*>/\\"):
		return invalid(field, "%q must have no spaces, dots, wildcards or slashes", name)
	}
	return nil
}

// validateCreatedAt checks a created_at the application set: from
// MinCreatedAt to MaxClockAhead past now.
func validateCreatedAt(t, now time.Time) error {
	if t.IsZero() {
		return nil
	}
	if t.Before(MinCreatedAt) {
		return invalid("created_at", "%s is before %s", t.UTC().Format(time.RFC3339Nano), MinCreatedAt.Format(time.RFC3339))
	}
	if t.After(now.Add(MaxClockAhead)) {
		return invalid("created_at", "%s is more than %s ahead of this host's clock", t.UTC().Format(time.RFC3339Nano), MaxClockAhead)
	}
	return nil
}

// validateDeliverAt checks a deliver_at: at most MaxDeliverAhead past now
// (a time past means now).
func validateDeliverAt(t, now time.Time) error {
	if !t.IsZero() && t.After(now.Add(MaxDeliverAhead)) {
		return invalid("deliver_at", "%s is more than %dh (366 days) ahead", t.UTC().Format(time.RFC3339Nano), MaxDeliverAhead/time.Hour)
	}
	return nil
}
