package httpapi

// The decoding of events as it was before the one-pass decoder (decode.go),
// kept as the reference the decoder is compared with (decode_equiv_test.go):
// a map of raw values per object to check keys, the text checks on it,
// then json.Unmarshal into outbox.Event.

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/fitiqcore/outbox"
)

// refBatch is the old POST /v1/events/batch decoding (readBatch): the body
// checked whole, split into a map per object, each event decoded by
// refDecodeEvent, then checked.
func refBatch(body []byte, check func(*outbox.Event) error) ([]*outbox.Event, error) {
	raw, err := singleValue(body)
	if err != nil {
		return nil, err
	}
	obj, err := refObject(raw, "body", "", refBatchKeys)
	if err != nil {
		return nil, err
	}
	list, ok := obj["events"]
	if !ok {
		return nil, reject(http.StatusBadRequest, "invalid events: required")
	}
	if len(list) == 0 || list[0] != '[' {
		return nil, reject(http.StatusBadRequest, "invalid events: want an array, got %s", kindOf(list))
	}
	items := elements(list)
	if len(items) == 0 {
		return nil, reject(http.StatusBadRequest, "invalid events: want at least one event")
	}
	events := make([]*outbox.Event, len(items))
	for i, item := range items {
		e, err := refDecodeEvent(item, "event")
		if err == nil {
			err = check(e)
		}
		if err != nil {
			return nil, withIndex(i, err)
		}
		events[i] = e
	}
	return events, nil
}

// refSingle is the old POST /v1/events decoding.
func refSingle(body []byte) (*outbox.Event, error) {
	raw, err := singleValue(body)
	if err != nil {
		return nil, err
	}
	return refDecodeEvent(raw, "body")
}

// The keys of an event's JSON form: Event's own tags, and the two spellings
// of the payload that Event.UnmarshalJSON reads. A custom UnmarshalJSON does
// not see json.Decoder.DisallowUnknownFields, so this package checks keys
// itself, exactly (snake_case, case-sensitive).
var (
	refEventKeys = append(refJSONKeys(reflect.TypeFor[outbox.Event]()), "payload", "payload_base64")
	refRetryKeys = refJSONKeys(reflect.TypeFor[outbox.RetryPolicy]())
	refBatchKeys = []string{"events"}
)

func refJSONKeys(t reflect.Type) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case !f.IsExported() || name == "-":
		case name == "":
			keys = append(keys, f.Name)
		default:
			keys = append(keys, name)
		}
	}
	return keys
}

// refObject splits raw, a valid JSON value, as a JSON object, and refuses
// keys not in known. The values are slices of raw, not copies; a key given
// twice keeps its last value, as encoding/json does. what names the value
// in messages ("body", "event", "retry"); prefix is put before a key to
// name it in full ("retry.").
func refObject(raw json.RawMessage, what, prefix string, known []string) (map[string]json.RawMessage, error) {
	raw = trimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return nil, reject(http.StatusBadRequest, "%s must be a JSON object, got %s", what, kindOf(raw))
	}
	obj := make(map[string]json.RawMessage)
	unknown := false
	members(raw, func(k string, v []byte) {
		obj[k] = v
		unknown = unknown || !slices.Contains(known, k)
	})
	if unknown { // name the first in order, whatever the map's order
		for _, k := range slices.Sorted(maps.Keys(obj)) {
			if !slices.Contains(known, k) {
				return nil, reject(http.StatusBadRequest, "unknown field %q", prefix+k)
			}
		}
	}
	return obj, nil
}

// refDecodeEvent decodes one event from its JSON form. Every error names the
// field at fault.
func refDecodeEvent(raw json.RawMessage, what string) (*outbox.Event, error) {
	obj, err := refObject(raw, what, "", refEventKeys)
	if err != nil {
		return nil, err
	}
	if r, ok := obj["retry"]; ok && bytes.HasPrefix(r, []byte("{")) {
		if _, err := refObject(r, "retry", "retry.", refRetryKeys); err != nil {
			return nil, err
		}
	}
	if err := refCheckText(obj); err != nil {
		return nil, err
	}
	e := new(outbox.Event)
	if err := json.Unmarshal(raw, e); err != nil {
		return nil, refEventError(err, obj)
	}
	return e, nil
}

