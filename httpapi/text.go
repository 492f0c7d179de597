package httpapi

// Text that JSON would alter. encoding/json replaces invalid UTF-8 in a
// string, and every \uD800–\uDFFF escape that is not a high surrogate
// followed by a low one, with U+FFFD: two different ids would be stored as
// one, and the event published would not be the one posted. The event's
// strings are checked in the raw JSON while it is decoded (scanString
// notes the first fault of each value) and refused with a 400 naming the
// field: every string in every field but the payload must be valid UTF-8
// without lone surrogate escapes; the payload must be valid UTF-8 (it is
// stored as its JSON text, so its escapes are kept as written). Only the
// last value of a field given twice counts, as only it is kept.

// The text faults, as the error messages name them.
const faultUTF8 = "not valid UTF-8"

func loneSurrogate(hex []byte) string {
	return `lone surrogate escape \u` + string(hex) + " (JSON would turn it into U+FFFD)"
}
