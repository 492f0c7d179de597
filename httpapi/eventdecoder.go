package httpapi

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/fitiqcore/outbox"
)

// The fields of an event's JSON form, in the order of outbox.Event's own
// (a test holds them to its tags), and the two spellings of the payload
// that Event.UnmarshalJSON reads. Keys are matched exactly (snake_case,
// case-sensitive).
type field uint8

const (
	fID field = iota
	fType
	fEntityID
	fUserID
	fPriority
	fIsNewRecord
	fMaxAttempts
	fMetadata
	fContentType
	fRetry
	fStatus
	fEntitySeq
	fSeq
	fCreatedAt
	fAcceptedAt
	fLastAttemptAt
	fNextAttemptAt
	fCompletedAt
	fAttemptCount
	fLastError
	fPayload
	fPayloadBase64
	numFields
)

var eventKeys = [numFields]string{
	"id", "type", "entity_id", "user_id", "priority", "is_new_record", "max_attempts", "metadata",
	"content_type", "retry", "status", "entity_seq", "seq", "created_at", "accepted_at",
	"last_attempt_at", "next_attempt_at", "completed_at", "attempt_count", "last_error",
	"payload", "payload_base64",
}

// The keys of a retry policy (outbox.RetryPolicy's tags).
var retryKeys = [...]string{"initial_interval", "max_interval", "multiplier"}

// fieldOf returns the field a key names (no allocation: the compiler
// switches on the bytes).
func fieldOf(key []byte) (field, bool) {
	switch string(key) {
	case "id":
		return fID, true
	case "type":
		return fType, true
	case "entity_id":
		return fEntityID, true
	case "user_id":
		return fUserID, true
	case "priority":
		return fPriority, true
	case "is_new_record":
		return fIsNewRecord, true
	case "max_attempts":
		return fMaxAttempts, true
	case "metadata":
		return fMetadata, true
	case "content_type":
		return fContentType, true
	case "retry":
		return fRetry, true
	case "status":
		return fStatus, true
	case "entity_seq":
		return fEntitySeq, true
	case "seq":
		return fSeq, true
	case "created_at":
		return fCreatedAt, true
	case "accepted_at":
		return fAcceptedAt, true
	case "last_attempt_at":
		return fLastAttemptAt, true
	case "next_attempt_at":
		return fNextAttemptAt, true
	case "completed_at":
		return fCompletedAt, true
	case "attempt_count":
		return fAttemptCount, true
	case "last_error":
		return fLastError, true
	case "payload":
		return fPayload, true
	case "payload_base64":
		return fPayloadBase64, true
	}
	return 0, false
}

// sortedFields lists the fields in the order of their keys.
var sortedFields = func() []field {
	fs := make([]field, numFields)
	for f := range numFields {
		fs[f] = f
	}
	for i := 1; i < len(fs); i++ { // insertion sort: 22 keys, once
		for j := i; j > 0 && eventKeys[fs[j]] < eventKeys[fs[j-1]]; j-- {
			fs[j], fs[j-1] = fs[j-1], fs[j]
		}
	}
	return fs
}()

// decoder decodes events from their JSON form in one pass over each: it
// walks an event's members once, checking the JSON as it goes, refuses an
// unknown key by its name, checks the text of every field, and decodes
// each value straight into the event. It decodes what encoding/json and
// Event.UnmarshalJSON decoded before it, and fails with the same errors
// (a fuzz test compares the two): a key given twice keeps its last value,
// and the first error is the one encoding/json would have answered.
//
// What it keeps of the body: metadata and a compact JSON payload are
// slices of the body (their capacity cut to their length), not copies;
// strings are copies, and a string equal to the previous event's same
// field is that event's string. Nothing else of the body is kept, and
// the body is never reused, so the events may outlive the request.
type decoder struct {
	prev *outbox.Event // the previous event decoded
}

var noEvent outbox.Event // the previous event of the first: read, never written

