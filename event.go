package outbox

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Status is where an event stands in its lifecycle.
type Status string

// The statuses of an event. Pending events wait to be published (now, after a
// backoff, or behind an earlier event of their entity); processing is set only
// through the library's MarkProcessing (the relay keeps its in-flight
// publishes in memory: they stay pending in the store); completed events were
// acked by JetStream; failed events used up their attempts and stay for
// inspection.
const (
	StatusPending    Status = "pending"
	StatusProcessing Status = "processing"
	StatusCompleted  Status = "completed"
	StatusFailed     Status = "failed"
)

// StatusRemoved is never stored: it is what the store reports for an event
// re-enqueued with the id of one it removed (by retention, on ack, or by an
// operator) within its idempotency window. Nothing is stored again.
const StatusRemoved Status = "removed"

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

// MaxAttemptsLimit is the most max_attempts an event may ask for.
const MaxAttemptsLimit = 1000

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
	// DeliverAt, when set, is the earliest time the relay publishes the
	// event (delayed delivery, ce-deliverat): until then it is pending with
	// next_attempt_at = deliver_at, and later events of its entity wait
	// behind it. A time past means now; at most MaxDeliverAhead ahead of the
	// store's clock. A time before MinCreatedAt is taken as none (Prepare).
	DeliverAt time.Time `json:"deliver_at,omitzero"`
	// TraceParent and TraceState are the W3C trace context of the request
	// that wrote the event (ce-traceparent, ce-tracestate: the CloudEvents
	// distributed-tracing extension), captured when it is written so that a
	// subscriber's span joins that request's trace. They are not content:
	// a re-post of the event from another request is the same event.
	TraceParent string `json:"traceparent,omitempty"`
	TraceState  string `json:"tracestate,omitempty"`

	Status    Status `json:"status"`
	EntitySeq uint64 `json:"entity_seq"` // 1, 2, 3, ... per entity_id; 0 without one
	Seq       uint64 `json:"seq"`        // the store's global sequence
	// CreatedAt is when the application says the event happened (ce-time):
	// kept as given (bounded by Validate), the store's clock when not.
	CreatedAt time.Time `json:"created_at"`
	// AcceptedAt is when the store accepted the event, by its own clock:
	// staleness, admission by age and the pending order use it, so that no
	// client's clock steers them.
	AcceptedAt    time.Time `json:"accepted_at"`
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
	// MaxMessage is the most WireSize (headers and payload) an event may
	// have: MessageLimit of the broker's max_payload. Zero means
	// MessageLimit(DefaultMaxMessage), the safe assumption before the
	// broker has told its own; negative means no limit.
	MaxMessage int
	// Now is the clock that bounds created_at (default time.Now).
	Now func() time.Time
}

func (o Options) maxMessage() int {
	if o.MaxMessage == 0 {
		return MessageLimit(DefaultMaxMessage)
	}
	return o.MaxMessage
}

func (o Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
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
	if !e.DeliverAt.IsZero() && e.DeliverAt.Before(MinCreatedAt) {
		e.DeliverAt = time.Time{} // long past: now (and a time every record holds)
	}
	return e.Validate(o)
}

// Validate checks the fields an application sets, naming the first bad one.
// A valid id is rewritten in canonical form and metadata compacted; nothing
// else is changed: what is stored is what is published, byte for byte.
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
	if err := ValidateIdentifier("entity_id", e.EntityID); err != nil {
		return err
	}
	if err := ValidateIdentifier("user_id", e.UserID); err != nil {
		return err
	}
	if e.Priority < 0 || e.Priority > MaxPriority {
		return invalid("priority", "must be 0..%d, got %d", MaxPriority, e.Priority)
	}
	if e.MaxAttempts < 1 || e.MaxAttempts > MaxAttemptsLimit {
		return invalid("max_attempts", "must be 1..%d, got %d", MaxAttemptsLimit, e.MaxAttempts)
	}
	if err := e.validateMetadata(); err != nil {
		return err
	}
	if err := validateContentType(e.ContentType); err != nil {
		return err
	}
	if err := validateCreatedAt(e.CreatedAt, o.now()); err != nil {
		return err
	}
	if e.Retry != nil {
		if err := e.Retry.Validate(); err != nil {
			return err
		}
	}
	if err := validateDeliverAt(e.DeliverAt, o.now()); err != nil {
		return err
	}
	if err := ValidateTraceContext(e.TraceParent, e.TraceState); err != nil {
		return err
	}
	if lim := o.maxPayload(); len(e.Payload) > lim {
		v := invalid("payload", "%d bytes, over the limit of %d", len(e.Payload), lim)
		v.tooLarge = true
		return v
	}
	if lim := o.maxMessage(); lim >= 0 && e.WireSize() > lim {
		field := "payload"
		if len(e.Metadata) > len(e.Payload) {
			field = "metadata"
		}
		v := invalid(field, "the event's message would be up to %d bytes with its headers, over the broker's limit of %d", e.WireSize(), lim)
		v.tooLarge = true
		return v
	}
	return nil
}

