package httpapi

import (
	"encoding/binary"
	"unicode/utf8"
)

// Scanning raw JSON and checking it in the same pass. The ingest routes
// decode a body in one pass (decode.go): these functions tell where each
// value ends and whether it is well-formed, exactly as encoding/json's
// json.Valid does (a fuzz test holds them to it), and gather on the way
// what the text checks need (text.go). They allocate only the message of
// a lone surrogate escape, and for a container nested deeper than 256
// levels.

// maxDepth is encoding/json's limit of nested objects and arrays: a value
// nested deeper is not valid JSON to json.Valid.
const maxDepth = 10000

// textInfo is what scanning a value learns about the strings in it (its
// object keys included) and the white space between its tokens.
type textInfo struct {
	reason  string // the first text fault in its strings (text.go), "" none
	badUTF8 bool   // invalid UTF-8 in a string
	escaped bool   // a backslash escape in a string
	space   bool   // white space between its tokens: not compact
}

// scanValue returns the index just past the JSON value that starts at i,
// or -1 when none does or it is malformed. depth is the number of objects
// and arrays open around it.
func scanValue(raw []byte, i, depth int, t *textInfo) int {
	if i >= len(raw) {
		return -1
	}
	switch c := raw[i]; {
	case c == '"':
		return scanString(raw, i, t)
	case c == '{' || c == '[':
		return scanContainer(raw, i, depth, t)
	case c == 't':
		return scanLiteral(raw, i, "true")
	case c == 'f':
		return scanLiteral(raw, i, "false")
	case c == 'n':
		return scanLiteral(raw, i, "null")
	case c == '-' || c >= '0' && c <= '9':
		return scanNumber(raw, i)
	}
	return -1
}

func scanLiteral(raw []byte, i int, lit string) int {
	if len(raw)-i < len(lit) || string(raw[i:i+len(lit)]) != lit {
		return -1
	}
	return i + len(lit)
}

// scanNumber returns the index just past the number that starts at i:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, or -1. What follows it
// is the caller's to check.
func scanNumber(raw []byte, i int) int {
	if raw[i] == '-' {
		i++
	}
	switch {
	case i < len(raw) && raw[i] == '0':
		i++
	case i < len(raw) && raw[i] >= '1' && raw[i] <= '9':
		i = digits(raw, i+1)
	default:
		return -1
	}
	if i < len(raw) && raw[i] == '.' {
		j := digits(raw, i+1)
		if j == i+1 {
			return -1
		}
		i = j
	}
	if i < len(raw) && (raw[i] == 'e' || raw[i] == 'E') {
		i++
		if i < len(raw) && (raw[i] == '+' || raw[i] == '-') {
			i++
		}
		j := digits(raw, i)
		if j == i {
			return -1
		}
		i = j
	}
	return i
}

func digits(raw []byte, i int) int {
	for i < len(raw) && raw[i] >= '0' && raw[i] <= '9' {
		i++
	}
	return i
}

// Eight bytes at a time: plain reports whether none of them needs a look
// of its own in a string: a quote, a backslash, a control character or a
// byte of a multi-byte character.
const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

func plain(x uint64) bool {
	ctl := (x - lsb*0x20) &^ x // a byte under 0x20 sets its high bit
	q := x ^ (lsb * '"')
	bs := x ^ (lsb * '\\')
	quote := (q - lsb) &^ q   // a zero byte (a quote) sets its high bit
	slash := (bs - lsb) &^ bs // the same for a backslash
	return (ctl|quote|slash|x)&msb == 0
}

