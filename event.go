package outbox

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Status is where an event stands in its lifecycle.
type Status string

// The statuses of an event. Pending events wait to be published (now, after a
// backoff, or behind an earlier event of their entity); processing is set only
// through the library's MarkProcessing (the relay tracks its in-flight
// publishes in memory and reports them as processing); completed events were
// acked by JetStream; failed events used up their attempts and stay for
// inspection.
const (
	StatusPending    Status = "pending"
	StatusProcessing Status = "processing"
	StatusCompleted  Status = "completed"
	StatusFailed     Status = "failed"
)

// Valid reports whether s is one of the four statuses.
func (s Status) Valid() bool {
	switch s {
	case StatusPending, StatusProcessing, StatusCompleted, StatusFailed:
		return true
	}
	return false
}

// Content types the HTTP edge and the JSON form use by default.
const (
	ContentTypeJSON   = "application/json"
	ContentTypeBinary = "application/octet-stream"
)

// Limits of an event, enforced by Validate.
const (
	MaxTypeLen     = 128
	MaxIDFieldLen  = 256 // entity_id and user_id, in bytes
	MaxPriority    = 9
	DefaultPayload = 1 << 20 // default payload limit: 1 MiB
	maxErrorLen    = 4096
)

// RetryPolicy is an exponential backoff: the n-th retry waits
// InitialInterval * Multiplier^(n-1), at most MaxInterval. Jitter is not part
// of the policy but of whoever applies it: the relay randomizes each wait by
// ±retry.jitter (default 20%); the handlers package adds 0–10% on top. An
// event may carry its own policy; the relay's configured one applies otherwise.
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

// Validate checks that the policy makes sense.
func (p RetryPolicy) Validate() error {
	switch {
	case p.InitialInterval <= 0:
		return invalid("retry.initial_interval", "must be positive, got %s", p.InitialInterval)
	case p.MaxInterval < p.InitialInterval:
		return invalid("retry.max_interval", "must be at least initial_interval (%s), got %s", p.InitialInterval, p.MaxInterval)
	case p.Multiplier < 1:
		return invalid("retry.multiplier", "must be at least 1, got %g", p.Multiplier)
	}
	return nil
}

// Event is one change that must reach the backend. The fields up to Payload
// are chosen by the application; the store assigns Seq, EntitySeq, Status and
// CreatedAt, and the relay keeps the attempt fields.
type Event struct {
	ID          string          `json:"id"`
	Type        string          `json:"type"`
	EntityID    string          `json:"entity_id"`
	UserID      string          `json:"user_id"`
	Priority    int             `json:"priority"`
	IsNewRecord bool            `json:"is_new_record"`
	MaxAttempts int             `json:"max_attempts"`
	Metadata    json.RawMessage `json:"metadata,omitempty"` // a JSON object
	Payload     []byte          `json:"-"`                  // see MarshalJSON
	ContentType string          `json:"content_type"`
	Retry       *RetryPolicy    `json:"retry,omitempty"`

	Status        Status    `json:"status"`
	EntitySeq     uint64    `json:"entity_seq"` // 1, 2, 3, ... per entity_id; 0 without one
	Seq           uint64    `json:"seq"`        // the store's global sequence
	CreatedAt     time.Time `json:"created_at"`
	LastAttemptAt time.Time `json:"last_attempt_at,omitzero"`
	NextAttemptAt time.Time `json:"next_attempt_at,omitzero"`
	CompletedAt   time.Time `json:"completed_at,omitzero"`
	AttemptCount  int       `json:"attempt_count"`
	LastError     string    `json:"last_error,omitempty"`
}

// Options are the defaults and limits that Prepare and Validate apply.
type Options struct {
	MaxAttempts int // default max_attempts; 5 when zero
	MaxPayload  int // payload limit in bytes; DefaultPayload when zero
}

func (o Options) maxAttempts() int {
	if o.MaxAttempts > 0 {
		return o.MaxAttempts
	}
	return 5
}

func (o Options) maxPayload() int {
	if o.MaxPayload > 0 {
		return o.MaxPayload
	}
	return DefaultPayload
}

// Prepare fills what the caller left out (a UUIDv7 id, max_attempts, content
// type) and validates the event. It is called by the store before enqueueing.
func (e *Event) Prepare(o Options) error {
	if e.ID == "" {
		id, err := uuid.NewV7()
		if err != nil {
			return fmt.Errorf("outbox: new id: %w", err)
		}
		e.ID = id.String()
	}
	if e.MaxAttempts == 0 {
		e.MaxAttempts = o.maxAttempts()
	}
	if e.ContentType == "" {
		e.ContentType = ContentTypeBinary
	}
	return e.Validate(o)
}

