package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"mime"
	"net/http"
	"reflect"
	"slices"
	"strings"

	"github.com/fitiqcore/outbox"
)

// readJSON checks the request's content type, reads its body within the
// limit and returns the one JSON value it holds. ServeHTTP has checked a
// declared Content-Length against the limit and reserved it in the body
// budget already.
func (s *Server) readJSON(w http.ResponseWriter, r *http.Request) (json.RawMessage, error) {
	if err := checkContentType(r.Header.Get("Content-Type")); err != nil {
		return nil, err
	}
	body, err := readBody(http.MaxBytesReader(w, r.Body, s.maxBody), r.ContentLength)
	if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
		return nil, reject(http.StatusRequestEntityTooLarge, "request body over the limit of %d bytes", mbe.Limit)
	}
	if err != nil {
		return nil, reject(http.StatusBadRequest, "read request body: %v", err)
	}
	return singleValue(body)
}

// readBody reads a body whole: into one buffer of its declared size when
// it has one, so that reading makes no copies while it grows.
func readBody(r io.Reader, size int64) ([]byte, error) {
	if size < 0 {
		return io.ReadAll(r)
	}
	buf := bytes.NewBuffer(make([]byte, 0, size+bytes.MinRead))
	_, err := buf.ReadFrom(r)
	return buf.Bytes(), err
}

// checkContentType accepts application/json, with optional parameters; a
// charset other than UTF-8 is refused, as is a missing Content-Type.
func checkContentType(ct string) error {
	if ct == "" {
		return reject(http.StatusUnsupportedMediaType, "missing Content-Type: want %s", outbox.ContentTypeJSON)
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != outbox.ContentTypeJSON {
		return reject(http.StatusUnsupportedMediaType, "unsupported Content-Type %q: want %s", ct, outbox.ContentTypeJSON)
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "utf8") {
		return reject(http.StatusUnsupportedMediaType, "unsupported charset %q: JSON is UTF-8", cs)
	}
	return nil
}

// singleValue returns the JSON value that body holds (a slice of body, not
// a copy), refusing an empty body, malformed JSON and anything after the
// value but white space.
func singleValue(body []byte) (json.RawMessage, error) {
	if v := trimSpace(body); len(v) > 0 && json.Valid(v) {
		return v, nil
	}
	// The error path: the decoder tells what is wrong, and where.
	dec := json.NewDecoder(bytes.NewReader(body))
	var v json.RawMessage
	if err := dec.Decode(&v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, reject(http.StatusBadRequest, "empty body: want a JSON object")
		}
		return nil, malformed(err)
	}
	if err := dec.Decode(new(json.RawMessage)); !errors.Is(err, io.EOF) {
		return nil, reject(http.StatusBadRequest, "malformed JSON: data after the JSON value at offset %d", dec.InputOffset())
	}
	return v, nil
}

func malformed(err error) error {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		return reject(http.StatusBadRequest, "malformed JSON at offset %d: %s", se.Offset, strings.TrimPrefix(se.Error(), "json: "))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return reject(http.StatusBadRequest, "malformed JSON: unexpected end of input")
	}
	return reject(http.StatusBadRequest, "malformed JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
}

// The keys of an event's JSON form: Event's own tags, and the two spellings
// of the payload that Event.UnmarshalJSON reads. A custom UnmarshalJSON does
// not see json.Decoder.DisallowUnknownFields, so this package checks keys
// itself, exactly (snake_case, case-sensitive).
var (
	eventKeys = append(jsonKeys(reflect.TypeFor[outbox.Event]()), "payload", "payload_base64")
	retryKeys = jsonKeys(reflect.TypeFor[outbox.RetryPolicy]())
	batchKeys = []string{"events"}
)

func jsonKeys(t reflect.Type) []string {
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

// object splits raw, a valid JSON value, as a JSON object, and refuses
// keys not in known. The values are slices of raw, not copies; a key given
// twice keeps its last value, as encoding/json does. what names the value
// in messages ("body", "event", "retry"); prefix is put before a key to
// name it in full ("retry.").
func object(raw json.RawMessage, what, prefix string, known []string) (map[string]json.RawMessage, error) {
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

// decodeEvent decodes one event from its JSON form. Every error names the
// field at fault.
func decodeEvent(raw json.RawMessage, what string) (*outbox.Event, error) {
	obj, err := object(raw, what, "", eventKeys)
	if err != nil {
		return nil, err
	}
	if r, ok := obj["retry"]; ok && bytes.HasPrefix(r, []byte("{")) {
		if _, err := object(r, "retry", "retry.", retryKeys); err != nil {
			return nil, err
		}
	}
	if err := checkText(obj); err != nil {
		return nil, err
	}
	e := new(outbox.Event)
	if err := json.Unmarshal(raw, e); err != nil {
		return nil, eventError(err, obj)
	}
	return e, nil
}

// eventError turns a decoding error of an event into a client error naming
// the field.
func eventError(err error, obj map[string]json.RawMessage) error {
	var (
		ve  *outbox.ValidationError
		ute *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &ve):
		return err // "invalid payload_base64: ..."; statusOf maps it
	case errors.As(err, &ute):
		return reject(http.StatusBadRequest, "invalid %s: want %s, got %s", fieldName(ute.Field), jsonKind(ute.Type), ute.Value)
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

// fieldName turns the path of an UnmarshalTypeError into the field's JSON
// name: encoding/json puts the Go names of embedded structs in the path
// ("eventAlias.priority"), which the JSON form does not have.
func fieldName(path string) string {
	parts := strings.Split(path, ".")
	for i, p := range parts {
		if slices.Contains(eventKeys, p) {
			return strings.Join(parts[i:], ".")
		}
	}
	if path == "" {
		return "event"
	}
	return path
}

// jsonKind names what JSON a Go type is decoded from.
func jsonKind(t reflect.Type) string {
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

// kindOf names the kind of a JSON value, for messages.
func kindOf(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}
