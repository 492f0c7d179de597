package httpapi

import (
	"encoding/base64"
	"math"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/fitiqcore/outbox"
)

// The answers that carry events (POST /v1/events, POST /v1/events/batch,
// GET /v1/events/{id}) are written without reflection: appendEvent writes
// the bytes that encoding/json writes for outbox.Event (its MarshalJSON,
// without HTML escaping), into one buffer sized for the answer. A test
// holds the two to the same bytes. An event it cannot write so (a time
// outside the years RFC 3339 has, metadata that is not JSON, a multiplier
// that is not a number) is answered by encoding/json, with its error.

// writeEvent answers e as writeJSON does.
func (s *Server) writeEvent(w http.ResponseWriter, status int, e *outbox.Event) {
	b, ok := appendEvent(make([]byte, 0, eventSize(e)+1), e)
	if !ok {
		s.writeJSON(w, status, e)
		return
	}
	s.writeBytes(w, status, append(b, '\n'))
}

// writeEvents answers {"events":[...]} as writeJSON does.
func (s *Server) writeEvents(w http.ResponseWriter, status int, events []*outbox.Event) {
	b, ok := appendEvents(events)
	if !ok {
		s.writeJSON(w, status, batch{Events: events})
		return
	}
	s.writeBytes(w, status, b)
}

// appendEvents returns {"events":[...]} and a newline in one buffer, or
// false when appendEvent cannot write one of them.
func appendEvents(events []*outbox.Event) ([]byte, bool) {
	size := len(`{"events":[]}`) + 1
	for _, e := range events {
		size += eventSize(e) + 1
	}
	b := append(make([]byte, 0, size), `{"events":[`...)
	for i, e := range events {
		if i > 0 {
			b = append(b, ',')
		}
		var ok bool
		if b, ok = appendEvent(b, e); !ok {
			return nil, false
		}
	}
	return append(b, "]}\n"...), true
}

// eventSize is about the length of e's JSON form, a little more: the
// keys, numbers and times, and the strings and payload as they are
// (escapes make it more).
func eventSize(e *outbox.Event) int {
	if e == nil {
		return 4
	}
	n := 320 + len(e.ID) + len(e.Type) + len(e.EntityID) + len(e.UserID) + len(e.ContentType) +
		len(e.Status) + len(e.LastError) + len(e.Metadata) + len(e.TraceParent) + len(e.TraceState)
	if e.Retry != nil {
		n += 100
	}
	for _, t := range []time.Time{e.LastAttemptAt, e.NextAttemptAt, e.CompletedAt, e.DeliverAt} {
		if !t.IsZero() {
			n += 56
		}
	}
	if outbox.IsJSONContentType(e.ContentType) {
		return n + len(e.Payload)
	}
	return n + base64.StdEncoding.EncodedLen(len(e.Payload))
}

// appendEvent appends e's JSON form as Event.MarshalJSON writes it, and
// reports false, having appended anything, when it cannot.
func appendEvent(b []byte, e *outbox.Event) ([]byte, bool) {
	if e == nil {
		return b, false
	}
	b = append(b, `{"id":`...)
	b = appendString(b, e.ID)
	b = append(b, `,"type":`...)
	b = appendString(b, e.Type)
	b = append(b, `,"entity_id":`...)
	b = appendString(b, e.EntityID)
	b = append(b, `,"user_id":`...)
	b = appendString(b, e.UserID)
	b = append(b, `,"priority":`...)
	b = strconv.AppendInt(b, int64(e.Priority), 10)
	b = append(b, `,"is_new_record":`...)
	b = strconv.AppendBool(b, e.IsNewRecord)
	b = append(b, `,"max_attempts":`...)
	b = strconv.AppendInt(b, int64(e.MaxAttempts), 10)
	if len(e.Metadata) > 0 {
		b = append(b, `,"metadata":`...)
		var ok bool
		if b, ok = appendJSON(b, e.Metadata); !ok {
			return b, false
		}
	}
	b = append(b, `,"content_type":`...)
	b = appendString(b, e.ContentType)
	if r := e.Retry; r != nil {
		if math.IsNaN(r.Multiplier) || math.IsInf(r.Multiplier, 0) {
			return b, false
		}
		b = append(b, `,"retry":{"initial_interval":`...)
		b = appendString(b, r.InitialInterval.String())
		b = append(b, `,"max_interval":`...)
		b = appendString(b, r.MaxInterval.String())
		b = append(b, `,"multiplier":`...)
		b = appendFloat(b, r.Multiplier)
		b = append(b, '}')
	}
	if !e.DeliverAt.IsZero() {
		b = append(b, `,"deliver_at":"`...)
		var ok bool
		if b, ok = appendTime(b, e.DeliverAt); !ok {
			return b, false
		}
		b = append(b, '"')
	}
	if e.TraceParent != "" {
		b = append(b, `,"traceparent":`...)
		b = appendString(b, e.TraceParent)
	}
	if e.TraceState != "" {
		b = append(b, `,"tracestate":`...)
		b = appendString(b, e.TraceState)
	}
	b = append(b, `,"status":`...)
	b = appendString(b, string(e.Status))
	b = append(b, `,"entity_seq":`...)
	b = strconv.AppendUint(b, e.EntitySeq, 10)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, e.Seq, 10)
	var ok bool
	for _, t := range [...]struct {
		key     string
		t       time.Time
		omitted bool
	}{
		{`,"created_at":`, e.CreatedAt, false},
		{`,"accepted_at":`, e.AcceptedAt, false},
		{`,"last_attempt_at":`, e.LastAttemptAt, e.LastAttemptAt.IsZero()},
		{`,"next_attempt_at":`, e.NextAttemptAt, e.NextAttemptAt.IsZero()},
		{`,"completed_at":`, e.CompletedAt, e.CompletedAt.IsZero()},
	} {
		if t.omitted {
			continue
		}
		b = append(append(b, t.key...), '"')
		if b, ok = appendTime(b, t.t); !ok {
			return b, false
		}
		b = append(b, '"')
	}
	b = append(b, `,"attempt_count":`...)
	b = strconv.AppendInt(b, int64(e.AttemptCount), 10)
	if e.LastError != "" {
		b = append(b, `,"last_error":`...)
		b = appendString(b, e.LastError)
	}
	// The payload as MarshalJSON chooses: JSON when its content type says
	// so and it is JSON in valid UTF-8, base64 otherwise.
	if len(e.Payload) > 0 {
		b = appendPayload(b, e)
	}
	return append(b, '}'), true
}