// scanString returns the index just past the string literal that starts
// at i (its opening quote), or -1. It notes in t the string's escapes,
// invalid UTF-8 and the first text fault.
func scanString(raw []byte, i int, t *textInfo) int {
	for i++; ; {
		for len(raw)-i >= 8 && plain(binary.LittleEndian.Uint64(raw[i:])) {
			i += 8
		}
		if i >= len(raw) {
			return -1
		}
		switch c := raw[i]; {
		case c == '"':
			return i + 1
		case c == '\\':
			t.escaped = true
			if i+1 >= len(raw) {
				return -1
			}
			switch raw[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
				continue
			case 'u':
			default:
				return -1
			}
			r, ok := escapeHex(raw, i)
			if !ok {
				return -1
			}
			switch {
			case r >= 0xD800 && r <= 0xDBFF && i+12 <= len(raw) && raw[i+6] == '\\' && raw[i+7] == 'u':
				if low, ok := escapeHex(raw, i+6); !ok {
					return -1
				} else if isLow(low) {
					i += 12 // a high and a low surrogate: one character
					continue
				}
				t.fault(loneSurrogate(raw[i+2 : i+6]))
			case r >= 0xD800 && r <= 0xDFFF:
				t.fault(loneSurrogate(raw[i+2 : i+6]))
			}
			i += 6
		case c < 0x20:
			return -1
		case c < utf8.RuneSelf:
			i++
		default:
			r, n := utf8.DecodeRune(raw[i:])
			if r == utf8.RuneError && n <= 1 {
				t.badUTF8 = true
				t.fault(faultUTF8)
			}
			i += n
		}
	}
}

// escapeHex reads the four hex digits of the \u escape at raw[i].
func escapeHex(raw []byte, i int) (rune, bool) {
	if i+6 > len(raw) {
		return 0, false
	}
	var r rune
	for _, c := range raw[i+2 : i+6] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	return r, true
}

func (t *textInfo) fault(reason string) {
	if t.reason == "" {
		t.reason = reason
	}
}

// skip skips JSON white space from i and notes in t whether there was any.
func (t *textInfo) skip(raw []byte, i int) int {
	j := skipSpace(raw, i)
	if j > i {
		t.space = true
	}
	return j
}

// scanContainer returns the index just past the object or array that
// starts at i, or -1. It walks nested containers without recursing: a
// stack of bits says which of those open are objects.
func scanContainer(raw []byte, i, depth int, t *textInfo) int {
	var small [4]uint64
	stack := small[:]
	n := 0 // containers open in this call
	push := func(object bool) {
		if n/64 == len(stack) {
			stack = append(stack, 0)
		}
		if object {
			stack[n/64] |= 1 << (n % 64)
		} else {
			stack[n/64] &^= 1 << (n % 64)
		}
		n++
	}
	inObject := func() bool { return stack[(n-1)/64]&(1<<((n-1)%64)) != 0 }

descend:
	for {
		// raw[i] opens a container.
		if depth+n >= maxDepth {
			return -1
		}
		push(raw[i] == '{')
		i = t.skip(raw, i+1)
		if i < len(raw) && (raw[i] == '}' && inObject() || raw[i] == ']' && !inObject()) {
			i++
			n--
		} else {
			i = member(raw, i, inObject(), t)
			if i < 0 {
				return -1
			}
			if raw[i] == '{' || raw[i] == '[' {
				continue // descend
			}
			if i = scanValue(raw, i, 0, t); i < 0 {
				return -1
			}
		}
		// After a value: a comma and the next member, or the end of its
		// container and of those it ends.
		for {
			if n == 0 {
				return i
			}
			i = t.skip(raw, i)
			if i >= len(raw) {
				return -1
			}
			switch c := raw[i]; {
			case c == ',':
				i = member(raw, t.skip(raw, i+1), inObject(), t)
				if i < 0 {
					return -1
				}
				if raw[i] == '{' || raw[i] == '[' {
					continue descend
				}
				if i = scanValue(raw, i, 0, t); i < 0 {
					return -1
				}
				continue
			case c == '}' && inObject(), c == ']' && !inObject():
				i++
				n--
				continue
			}
			return -1
		}
	}
}

// member scans, in an object, a key and its colon, and returns the index
// of the member's value; in an array it returns i, the value's index.
// It returns -1 when there is no value to scan there.
func member(raw []byte, i int, object bool, t *textInfo) int {
	if object {
		if i >= len(raw) || raw[i] != '"' {
			return -1
		}
		if i = scanString(raw, i, t); i < 0 {
			return -1
		}
		if i = t.skip(raw, i); i >= len(raw) || raw[i] != ':' {
			return -1
		}
		i = t.skip(raw, i+1)
	}
	if i >= len(raw) {
		return -1
	}
	return i
}
