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
// A publisher of many events builds an Encoder once instead.
func (e *Event) Message(subjectPrefix, source string, attempt int, retry *RetryPolicy) *nats.Msg {
	enc := Encoder{prefix: subjectPrefix}
	return enc.message(e, attempt, source, retry)
}

// An Encoder builds the NATS messages of one stream's events, exactly as
// Event.Message does: what is the same for every event (the subject prefix,
// ce-source, the default retry policy, ce-specversion, small numbers and the
// common content types) is formatted once, when the Encoder is made, and
// shared by every message. It is safe for concurrent use.
//
// The header values of a message may share their backing arrays with other
// messages: set, add or delete headers (nats.Header's methods replace or
// copy a value slice), but never write into a value slice in place.
type Encoder struct {
	prefix string
	source []string     // nil: the source argument of message
	retry  *[3][]string // the default policy's values; nil for none
}

// Values shared by every message: one-element slices whose capacity is their
// length, so that an append by a caller copies.
var (
	specVersionValue = []string{SpecVersion}
	trueValue        = []string{"true"}
	falseValue       = []string{"false"}
	jsonValue        = []string{ContentTypeJSON}
	binaryValue      = []string{ContentTypeBinary}
	// priorities, attempts and max_attempts up to MaxAttemptsLimit
	smallInts = func() [][]string {
		s := make([][]string, MaxAttemptsLimit+1)
		for i := range s {
			s[i] = []string{strconv.Itoa(i)}
		}
		return s
	}()
)

// NewEncoder returns the Encoder of a stream: subjects <subjectPrefix>.<type>,
// ce-source source (DefaultSource when empty), and retry, when not nil, the
// policy carried by events without one of their own.
func NewEncoder(subjectPrefix, source string, retry *RetryPolicy) *Encoder {
	if source == "" {
		source = DefaultSource
	}
	enc := &Encoder{prefix: subjectPrefix, source: []string{source}}
	if retry != nil {
		v := retryValues(retry)
		enc.retry = &[3][]string{{v[0]}, {v[1]}, {v[2]}}
	}
	return enc
}

func retryValues(p *RetryPolicy) [3]string {
	return [3]string{p.InitialInterval.String(), p.MaxInterval.String(), strconv.FormatFloat(p.Multiplier, 'g', -1, 64)}
}

// Message builds the NATS message of e; attempt is the 1-based number of this
// publish attempt.
func (enc *Encoder) Message(e *Event, attempt int) *nats.Msg {
	return enc.message(e, attempt, "", nil)
}

// headerCap is the most headers a message has: the map is sized once.
const headerCap = 21

// message is a message and the backing array of its per-event header values,
// allocated together.
type message struct {
	msg  nats.Msg
	vals [15]string
}

// message builds e's message. source and retry stand in for the Encoder's
// when it has none (Event.Message).
func (enc *Encoder) message(e *Event, attempt int, source string, retry *RetryPolicy) *nats.Msg {
	// The strings formatted per event (subject, ce-time, ce-entityseq,
	// ce-metadata) are cut from one buffer, converted once; the values of the
	// per-event headers share one backing array, allocated with the message.
	var scratch [256]byte // on the stack unless the strings are longer
	buf := append(scratch[:0], enc.prefix...)
	buf = append(buf, '.')
	buf = append(buf, e.Type...)
	subjectEnd := len(buf)
	buf = e.CreatedAt.UTC().AppendFormat(buf, time.RFC3339Nano)
	timeEnd := len(buf)
	if e.EntityID != "" {
		buf = strconv.AppendUint(buf, e.EntitySeq, 10)
	}
	seqEnd := len(buf)
	if !e.DeliverAt.IsZero() {
		buf = e.DeliverAt.UTC().AppendFormat(buf, time.RFC3339Nano)
	}
	deliverEnd := len(buf)
	buf = append(buf, e.Metadata...)
	s := string(buf)

	m := &message{}
	h := make(nats.Header, headerCap)
	vals := m.vals[:0]
	set := func(k, v string) {
		vals = append(vals, v)
		h[k] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	h[HeaderSpecVersion] = specVersionValue
	set(HeaderID, e.ID)
	set(HeaderType, e.Type)
	switch {
	case enc.source != nil:
		h[HeaderSource] = enc.source
	case source == "":
		h[HeaderSource] = defaultSourceValue
	default:
		set(HeaderSource, source)
	}
	set(HeaderTime, s[subjectEnd:timeEnd])
	if e.EntityID != "" {
		set(HeaderSubject, e.EntityID)
		set(HeaderEntitySeq, s[timeEnd:seqEnd])
	}
	switch e.ContentType {
	case "":
	case ContentTypeJSON:
		h[HeaderContentType] = jsonValue
	case ContentTypeBinary:
		h[HeaderContentType] = binaryValue
	default:
		set(HeaderContentType, e.ContentType)
	}
	if e.UserID != "" {
		set(HeaderUserID, e.UserID)
	}
	h[HeaderPriority] = number(e.Priority)
	h[HeaderAttempt] = number(attempt)
	h[HeaderMaxAttempts] = number(e.MaxAttempts)
	if e.IsNewRecord {
		h[HeaderIsNewRecord] = trueValue
	} else {
		h[HeaderIsNewRecord] = falseValue
	}
	if len(e.Metadata) > 0 {
		set(HeaderMetadata, s[deliverEnd:])
	}
	if !e.DeliverAt.IsZero() {
		set(HeaderDeliverAt, s[seqEnd:deliverEnd])
	}
	if e.TraceParent != "" {
		set(HeaderTraceParent, e.TraceParent)
		if e.TraceState != "" {
			set(HeaderTraceState, e.TraceState)
		}
	}
	if e.Retry != nil || enc.retry == nil {
		if e.Retry != nil {
			retry = e.Retry
		}
		if retry != nil {
			v := retryValues(retry)
			set(HeaderRetryInitial, v[0])
			set(HeaderRetryMax, v[1])
			set(HeaderRetryMultiply, v[2])
		}
	} else {
		h[HeaderRetryInitial] = enc.retry[0]
		h[HeaderRetryMax] = enc.retry[1]
		h[HeaderRetryMultiply] = enc.retry[2]
	}
	h[HeaderMsgID] = h[HeaderID]
	m.msg = nats.Msg{Subject: s[:subjectEnd], Header: h, Data: e.Payload}
	return &m.msg
}

var defaultSourceValue = []string{DefaultSource}

func number(n int) []string {
	if n >= 0 && n < len(smallInts) {
		return smallInts[n]
	}
	return []string{strconv.Itoa(n)}
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
		TraceParent: get(HeaderTraceParent),
		TraceState:  get(HeaderTraceState),
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
	if v := get(HeaderDeliverAt); v != "" && err == nil {
		if e.DeliverAt, err = time.Parse(time.RFC3339Nano, v); err != nil {
			err = fmt.Errorf("%w: header %s: %v", ErrInvalidEvent, HeaderDeliverAt, err)
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
