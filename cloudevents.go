package outbox

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
)

// The headers of an event on NATS: the CloudEvents NATS protocol binding in
// binary content mode (each attribute a ce- header, the payload the body),
// plus JetStream's de-duplication id.
const (
	HeaderSpecVersion = "ce-specversion"
	HeaderID          = "ce-id"
	HeaderType        = "ce-type"
	HeaderSource      = "ce-source"
	HeaderTime        = "ce-time"
	HeaderSubject     = "ce-subject" // the entity id
	HeaderContentType = "content-type"

	// Extension attributes (CloudEvents names are lower-case alphanumeric).
	HeaderUserID        = "ce-userid"
	HeaderPriority      = "ce-priority"
	HeaderAttempt       = "ce-attempt"
	HeaderMaxAttempts   = "ce-maxattempts"
	HeaderIsNewRecord   = "ce-isnewrecord"
	HeaderEntitySeq     = "ce-entityseq"
	HeaderMetadata      = "ce-metadata"
	HeaderRetryInitial  = "ce-retryinitial"
	HeaderRetryMax      = "ce-retrymax"
	HeaderRetryMultiply = "ce-retrymultiplier"

	// HeaderMsgID is JetStream's de-duplication header; it carries the event id.
	HeaderMsgID = nats.MsgIdHdr

	SpecVersion   = "1.0"
	DefaultSource = "urn:fitiqcore:outbox"
)

// Subject is the NATS subject of an event type: <prefix>.<type>.
func Subject(prefix, eventType string) string {
	return prefix + "." + eventType
}

// Message builds the NATS message of an event: body = payload, headers per
// the CloudEvents NATS binding, Nats-Msg-Id = event id. attempt is the
// 1-based number of this publish attempt; retry, when the event has no policy
// of its own, is the relay's (it lets subscribers back off the same way).
func (e *Event) Message(subjectPrefix, source string, attempt int, retry *RetryPolicy) *nats.Msg {
	if source == "" {
		source = DefaultSource
	}
	h := make(nats.Header, 20)
	// One backing array for every header's value slice: a publish is on the
	// relay's hot path, and 15 one-element slices are 15 allocations.
	vals := make([]string, 0, 20)
	set := func(k, v string) {
		vals = append(vals, v)
		h[k] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	set(HeaderSpecVersion, SpecVersion)
	set(HeaderID, e.ID)
	set(HeaderType, e.Type)
	set(HeaderSource, source)
	set(HeaderTime, e.CreatedAt.UTC().Format(time.RFC3339Nano))
	if e.EntityID != "" {
		set(HeaderSubject, e.EntityID)
		set(HeaderEntitySeq, strconv.FormatUint(e.EntitySeq, 10))
	}
	if e.ContentType != "" {
		set(HeaderContentType, e.ContentType)
	}
	if e.UserID != "" {
		set(HeaderUserID, e.UserID)
	}
	set(HeaderPriority, strconv.Itoa(e.Priority))
	set(HeaderAttempt, strconv.Itoa(attempt))
	set(HeaderMaxAttempts, strconv.Itoa(e.MaxAttempts))
	set(HeaderIsNewRecord, strconv.FormatBool(e.IsNewRecord))
	if len(e.Metadata) > 0 {
		set(HeaderMetadata, string(e.Metadata))
	}
	if e.Retry != nil {
		retry = e.Retry
	}
	if retry != nil {
		set(HeaderRetryInitial, retry.InitialInterval.String())
		set(HeaderRetryMax, retry.MaxInterval.String())
		set(HeaderRetryMultiply, strconv.FormatFloat(retry.Multiplier, 'g', -1, 64))
	}
	set(HeaderMsgID, e.ID)
	return &nats.Msg{Subject: Subject(subjectPrefix, e.Type), Header: h, Data: e.Payload}
}

// FromMessage decodes an event from its NATS headers and body, the inverse
// of Message: every field the application enqueued comes back. Two fields
// say how the message was sent rather than what was enqueued: AttemptCount is
// the relay's publish attempt (ce-attempt; a subscriber's own attempt is its
// delivery count), and Retry is the backoff policy carried in the headers —
// the event's own, or the relay's default for events that set none (nil only
// when the headers carry none). Status and the relay's timestamps are not
// carried. The id must be a UUID and the type valid (ValidateType), so a
// foreign publisher cannot smuggle wildcards into a subscriber's subjects.
func FromMessage(h nats.Header, data []byte) (*Event, error) {
	get := func(k string) string { return nats.Header(h).Get(k) }
	if v := get(HeaderSpecVersion); v != SpecVersion {
		return nil, fmt.Errorf("%w: %s is %q, want %q", ErrInvalidEvent, HeaderSpecVersion, v, SpecVersion)
	}
	e := &Event{
		ID:          get(HeaderID),
		Type:        get(HeaderType),
		EntityID:    get(HeaderSubject),
		UserID:      get(HeaderUserID),
		ContentType: get(HeaderContentType),
		Payload:     data,
	}
	var err error
	num := func(k string, dst *int) {
		if v := get(k); v != "" && err == nil {
			if *dst, err = strconv.Atoi(v); err != nil {
				err = fmt.Errorf("%w: header %s: %v", ErrInvalidEvent, k, err)
			}
		}
	}
	num(HeaderPriority, &e.Priority)
	num(HeaderAttempt, &e.AttemptCount)
	num(HeaderMaxAttempts, &e.MaxAttempts)
	if v := get(HeaderEntitySeq); v != "" && err == nil {
		if e.EntitySeq, err = strconv.ParseUint(v, 10, 64); err != nil {
			err = fmt.Errorf("%w: header %s: %v", ErrInvalidEvent, HeaderEntitySeq, err)
		}
	}
	if v := get(HeaderIsNewRecord); v != "" && err == nil {
		if e.IsNewRecord, err = strconv.ParseBool(v); err != nil {
			err = fmt.Errorf("%w: header %s: %v", ErrInvalidEvent, HeaderIsNewRecord, err)
		}
	}
	if v := get(HeaderTime); v != "" && err == nil {
		if e.CreatedAt, err = time.Parse(time.RFC3339Nano, v); err != nil {
			err = fmt.Errorf("%w: header %s: %v", ErrInvalidEvent, HeaderTime, err)
		}
	}
	if v := get(HeaderMetadata); v != "" && err == nil {
		if !json.Valid([]byte(v)) {
			err = fmt.Errorf("%w: header %s is not JSON", ErrInvalidEvent, HeaderMetadata)
		}
		e.Metadata = json.RawMessage(v)
	}
	if v := get(HeaderRetryInitial); v != "" && err == nil {
		p := &RetryPolicy{}
		p.InitialInterval, err = time.ParseDuration(v)
		if err == nil {
			p.MaxInterval, err = time.ParseDuration(get(HeaderRetryMax))
		}
		if err == nil {
			p.Multiplier, err = strconv.ParseFloat(get(HeaderRetryMultiply), 64)
		}
		if err != nil {
			err = fmt.Errorf("%w: retry headers: %v", ErrInvalidEvent, err)
		}
		e.Retry = p
	}
	if err != nil {
		return nil, err
	}
	if _, err := uuid.Parse(e.ID); err != nil {
		return nil, fmt.Errorf("%w: %s %q is not a UUID", ErrInvalidEvent, HeaderID, e.ID)
	}
	if err := ValidateType(e.Type); err != nil {
		return nil, fmt.Errorf("%s: %w", HeaderType, err)
	}
	return e, nil
}