// eventState is what decoding an event gathers besides the event itself:
// its faults, in the order they are answered, and the payload's spellings.
type eventState struct {
	unknown         string // the first unknown key in order, when hasUnknown
	retryUnknown    string // the same in the last "retry" object
	hasUnknown      bool
	hasRetryUnknown bool
	text            [numFields]string // each field's text fault, of its last value
	// abort is the first error of a value encoding/json hands to the
	// field's own decoder (a time, a retry policy): it stops there and
	// answers it. timeFault says it is a time's, which names no field.
	abort     error
	timeFault bool
	typ       error // the first value of the wrong JSON type: encoding/json goes on after it
	payload   payloadState
}

type payloadState struct {
	json      []byte // the last "payload": its JSON text; nil when absent
	compact   bool   // json has no white space between its tokens
	base64    []byte // the last "payload_base64" string literal; nil when absent or null
	b64Escape bool   // base64 holds backslash escapes
}

// event decodes the event object at raw[i:] into e, which is zero, and
// returns the index just past it, or -1 and errSyntax when it is not
// well-formed JSON. depth is the number of objects and arrays open around
// it. what names the value in messages ("body", "event"). Every error
// names the field at fault.
func (d *decoder) event(raw []byte, i, depth int, what string, e *outbox.Event) (int, error) {
	if raw[i] != '{' {
		var t textInfo
		end := scanValue(raw, i, depth, &t)
		if end < 0 {
			return -1, errSyntax
		}
		return end, reject(http.StatusBadRequest, "%s must be a JSON object, got %s", what, kindOf(raw[i:end]))
	}
	if depth >= maxDepth {
		return -1, errSyntax
	}
	var st eventState
	start := i
	if i = skipSpace(raw, i+1); i < len(raw) && raw[i] == '}' {
		return i + 1, d.finish(raw[start:i+1], e, &st)
	}
	for {
		if i >= len(raw) || raw[i] != '"' {
			return -1, errSyntax
		}
		var kt textInfo
		kend := scanString(raw, i, &kt)
		if kend < 0 {
			return -1, errSyntax
		}
		key := raw[i:kend]
		if i = skipSpace(raw, kend); i >= len(raw) || raw[i] != ':' {
			return -1, errSyntax
		}
		i = skipSpace(raw, i+1)
		var vt textInfo
		vend := scanValue(raw, i, depth+1, &vt)
		if vend < 0 {
			return -1, errSyntax
		}
		var (
			f     field
			known bool
		)
		if kt.escaped || kt.badUTF8 {
			f, known = fieldOf([]byte(unquote(key)))
		} else {
			f, known = fieldOf(key[1 : len(key)-1])
		}
		if known {
			d.member(e, &st, f, raw[i:vend], &vt)
		} else if k := unquote(key); !st.hasUnknown || k < st.unknown {
			st.unknown, st.hasUnknown = k, true
		}
		if i = skipSpace(raw, vend); i < len(raw) && raw[i] == ',' {
			i = skipSpace(raw, i+1)
			continue
		}
		if i < len(raw) && raw[i] == '}' {
			return i + 1, d.finish(raw[start:i+1], e, &st)
		}
		return -1, errSyntax
	}
}

// member takes one member of the event: its text, then its value.
func (d *decoder) member(e *outbox.Event, st *eventState, f field, v []byte, t *textInfo) {
	switch {
	case f == fPayload && t.badUTF8:
		st.text[f] = faultUTF8
	case f == fPayload:
		st.text[f] = "" // escapes are kept as written
	default:
		st.text[f] = t.reason
	}
	if f == fRetry {
		st.retryUnknown, st.hasRetryUnknown = retryUnknown(v)
	}
	if st.abort != nil {
		return // encoding/json decodes nothing after it
	}
	typ, abort := d.value(e, &st.payload, f, v, t)
	switch {
	case abort != nil:
		st.abort, st.timeFault = abort, isTime(f)
	case typ != nil && st.typ == nil:
		st.typ = typ
	}
}