// validateMetadata checks that metadata is absent or a JSON object of valid
// UTF-8, at most MaxMetadataLen bytes once compacted onto one line (it
// travels in a header).
func (e *Event) validateMetadata() error {
	m := bytes.TrimSpace(e.Metadata)
	if len(m) == 0 || bytes.Equal(m, []byte("null")) {
		e.Metadata = nil // absent
		return nil
	}
	if !utf8.Valid(m) {
		return invalid("metadata", "not valid UTF-8")
	}
	if m[0] != '{' || !json.Valid(m) {
		return invalid("metadata", "must be a JSON object")
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, m); err != nil {
		return invalid("metadata", "must be a JSON object")
	}
	if buf.Len() > MaxMetadataLen {
		v := invalid("metadata", "%d bytes, over the limit of %d", buf.Len(), MaxMetadataLen)
		v.tooLarge = true
		return v
	}
	e.Metadata = buf.Bytes() // one line: it travels in a header
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
		e.ContentType == o.ContentType && retryEqual(e.Retry, o.Retry) && e.DeliverAt.Equal(o.DeliverAt)
}

func retryEqual(a, b *RetryPolicy) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// jsonEqual compares two JSON values as values: key order and white space do
// not count; numbers are compared as written, never as float64 (which would
// make 12345678901234567890 equal 12345678901234567891).
func jsonEqual(a, b json.RawMessage) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	x, errX := CanonicalJSON(a)
	y, errY := CanonicalJSON(b)
	if errX != nil || errY != nil {
		return bytes.Equal(a, b)
	}
	return bytes.Equal(x, y)
}

// CanonicalJSON re-encodes a JSON value with sorted keys and no white space,
// keeping numbers as written: two values are equal as JSON when their
// canonical forms are equal bytes.
func CanonicalJSON(b []byte) ([]byte, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// TruncateError shortens an error text for LastError so that a pathological
// error cannot bloat the store: at most MaxErrorLen bytes of valid UTF-8 (an
// invalid byte becomes U+FFFD), cut on a character boundary and ending in "…"
// when cut.
func TruncateError(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= MaxErrorLen {
		return s
	}
	const ellipsis = "…"
	cut := MaxErrorLen - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
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
// type is JSON and it is valid JSON in valid UTF-8, and as "payload_base64"
// otherwise, so that the answer is always valid JSON.
func (e Event) MarshalJSON() ([]byte, error) {
	j := eventJSON{eventAlias: eventAlias(e)}
	if IsJSONContentType(e.ContentType) && utf8.Valid(e.Payload) && json.Valid(e.Payload) {
		j.PayloadJSON = e.Payload
	} else if len(e.Payload) > 0 {
		s := base64.StdEncoding.EncodeToString(e.Payload)
		j.PayloadBase64 = &s
	}
	// No HTML escaping: a JSON payload is written as it is stored. (An
	// encoder that escapes HTML around this one still does it again.)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(j); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
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

// ContentHash is a 64-bit digest of the content SameContent compares: events
// with the same content have the same hash. The store keeps it for the ids of
// removed events, to tell a harmless re-post from a conflicting one.
func (e *Event) ContentHash() uint64 {
	h := fnv.New64a()
	var n [8]byte
	put := func(b []byte) {
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	num := func(v uint64) {
		binary.BigEndian.PutUint64(n[:], v)
		h.Write(n[:])
	}
	put([]byte(e.ID))
	put([]byte(e.Type))
	put([]byte(e.EntityID))
	put([]byte(e.UserID))
	num(uint64(e.Priority))
	if e.IsNewRecord {
		num(1)
	} else {
		num(0)
	}
	num(uint64(e.MaxAttempts))
	meta := []byte(e.Metadata)
	if len(meta) > 0 {
		if c, err := CanonicalJSON(meta); err == nil {
			meta = c
		}
	}
	put(meta)
	put(e.Payload)
	put([]byte(e.ContentType))
	if r := e.Retry; r != nil {
		num(1)
		num(uint64(r.InitialInterval))
		num(uint64(r.MaxInterval))
		num(math.Float64bits(r.Multiplier))
	} else {
		num(0)
	}
	if !e.DeliverAt.IsZero() { // hashed only when set: older hashes hold
		num(2)
		num(uint64(e.DeliverAt.UnixNano()))
	}
	return h.Sum64()
}
