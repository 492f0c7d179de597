package httpapi

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// Walking raw JSON without copying it, once it is known to be valid: the
// general path of the decoders (decode.go), taken for bodies of unusual
// shape and to find the first error, checks a body whole (singleValue:
// json.Valid), then splits its objects and arrays into slices of the body
// itself. Every function here takes JSON that is known to be valid; the
// one pass that checks JSON as it goes is lex.go's.

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

// isLow reports whether r is a low surrogate.
func isLow(r rune) bool { return r >= 0xDC00 && r <= 0xDFFF }
