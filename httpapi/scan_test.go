package httpapi

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// FuzzScan checks the zero-copy splitting of objects and arrays against
// encoding/json: the same keys (escapes decoded, the last of a repeated key
// kept) and the same bytes for every value, at every level.
func FuzzScan(f *testing.F) {
	for _, s := range []string{
		`{"a":1,"b":[1,2,{"c":"]"}],"a":"\"}"}`,
		` [ 1 , "x" ,{ } , [ ], null,true ,-1.5e3 ] `,
		`{"\u0061":1,"a":2,"\ud800":3,"\\":4}`,
		"{\"k\xff\":1}",
		`{"events":[{"type":"a","payload":{"x":[1,{"y":"\\"}]}}]}`,
		`{}`, `[]`, `"s"`, `0`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		raw := trimSpace([]byte(s))
		if len(raw) == 0 || !json.Valid(raw) {
			return
		}
		checkSplit(t, raw)
	})
}

func checkSplit(t *testing.T, raw []byte) {
	t.Helper()
	if end := valueEnd(raw, 0); end != len(raw) {
		t.Fatalf("valueEnd(%q) = %d, want %d", raw, end, len(raw))
	}
	switch raw[0] {
	case '{':
		var want map[string]json.RawMessage
		if err := json.Unmarshal(raw, &want); err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
		got := map[string]json.RawMessage{}
		members(raw, func(k string, v []byte) { got[k] = v })
		if len(got) != len(want) {
			t.Fatalf("members(%q) = %q, want %q", raw, got, want)
		}
		for k, w := range want {
			if g, ok := got[k]; !ok || !bytes.Equal(g, w) {
				t.Fatalf("members(%q)[%q] = %q, want %q", raw, k, g, w)
			}
			checkSplit(t, got[k])
		}
	case '[':
		var want []json.RawMessage
		if err := json.Unmarshal(raw, &want); err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
		got := elements(raw)
		if len(got) != len(want) {
			t.Fatalf("elements(%q) = %q, want %q", raw, got, want)
		}
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("elements(%q)[%d] = %q, want %q", raw, i, got[i], want[i])
			}
			checkSplit(t, got[i])
		}
	}
}

func TestCheckStrings(t *testing.T) {
	tests := []struct {
		raw, want string // want: "" for nothing JSON would alter
	}{
		{`"plain"`, ""},
		{`"Zoë 😀"`, ""},
		{`"\ud83d\ude00"`, ""},
		{`"\uD83D\uDE00"`, ""},
		{`"\udbff\udfff"`, ""},
		{`"\\udc00"`, ""}, // an escaped backslash, then the letters udc00
		{`"\\\udc00"`, "lone surrogate escape"},
		{`"\ufffd"`, ""}, // U+FFFD as written
		{"\"\xef\xbf\xbd\"", ""},
		{`"\udc00"`, "lone surrogate escape"},
		{`"\ud800"`, "lone surrogate escape"},
		{`"\ud800x"`, "lone surrogate escape"},
		{`"\ud800\n"`, "lone surrogate escape"},
		{`"\ud800\ud800"`, "lone surrogate escape"},
		{`"\ud83d\ude00\udc00"`, "lone surrogate escape"},
		{"\"\xff\"", "not valid UTF-8"},
		{"\"\xc3\"", "not valid UTF-8"},
		{"\"\xed\xa0\x80\"", "not valid UTF-8"},     // a surrogate in UTF-8
		{"\"\xf4\x90\x80\x80\"", "not valid UTF-8"}, // past U+10FFFF
		{`{"k":["a",{"\udc00":1}]}`, "lone surrogate escape"},
		{`{"k":1,"v":[true,null,2]}`, ""},
	}
	for _, tt := range tests {
		got := checkStrings([]byte(tt.raw))
		if (tt.want == "") != (got == "") || !bytes.Contains([]byte(got), []byte(tt.want)) {
			t.Errorf("checkStrings(%q) = %q, want %q", tt.raw, got, tt.want)
		}
		// The reference, for a string: encoding/json brings in a U+FFFD
		// that was not written exactly when checkStrings objects.
		if tt.raw[0] != '"' {
			continue
		}
		var s string
		if err := json.Unmarshal([]byte(tt.raw), &s); err != nil {
			t.Fatalf("%q: %v", tt.raw, err)
		}
		written := strings.Count(tt.raw, "\uFFFD") + strings.Count(strings.ToLower(tt.raw), `\ufffd`)
		if altered := strings.Count(s, "\uFFFD") > written; altered != (tt.want != "") {
			t.Errorf("%q: encoding/json decodes it to %q (altered %v), but checkStrings says %q", tt.raw, s, altered, got)
		}
	}
}
