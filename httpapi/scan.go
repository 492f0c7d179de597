package httpapi

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// Walking raw JSON without copying it. A body is checked once as a whole
// (singleValue: json.Valid); its objects and arrays are then split into
// slices of the body itself, so that a batch is not copied once per level
// (the body, its "events" array, each event) before it is decoded. Every
// function here takes JSON that is known to be valid.

// skipSpace returns the index of the first byte at or after i that is not
// JSON white space.
func skipSpace(raw []byte, i int) int {
	for i < len(raw) && isSpace(raw[i]) {
		i++
	}
	return i
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// trimSpace trims JSON white space, and only that, from both ends.
func trimSpace(raw []byte) []byte { return bytes.Trim(raw, " \t\r\n") }

// valueEnd returns the index just past the JSON value that starts at i.
func valueEnd(raw []byte, i int) int {
	switch raw[i] {
	case '"':
		return stringEnd(raw, i)
	case '{', '[':
		depth := 0
		for ; i < len(raw); i++ {
			switch raw[i] {
			case '"':
				i = stringEnd(raw, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
		return i
	}
	// A number, true, false or null.
	for i < len(raw) && !isSpace(raw[i]) && raw[i] != ',' && raw[i] != '}' && raw[i] != ']' {
		i++
	}
	return i
}

// stringEnd returns the index just past the string literal that starts at
// i (its opening quote).
func stringEnd(raw []byte, i int) int {
	for i++; i < len(raw); i++ {
		switch raw[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return i
}

// members calls fn with each key of the object raw (which starts with '{')
// and the slice of raw that holds its value, in order.
func members(raw []byte, fn func(key string, value []byte)) {
	i := skipSpace(raw, 1)
	for i < len(raw) && raw[i] == '"' {
		end := stringEnd(raw, i)
		key := unquote(raw[i:end])
		i = skipSpace(raw, skipSpace(raw, end)+1) // past the colon
		vend := valueEnd(raw, i)
		fn(key, raw[i:vend])
		if i = skipSpace(raw, vend); i < len(raw) && raw[i] == ',' {
			i = skipSpace(raw, i+1)
		}
	}
}

// elements returns the slices of raw that hold the values of the array
// raw (which starts with '[').
func elements(raw []byte) []json.RawMessage {
	var out []json.RawMessage
	for i := skipSpace(raw, 1); i < len(raw) && raw[i] != ']'; {
		end := valueEnd(raw, i)
		out = append(out, raw[i:end])
		if i = skipSpace(raw, end); i < len(raw) && raw[i] == ',' {
			i = skipSpace(raw, i+1)
		}
	}
	return out
}

// unquote decodes a string literal as encoding/json does (escapes, invalid
// UTF-8 as U+FFFD).
func unquote(lit []byte) string {
	if s := lit[1 : len(lit)-1]; bytes.IndexByte(s, '\\') < 0 && utf8.Valid(s) {
		return string(s)
	}
	var s string
	_ = json.Unmarshal(lit, &s) // valid JSON: a string literal decodes
	return s
}

// checkStrings scans the strings of a JSON value (object keys included)
// and says what in them encoding/json would alter, or "" when nothing.
func checkStrings(raw []byte) string {
	for i := 0; i < len(raw); i++ {
		if raw[i] != '"' {
			continue // outside strings, valid JSON is ASCII
		}
		for i++; raw[i] != '"'; {
			switch c := raw[i]; {
			case c == '\\' && raw[i+1] == 'u':
				r := hex4(raw[i+2 : i+6])
				switch {
				case r >= 0xD800 && r <= 0xDBFF && i+12 <= len(raw) && raw[i+6] == '\\' && raw[i+7] == 'u' &&
					isLow(hex4(raw[i+8:i+12])):
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

func isLow(r rune) bool { return r >= 0xDC00 && r <= 0xDFFF }

// hex4 reads the four hex digits of a \u escape.
func hex4(b []byte) rune {
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