func appendPayload(b []byte, e *outbox.Event) []byte {
	if outbox.IsJSONContentType(e.ContentType) {
		if v, compact, ok := jsonValue(e.Payload); ok {
			return appendValue(append(b, `,"payload":`...), v, compact)
		}
	}
	b = base64.StdEncoding.AppendEncode(append(b, `,"payload_base64":"`...), e.Payload)
	return append(b, '"')
}

func appendTime(b []byte, t time.Time) ([]byte, bool) {
	b, err := t.AppendText(b) // MarshalJSON's RFC 3339, without its quotes
	return b, err == nil
}

// jsonValue returns the JSON value raw holds, without the white space
// around it, and whether it has white space between its tokens; ok is
// false unless raw is one JSON value in valid UTF-8 (utf8.Valid and
// json.Valid, in one pass).
func jsonValue(raw []byte) (v []byte, compact, ok bool) {
	var t textInfo
	i := skipSpace(raw, 0)
	end := scanValue(raw, i, 0, &t)
	if end < 0 || skipSpace(raw, end) != len(raw) || t.badUTF8 {
		return nil, false, false
	}
	return raw[i:end], !t.space, true
}

// appendJSON appends the JSON value raw compacted, as encoding/json writes
// a json.RawMessage, and reports false when raw is not JSON. (Invalid
// UTF-8 is written as it is, as encoding/json does.)
func appendJSON(b, raw []byte) ([]byte, bool) {
	var t textInfo
	i := skipSpace(raw, 0)
	end := scanValue(raw, i, 0, &t)
	if end < 0 || skipSpace(raw, end) != len(raw) {
		return b, false
	}
	return appendValue(b, raw[i:end], !t.space), true
}

func appendValue(b, v []byte, compact bool) []byte {
	if compact {
		return append(b, v...)
	}
	return appendCompact(b, v)
}

// appendCompact appends the valid JSON value v without the white space
// between its tokens, as json.Compact does.
func appendCompact(b, v []byte) []byte {
	for i := 0; i < len(v); {
		switch c := v[i]; {
		case c == '"':
			end := stringEnd(v, i)
			b = append(b, v[i:end]...)
			i = end
		case isSpace(c):
			i++
		default:
			b = append(b, c)
			i++
		}
	}
	return b
}

// appendFloat writes a float64 as encoding/json does: like %g, with the
// exponent cutoffs of ES6 and exponents unpadded.
func appendFloat(b []byte, f float64) []byte {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1] // e-09 to e-9
			b = b[:n-1]
		}
	}
	return b
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string as encoding/json does without
// HTML escaping: quotes, backslashes and control characters escaped,
// invalid UTF-8 as \ufffd, U+2028 and U+2029 escaped.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		for len(s)-i >= 8 && plain(uint64(s[i])|uint64(s[i+1])<<8|uint64(s[i+2])<<16|uint64(s[i+3])<<24|
			uint64(s[i+4])<<32|uint64(s[i+5])<<40|uint64(s[i+6])<<48|uint64(s[i+7])<<56) {
			i += 8
		}
		if i >= len(s) {
			break
		}
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