// Validate checks the fields an application sets, naming the first bad one.
// A valid id is rewritten in canonical form.
func (e *Event) Validate(o Options) error {
	if e.ID != "" {
		u, err := uuid.Parse(e.ID)
		if err != nil {
			return invalid("id", "not a UUID: %q", e.ID)
		}
		e.ID = u.String()
	}
	if err := ValidateType(e.Type); err != nil {
		return err
	}
	if err := validateOpaque("entity_id", e.EntityID); err != nil {
		return err
	}
	if err := validateOpaque("user_id", e.UserID); err != nil {
		return err
	}
	if e.Priority < 0 || e.Priority > MaxPriority {
		return invalid("priority", "must be 0..%d, got %d", MaxPriority, e.Priority)
	}
	if e.MaxAttempts < 1 {
		return invalid("max_attempts", "must be at least 1, got %d", e.MaxAttempts)
	}
	if m := bytes.TrimSpace(e.Metadata); len(m) == 0 || bytes.Equal(m, []byte("null")) {
		e.Metadata = nil // absent
	}
	if len(e.Metadata) > 0 {
		m := bytes.TrimSpace(e.Metadata)
		if len(m) == 0 || m[0] != '{' || !json.Valid(m) {
			return invalid("metadata", "must be a JSON object")
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, m); err != nil {
			return invalid("metadata", "must be a JSON object")
		}
		e.Metadata = buf.Bytes() // one line: it travels in a header
	}
	if len(e.ContentType) > 256 || strings.ContainsAny(e.ContentType, "\r\n") {
		return invalid("content_type", "must be a single line of at most 256 bytes")
	}
	if lim := o.maxPayload(); len(e.Payload) > lim {
		v := invalid("payload", "%d bytes, over the limit of %d", len(e.Payload), lim)
		v.tooLarge = true
		return v
	}
	if e.Retry != nil {
		if err := e.Retry.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// validateOpaque checks entity_id and user_id: opaque UTF-8 strings of at
// most 256 bytes with no control characters (they travel in NATS headers).
func validateOpaque(field, v string) error {
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
	return nil
}

// ValidateType checks an event type: one or more dot-separated tokens of
// [A-Za-z0-9_-], at most 128 characters, so that it is always a literal NATS
// subject suffix (no wildcards, no spaces, no empty tokens).
func ValidateType(t string) error {
	if t == "" {
		return invalid("type", "required")
	}
	if len(t) > MaxTypeLen {
		return invalid("type", "%d characters, at most %d", len(t), MaxTypeLen)
	}
	tokenLen := 0
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case c == '.':
			if tokenLen == 0 {
				return invalid("type", "empty token in %q", t)
			}
			tokenLen = 0
			continue
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
		default:
			return invalid("type", "character %q not allowed in %q (tokens of [A-Za-z0-9_-] separated by dots)", c, t)
		}
		tokenLen++
	}
	if tokenLen == 0 {
		return invalid("type", "empty token in %q", t)
	}
	return nil
}

// SameContent reports whether two events carry the same application content:
// every field the application chooses. The HTTP edge uses it to tell a
// harmless re-post of an id from a conflicting one.
func (e *Event) SameContent(o *Event) bool {
	return e.ID == o.ID && e.Type == o.Type && e.EntityID == o.EntityID && e.UserID == o.UserID &&
		e.Priority == o.Priority && e.IsNewRecord == o.IsNewRecord && e.MaxAttempts == o.MaxAttempts &&
		jsonEqual(e.Metadata, o.Metadata) && bytes.Equal(e.Payload, o.Payload) &&
		e.ContentType == o.ContentType && retryEqual(e.Retry, o.Retry)
}

func retryEqual(a, b *RetryPolicy) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func jsonEqual(a, b json.RawMessage) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return bytes.Equal(a, b)
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return bytes.Equal(xb, yb)
}

// TruncateError shortens an error text for LastError so that a pathological
// error cannot bloat the store.
func TruncateError(s string) string {
	if len(s) <= maxErrorLen {
		return s
	}
	return s[:maxErrorLen] + "…"
}

// eventJSON is Event's JSON form with the payload spelled out.
type eventJSON struct {
	eventAlias
	PayloadJSON   json.RawMessage `json:"payload,omitempty"`
	PayloadBase64 *string         `json:"payload_base64,omitempty"`
}

type eventAlias Event

// IsJSONContentType reports whether ct names JSON (application/json, with or
// without parameters, or a +json suffix).
func IsJSONContentType(ct string) bool {
	ct = strings.ToLower(strings.TrimSpace(ct))
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = strings.TrimSpace(ct[:i])
	}
	return ct == ContentTypeJSON || strings.HasSuffix(ct, "+json")
}

// MarshalJSON writes the payload as "payload" (a JSON value) when its content
// type is JSON and it is valid JSON, and as "payload_base64" otherwise.
func (e Event) MarshalJSON() ([]byte, error) {
	j := eventJSON{eventAlias: eventAlias(e)}
	if IsJSONContentType(e.ContentType) && json.Valid(e.Payload) {
		j.PayloadJSON = e.Payload
	} else if len(e.Payload) > 0 {
		s := base64.StdEncoding.EncodeToString(e.Payload)
		j.PayloadBase64 = &s
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads "payload" (any JSON value, kept as its JSON bytes, with
// content type application/json) or "payload_base64" (raw bytes, content type
// application/octet-stream unless given), never both.
func (e *Event) UnmarshalJSON(b []byte) error {
	var j eventJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*e = Event(j.eventAlias)
	switch {
	case len(j.PayloadJSON) > 0 && j.PayloadBase64 != nil:
		return invalid("payload", "give payload or payload_base64, not both")
	case j.PayloadBase64 != nil:
		p, err := base64.StdEncoding.DecodeString(*j.PayloadBase64)
		if err != nil {
			return invalid("payload_base64", "not valid base64: %v", err)
		}
		e.Payload = p
		if e.ContentType == "" {
			e.ContentType = ContentTypeBinary
		}
	case len(j.PayloadJSON) > 0 && !bytes.Equal(j.PayloadJSON, []byte("null")):
		var buf bytes.Buffer
		if err := json.Compact(&buf, j.PayloadJSON); err != nil {
			return invalid("payload", "not valid JSON: %v", err)
		}
		e.Payload = buf.Bytes()
		if e.ContentType == "" {
			e.ContentType = ContentTypeJSON
		}
	}
	return nil
}
