package httpapi

import (
	"encoding/json"
	"unicode/utf8"

	"github.com/fitiqcore/outbox"
)

// Text that JSON would alter. encoding/json replaces invalid UTF-8 in a
// string, and every \uD800–\uDFFF escape that is not a high surrogate
// followed by a low one, with U+FFFD: two different ids would be stored as
// one, and the event published would not be the one posted. The event's
// strings are checked in the raw JSON, before decoding, and refused with a
// 400 naming the field.

// checkText checks the raw JSON of an event's fields (obj, as split by
// object): every string in every field but the payload must be valid
// UTF-8 without lone surrogate escapes; the payload must be valid UTF-8
// (it is stored as its JSON text, so its escapes are kept as written).
func checkText(obj map[string]json.RawMessage) error {
	for _, k := range eventKeys { // obj holds no others (object)
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
		if reason := checkStrings(raw); reason != "" {
			return &outbox.ValidationError{Field: k, Reason: reason}
		}
	}
	return nil
}
