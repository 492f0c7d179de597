package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/fitiqcore/outbox"
)

// readRequest checks the request's content type and reads its body whole,
// within the limit. ServeHTTP has checked a declared Content-Length
// against the limit and reserved it in the body budget already.
func (s *Server) readRequest(w http.ResponseWriter, r *http.Request) ([]byte, error) {
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
	return body, nil
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
// value but white space, with the message that says what is wrong, and
// where. The decoders call it when their one pass finds the body not
// well-formed, for that message.
func singleValue(body []byte) (json.RawMessage, error) {
	if v := trimSpace(body); len(v) > 0 && json.Valid(v) {
		return v, nil
	}
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

// errSyntax is what the one-pass decoders return for JSON that is not
// well-formed; the caller asks singleValue for the message. (Should the
// two ever disagree, the client still gets a 400.)
var errSyntax = &requestError{status: http.StatusBadRequest, msg: "malformed JSON"}

// decodeSingle decodes the body of POST /v1/events: one event.
func decodeSingle(body []byte) (*outbox.Event, error) {
	if i := skipSpace(body, 0); i < len(body) && body[i] == '{' {
		var d decoder
		e := new(outbox.Event)
		end, err := d.event(body, i, 0, "body", e)
		if end >= 0 && skipSpace(body, end) == len(body) {
			return e, err // the body is well-formed: the decoder's verdict stands
		}
	}
	raw, err := singleValue(body) // malformed, not an object, or data after it
	if err != nil {
		return nil, err
	}
	var d decoder
	e := new(outbox.Event)
	if _, err := d.event(raw, 0, 0, "body", e); err != nil {
		return nil, err
	}
	return e, nil
}

// decodeBatch decodes the body of POST /v1/events/batch and calls check
// on each event once it is decoded: the first error, in the order of the
// events, is the answer, prefixed with the event's index. The one pass
// takes the body as clients send it, {"events":[...]}; anything else, and
// every error, is decoded again by the general path, which finds the
// error that comes first: malformed JSON anywhere, then the body's own
// keys, then the events in order.
func decodeBatch(body []byte, check func(*outbox.Event) error) ([]*outbox.Event, error) {
	if events, ok := fastBatch(body, check); ok {
		return events, nil
	}
	raw, err := singleValue(body)
	if err != nil {
		return nil, err
	}
	if raw[0] != '{' {
		return nil, reject(http.StatusBadRequest, "body must be a JSON object, got %s", kindOf(raw))
	}
	var (
		list              []byte
		unknown           string
		found, hasUnknown bool
	)
	members(raw, func(k string, v []byte) {
		switch {
		case k == "events":
			list, found = v, true // a key given twice keeps its last value
		case !hasUnknown || k < unknown: // name the first in order
			unknown, hasUnknown = k, true
		}
	})
	switch {
	case hasUnknown:
		return nil, reject(http.StatusBadRequest, "unknown field %q", unknown)
	case !found:
		return nil, reject(http.StatusBadRequest, "invalid events: required")
	case list[0] != '[':
		return nil, reject(http.StatusBadRequest, "invalid events: want an array, got %s", kindOf(list))
	}
	items := elements(list)
	if len(items) == 0 {
		return nil, reject(http.StatusBadRequest, "invalid events: want at least one event")
	}
	var (
		d      decoder
		s      slab
		events = make([]*outbox.Event, len(items))
	)
	for i, item := range items {
		e := s.next()
		_, err := d.event(item, 0, 2, "event", e)
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

// fastBatch is decodeBatch's one pass: ok is false when the body is not
// a well-formed {"events":[...]} of one or more valid events.
func fastBatch(body []byte, check func(*outbox.Event) error) (events []*outbox.Event, ok bool) {
	const key = `"events"`
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return nil, false
	}
	if i = skipSpace(body, i+1); !bytes.HasPrefix(body[i:], []byte(key)) {
		return nil, false
	}
	if i = skipSpace(body, i+len(key)); i >= len(body) || body[i] != ':' {
		return nil, false
	}
	if i = skipSpace(body, i+1); i >= len(body) || body[i] != '[' {
		return nil, false
	}
	var (
		d decoder
		s slab
	)
	events = make([]*outbox.Event, 0, 16)
	for i = skipSpace(body, i+1); ; i = skipSpace(body, i+1) {
		if i >= len(body) || body[i] != '{' {
			return nil, false
		}
		e := s.next()
		end, err := d.event(body, i, 2, "event", e)
		if err != nil || check(e) != nil {
			return nil, false
		}
		events = append(events, e)
		if i = skipSpace(body, end); i < len(body) && body[i] == ',' {
			continue
		}
		if i < len(body) && body[i] == ']' {
			break
		}
		return nil, false
	}
	if i = skipSpace(body, i+1); i >= len(body) || body[i] != '}' {
		return nil, false
	}
	return events, skipSpace(body, i+1) == len(body)
}

// slab hands out zeroed events from chunks, so that a batch costs a few
// allocations rather than one per event. An event stays where it was
// handed out: a full chunk is left to the events in it.
type slab struct{ chunk []outbox.Event }

func (s *slab) next() *outbox.Event {
	if len(s.chunk) == cap(s.chunk) {
		s.chunk = make([]outbox.Event, 0, min(max(2*cap(s.chunk), 16), 256))
	}
	s.chunk = s.chunk[:len(s.chunk)+1]
	return &s.chunk[len(s.chunk)-1]
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
