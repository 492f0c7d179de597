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
	case fDeliverAt:
		return &e.DeliverAt
	}
	return &e.CompletedAt
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