// refEventError turns a decoding error of an event into a client error naming
// the field.
func refEventError(err error, obj map[string]json.RawMessage) error {
	var (
		ve  *outbox.ValidationError
		ute *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &ve):
		return err // "invalid payload_base64: ..."; statusOf maps it
	case errors.As(err, &ute):
		return reject(http.StatusBadRequest, "invalid %s: want %s, got %s", refFieldName(ute.Field), refJSONKind(ute.Type), ute.Value)
	}
	// Errors of a field's own UnmarshalJSON (a time that does not parse)
	// carry no field name: find the field by decoding them one at a time.
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		one, _ := json.Marshal(map[string]json.RawMessage{k: obj[k]})
		if json.Unmarshal(one, new(outbox.Event)) != nil {
			return reject(http.StatusBadRequest, "invalid %s: %s", k, strings.TrimPrefix(err.Error(), "json: "))
		}
	}
	return reject(http.StatusBadRequest, "invalid event: %s", strings.TrimPrefix(err.Error(), "json: "))
}

// refFieldName turns the path of an UnmarshalTypeError into the field's JSON
// name: encoding/json puts the Go names of embedded structs in the path
// ("eventAlias.priority"), which the JSON form does not have.
func refFieldName(path string) string {
	parts := strings.Split(path, ".")
	for i, p := range parts {
		if slices.Contains(refEventKeys, p) {
			return strings.Join(parts[i:], ".")
		}
	}
	if path == "" {
		return "event"
	}
	return path
}

// refJSONKind names what JSON a Go type is decoded from.
func refJSONKind(t reflect.Type) string {
	if t == nil {
		return "another type"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "an array"
	}
	return "another type"
}

// refCheckText checks the raw JSON of an event's fields (obj, as split by
// object): every string in every field but the payload must be valid
// UTF-8 without lone surrogate escapes; the payload must be valid UTF-8
// (it is stored as its JSON text, so its escapes are kept as written).
func refCheckText(obj map[string]json.RawMessage) error {
	for _, k := range refEventKeys { // obj holds no others (object)
		raw, ok := obj[k]
		if !ok {
			continue
		}
		if k == "payload" {
			if !utf8.Valid(raw) {
				return &outbox.ValidationError{Field: k, Reason: "not valid UTF-8"}
			}
			continue
		}
		if reason := refCheckStrings(raw); reason != "" {
			return &outbox.ValidationError{Field: k, Reason: reason}
		}
	}
	return nil
}

// refCheckStrings scans the strings of a JSON value (object keys included)
// and says what in them encoding/json would alter, or "" when nothing.
func refCheckStrings(raw []byte) string {
	for i := 0; i < len(raw); i++ {
		if raw[i] != '"' {
			continue // outside strings, valid JSON is ASCII
		}
		for i++; raw[i] != '"'; {
			switch c := raw[i]; {
			case c == '\\' && raw[i+1] == 'u':
				r := refHex4(raw[i+2 : i+6])
				switch {
				case r >= 0xD800 && r <= 0xDBFF && i+12 <= len(raw) && raw[i+6] == '\\' && raw[i+7] == 'u' &&
					isLow(refHex4(raw[i+8:i+12])):
					i += 12 // a high and a low surrogate: one character
				case r >= 0xD800 && r <= 0xDFFF:
					return `lone surrogate escape \u` + string(raw[i+2:i+6]) + " (JSON would turn it into U+FFFD)"
				default:
					i += 6
				}
			case c == '\\':
				i += 2
			case c < utf8.RuneSelf:
				i++
			default:
				r, n := utf8.DecodeRune(raw[i:])
				if r == utf8.RuneError && n <= 1 {
					return "not valid UTF-8"
				}
				i += n
			}
		}
	}
	return ""
}

// refHex4 reads the four hex digits of a \u escape.
func refHex4(b []byte) rune {
	var r rune
	for _, c := range b {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		}
	}
	return r
}