// retryUnknown returns the first unknown key, in order, of a retry object.
func retryUnknown(v []byte) (unknown string, found bool) {
	if v[0] != '{' {
		return "", false
	}
	members(v, func(k string, _ []byte) {
		if !isRetryKey(k) && (!found || k < unknown) {
			unknown, found = k, true
		}
	})
	return unknown, found
}

func isRetryKey(k string) bool {
	return k == retryKeys[0] || k == retryKeys[1] || k == retryKeys[2]
}

func isTime(f field) bool { return f >= fCreatedAt && f <= fCompletedAt }

// finish answers the faults of an event in the order encoding/json and
// the checks before it did: unknown keys, then unknown keys of the retry
// policy, then text in the order of the fields, then the first value
// that failed to decode; then the payload.
func (d *decoder) finish(raw []byte, e *outbox.Event, st *eventState) error {
	switch {
	case st.hasUnknown:
		return reject(http.StatusBadRequest, "unknown field %q", st.unknown)
	case st.hasRetryUnknown:
		return reject(http.StatusBadRequest, "unknown field %q", "retry."+st.retryUnknown)
	}
	for f, reason := range st.text {
		if reason != "" {
			return &outbox.ValidationError{Field: eventKeys[f], Reason: reason}
		}
	}
	switch {
	case st.abort != nil && st.timeFault:
		return timeError(raw, st.abort)
	case st.abort != nil:
		return st.abort
	case st.typ != nil:
		return st.typ
	}
	if err := setPayload(e, &st.payload); err != nil {
		return err
	}
	d.prev = e
	return nil
}

// value decodes v, a member's value, into its field of e, as encoding/json
// does: null leaves a field as it is, but for metadata, retry and
// payload_base64. typ is a value of the wrong JSON type; abort is an error
// of a time or a retry policy, after which encoding/json stops.
func (d *decoder) value(e *outbox.Event, p *payloadState, f field, v []byte, t *textInfo) (typ, abort error) {
	prev := d.prev
	if prev == nil {
		prev = &noEvent
	}
	switch f {
	case fID:
		return d.str(&e.ID, prev.ID, f, v, t), nil
	case fType:
		return d.str(&e.Type, prev.Type, f, v, t), nil
	case fEntityID:
		return d.str(&e.EntityID, prev.EntityID, f, v, t), nil
	case fUserID:
		return d.str(&e.UserID, prev.UserID, f, v, t), nil
	case fContentType:
		return d.str(&e.ContentType, prev.ContentType, f, v, t), nil
	case fLastError:
		return d.str(&e.LastError, prev.LastError, f, v, t), nil
	case fStatus:
		s := string(e.Status)
		typ = d.str(&s, string(prev.Status), f, v, t)
		e.Status = outbox.Status(s)
		return typ, nil
	case fPriority:
		return integer(&e.Priority, f, v), nil
	case fMaxAttempts:
		return integer(&e.MaxAttempts, f, v), nil
	case fAttemptCount:
		return integer(&e.AttemptCount, f, v), nil
	case fEntitySeq:
		return unsigned(&e.EntitySeq, f, v), nil
	case fSeq:
		return unsigned(&e.Seq, f, v), nil
	case fIsNewRecord:
		switch v[0] {
		case 't', 'f':
			e.IsNewRecord = v[0] == 't'
		case 'n':
		default:
			return wrongType(f, "a boolean", gotKind(v, false)), nil
		}
	case fMetadata:
		e.Metadata = v[:len(v):len(v)] // null too: Validate drops it
	case fRetry:
		if v[0] == 'n' {
			e.Retry = nil
			return nil, nil
		}
		policy, err := decodeRetry(v)
		if err != nil {
			return nil, err
		}
		if e.Retry == nil {
			e.Retry = new(outbox.RetryPolicy)
		}
		*e.Retry = policy
	case fCreatedAt, fAcceptedAt, fLastAttemptAt, fNextAttemptAt, fCompletedAt:
		return nil, timeOf(e, f).UnmarshalJSON(v) // as encoding/json: any value but null is the time's to read
	case fPayload:
		p.json, p.compact = v[:len(v):len(v)], !t.space
	case fPayloadBase64:
		switch v[0] {
		case '"':
			p.base64, p.b64Escape = v, t.escaped
		case 'n':
			p.base64 = nil
		default:
			return wrongType(f, "a string", gotKind(v, false)), nil
		}
	}
	return nil, nil
}

