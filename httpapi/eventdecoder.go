package httpapi

import (
	"net/http"

	"github.com/fitiqcore/outbox"
)

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

func isTime(f field) bool { return f == fDeliverAt || f >= fCreatedAt && f <= fCompletedAt }

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
	case fTraceParent:
		return d.str(&e.TraceParent, prev.TraceParent, f, v, t), nil
	case fTraceState:
		return d.str(&e.TraceState, prev.TraceState, f, v, t), nil
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
	case fDeliverAt, fCreatedAt, fAcceptedAt, fLastAttemptAt, fNextAttemptAt, fCompletedAt:
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