func timeOf(e *outbox.Event, f field) *time.Time {
	switch f {
	case fCreatedAt:
		return &e.CreatedAt
	case fAcceptedAt:
		return &e.AcceptedAt
	case fLastAttemptAt:
		return &e.LastAttemptAt
	case fNextAttemptAt:
		return &e.NextAttemptAt
	}
	return &e.CompletedAt
}

// str decodes a string value into dst; prev is the previous event's value
// of the field, which is reused when equal.
func (d *decoder) str(dst *string, prev string, f field, v []byte, t *textInfo) error {
	switch v[0] {
	case '"':
	case 'n':
		return nil
	default:
		return wrongType(f, "a string", gotKind(v, false))
	}
	if t.escaped || t.badUTF8 {
		*dst = unquote(v)
		return nil
	}
	if s := v[1 : len(v)-1]; string(s) == prev {
		*dst = prev
	} else {
		*dst = string(s)
	}
	return nil
}

// integer decodes an int as encoding/json does: a number that
// strconv.ParseInt takes whole.
func integer(dst *int, f field, v []byte) error {
	switch c := v[0]; {
	case c == 'n':
		return nil
	case c != '-' && (c < '0' || c > '9'):
		return wrongType(f, "an integer", gotKind(v, true))
	}
	if n, ok := smallUint(v); ok {
		*dst = int(n)
		return nil
	}
	n, err := strconv.ParseInt(string(v), 10, strconv.IntSize)
	if err != nil {
		return wrongType(f, "an integer", gotKind(v, true))
	}
	*dst = int(n)
	return nil
}

func unsigned(dst *uint64, f field, v []byte) error {
	switch c := v[0]; {
	case c == 'n':
		return nil
	case c != '-' && (c < '0' || c > '9'):
		return wrongType(f, "an integer", gotKind(v, true))
	}
	if n, ok := smallUint(v); ok {
		*dst = n
		return nil
	}
	n, err := strconv.ParseUint(string(v), 10, 64)
	if err != nil {
		return wrongType(f, "an integer", gotKind(v, true))
	}
	*dst = n
	return nil
}

// smallUint reads a number of at most 9 digits without sign, fraction or
// exponent (every other number goes to strconv).
func smallUint(v []byte) (uint64, bool) {
	if len(v) > 9 {
		return 0, false
	}
	var n uint64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, true
}

// gotKind names the JSON of a value of the wrong type as encoding/json's
// UnmarshalTypeError does: numbers with their text for a numeric field.
func gotKind(v []byte, number bool) string {
	switch v[0] {
	case '"':
		return "string"
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "bool"
	}
	if number {
		return "number " + string(v)
	}
	return "number"
}

func wrongType(f field, want, got string) error {
	return wrongTypeNamed(eventKeys[f], want, got)
}

func wrongTypeNamed(name, want, got string) error {
	return reject(http.StatusBadRequest, "invalid %s: want %s, got %s", name, want, got)
}

// decodeRetry decodes a retry policy (v is not null) as
// outbox.RetryPolicy.UnmarshalJSON does: the intervals as Go durations.
// Keys match as encoding/json matches them, regardless of case (an
// unknown key is refused before: retryUnknown, for the last policy
// given).
func decodeRetry(v []byte) (outbox.RetryPolicy, error) {
	if v[0] != '{' {
		return outbox.RetryPolicy{}, wrongTypeNamed("retry", "an object", gotKind(v, false))
	}
	var (
		initial, maxInterval string
		multiplier           float64
		typ                  error
	)
	members(v, func(k string, val []byte) {
		var err error
		switch {
		case strings.EqualFold(k, retryKeys[0]):
			err = durationText(&initial, retryKeys[0], val)
		case strings.EqualFold(k, retryKeys[1]):
			err = durationText(&maxInterval, retryKeys[1], val)
		case strings.EqualFold(k, retryKeys[2]):
			switch c := val[0]; {
			case c == 'n':
			case c != '-' && (c < '0' || c > '9'):
				err = wrongTypeNamed("retry.multiplier", "a number", gotKind(val, false))
			default:
				f, perr := strconv.ParseFloat(string(val), 64)
				if perr != nil {
					err = wrongTypeNamed("retry.multiplier", "a number", gotKind(val, true))
				} else {
					multiplier = f
				}
			}
		}
		if typ == nil {
			typ = err
		}
	})
	if typ != nil {
		return outbox.RetryPolicy{}, typ
	}
	p := outbox.RetryPolicy{Multiplier: multiplier}
	var err error
	if p.InitialInterval, err = time.ParseDuration(initial); err != nil {
		return outbox.RetryPolicy{}, &outbox.ValidationError{Field: "retry.initial_interval", Reason: fmt.Sprintf("not a duration: %q", initial)}
	}
	if p.MaxInterval, err = time.ParseDuration(maxInterval); err != nil {
		return outbox.RetryPolicy{}, &outbox.ValidationError{Field: "retry.max_interval", Reason: fmt.Sprintf("not a duration: %q", maxInterval)}
	}
	return p, nil
}

func durationText(dst *string, key string, v []byte) error {
	switch v[0] {
	case '"':
		*dst = unquote(v)
	case 'n':
	default:
		return wrongTypeNamed("retry."+key, "a string", gotKind(v, false))
	}
	return nil
}

// setPayload applies the payload's spellings to e as Event.UnmarshalJSON
// does: "payload" (any JSON value, kept as its compact JSON text, content
// type application/json) or "payload_base64" (raw bytes, content type
// application/octet-stream), never both, each unless null; the content
// type is the event's own when it has one.
func setPayload(e *outbox.Event, p *payloadState) error {
	switch {
	case p.json != nil && p.base64 != nil:
		return &outbox.ValidationError{Field: "payload", Reason: "give payload or payload_base64, not both"}
	case p.base64 != nil:
		src := p.base64[1 : len(p.base64)-1]
		if p.b64Escape {
			src = []byte(unquote(p.base64))
		}
		b := make([]byte, base64.StdEncoding.DecodedLen(len(src)))
		n, err := base64.StdEncoding.Decode(b, src)
		if err != nil {
			return &outbox.ValidationError{Field: "payload_base64", Reason: "not valid base64: " + err.Error()}
		}
		e.Payload = b[:n]
		if e.ContentType == "" {
			e.ContentType = outbox.ContentTypeBinary
		}
	case p.json != nil && string(p.json) != "null":
		if p.compact {
			e.Payload = p.json
		} else {
			e.Payload = appendCompact(make([]byte, 0, len(p.json)), p.json)
		}
		if e.ContentType == "" {
			e.ContentType = outbox.ContentTypeJSON
		}
	}
	return nil
}

// timeError names the field of a time that did not decode as the checks
// before this decoder did: the first field, in the order of the keys,
// whose value alone fails to decode, or "event" when none does.
func timeError(raw []byte, err error) error {
	msg := strings.TrimPrefix(err.Error(), "json: ")
	var last [numFields][]byte
	members(raw, func(k string, v []byte) {
		if f, ok := fieldOf([]byte(k)); ok {
			last[f] = v
		}
	})
	for _, f := range sortedFields {
		if last[f] != nil && aloneFails(f, last[f]) {
			return reject(http.StatusBadRequest, "invalid %s: %s", eventKeys[f], msg)
		}
	}
	return reject(http.StatusBadRequest, "invalid event: %s", msg)
}

// aloneFails reports whether an event of this one member fails to decode.
func aloneFails(f field, v []byte) bool {
	var (
		d decoder
		e outbox.Event
		p payloadState
		t textInfo
	)
	scanValue(v, 0, 0, &t)
	if typ, abort := d.value(&e, &p, f, v, &t); typ != nil || abort != nil {
		return true
	}
	return setPayload(&e, &p) != nil
}
