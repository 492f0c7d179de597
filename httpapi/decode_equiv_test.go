package httpapi

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/fitiqcore/outbox"
)

// The one-pass decoder (decode.go, lex.go) against the reference, the
// decoding it replaced (decode_ref_test.go): the same bodies accepted,
// the same events, the same errors (status and message), and the
// scanner against encoding/json.

// checkStrings is the text check of a JSON value by the scanner: what
// TestCheckStrings holds to encoding/json.
func checkStrings(raw []byte) string {
	var t textInfo
	scanValue(raw, 0, 0, &t)
	return t.reason
}

// refusedType is refused by the check the tests pass to decodeBatch, so
// that the order of decoding and checking is compared too.
const refusedType = "type.refused"

func checkForTest(e *outbox.Event) error {
	if e.Type == refusedType {
		return CheckType([]string{"a"}, e.Type)
	}
	return nil
}

// equivSeeds are bodies that reach every rule of the decoder: each kind
// of value in each field, null, keys given twice, escapes in keys and
// strings, text faults, time and retry errors, and every precedence
// between them.
var equivSeeds = []string{
	`{"type":"reminder.due","entity_id":"r-1","deliver_at":"2026-12-02T09:00:00Z","traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01","tracestate":"rojo=1","payload":{}}`,
	`{"type":"t","deliver_at":"tomorrow","traceparent":7}`,
	`{"type":"t","deliver_at":null,"tracestate":"\u00e9","traceparent":null}`,
	`{"type":"mood.created","entity_id":"m-1","user_id":"u1","payload":{"score":4}}`,
	`{"id":"0192f0a0-0000-7000-8000-000000000001","type":"a.b","priority":9,"metadata":{"k":"v"},"payload_base64":"AAE=","content_type":"application/octet-stream"}`,
	`{"type":"t","retry":{"initial_interval":"1s","max_interval":"1m","multiplier":2},"max_attempts":3,"is_new_record":true}`,
	`{"type":"t","retry":{"initial_interval":"1s","max_interval":"1m","multiplier":2.5e0},"retry":null}`,
	`{"type":"t","retry":null,"retry":{"initial_interval":"1s","max_interval":"1m"}}`,
	`{"type":"t","retry":{"Initial_Interval":"1s","MAX_INTERVAL":"1m","jitter":1},"retry":{"initial_interval":"2s","max_interval":"1m","multiplier":3}}`,
	`{"type":"t","retry":{"initial_interval":"1s","max_interval":"1m","multiplier":2,"jitter":1,"a":2}}`,
	`{"type":"t","retry":{"initial_interval":1,"max_interval":"1m","multiplier":"x"}}`,
	`{"type":"t","retry":{"initial_interval":"1s","max_interval":"1m","multiplier":1e400}}`,
	`{"type":"t","retry":{"initial_interval":"1s","max_interval":{},"multiplier":[1]}}`,
	`{"type":"t","retry":{"initial_interval":"soon","max_interval":"1m"}}`,
	`{"type":"t","retry":{"initial_interval":"1s","max_interval":null}}`,
	`{"type":"t","retry":{"initial_interval":"1s\udc00","max_interval":"1m"}}`,
	`{"type":"t","retry":"1s"}`, `{"type":"t","retry":5}`, `{"type":"t","retry":true}`, `{"type":"t","retry":[1]}`,
	`{"type":"t","retry":{"initial_interval":"\u0031s","max_interval":"1m","multiplier":1}}`,
	`{"type":"t","entity_id":" A"}`, `{"type":"t","entity_id":"\udc00"}`, `{"type":"t","metadata":{"n":12345678901234567890}}`,
	`{"type":"t","created_at":"1700-01-01T00:00:00Z"}`, `{"type":"t","payload":"\ud800"}`, `[]`, `{"type":1}`, `{`,
	`{"type":"t","created_at":"2024-01-02T03:04:05.123456789+05:30","accepted_at":"2024-01-02T03:04:05Z"}`,
	`{"type":"t","created_at":"yesterday"}`, `{"type":"t","created_at":5}`, `{"type":"t","created_at":{}}`,
	`{"type":"t","created_at":null,"last_attempt_at":null}`,
	`{"type":"t","created_at":"bad","accepted_at":"bad2"}`,
	`{"type":"t","attempt_count":"x","created_at":"bad"}`,
	`{"type":"t","priority":"x","created_at":"bad"}`,
	`{"type":"t","created_at":"bad","created_at":"2024-01-02T03:04:05Z"}`,
	`{"type":"t","created_at":"2024-01-02T03:04:05\u005a"}`,
	`{"type":"t","priority":"x","priority":1}`, `{"type":"t","priority":1,"priority":"x"}`,
	`{"type":"t","priority":null,"max_attempts":null,"is_new_record":null,"seq":null,"entity_seq":null}`,
	`{"type":"t","priority":1.5}`, `{"type":"t","priority":1e2}`, `{"type":"t","priority":-0}`, `{"type":"t","priority":99999999999999999999}`,
	`{"type":"t","priority":-9223372036854775808}`, `{"type":"t","priority":9223372036854775807}`,
	`{"type":"t","seq":-1}`, `{"type":"t","seq":-0}`, `{"type":"t","seq":18446744073709551615}`, `{"type":"t","entity_seq":18446744073709551616}`,
	`{"type":"t","priority":true}`, `{"type":"t","priority":{}}`, `{"type":"t","priority":[]}`, `{"type":"t","priority":"1"}`,
	`{"type":"t","is_new_record":1}`, `{"type":"t","is_new_record":"true"}`, `{"type":"t","is_new_record":false}`,
	`{"type":"t","status":"completed","seq":7,"entity_seq":3,"attempt_count":2,"last_error":"boom"}`,
	`{"type":"t","status":5}`, `{"type":"t","last_error":[]}`, `{"type":"t","id":7}`, `{"type":"t","content_type":true}`,
	`{"type":"t","type":null}`, `{"type":null}`, `{}`, `{"type":"t","foo":1}`, `{"type":"t","Type":"u"}`,
	`{"type":"t","zeta":1,"alpha":2,"priority":"x"}`, `{"type":"t","":1}`, `{"type":"t","k\xff":1}`,
	`{"\u0074ype":"t","entity\u005fid":"e"}`, `{"type":"t","payload\u005fbase64":"AA=="}`,
	`{"type":"t","payload":1,"payload_base64":"AA=="}`, `{"type":"t","payload":null,"payload_base64":"AA=="}`,
	`{"type":"t","payload":1,"payload_base64":null}`, `{"type":"t","payload_base64":"AA==","payload_base64":null}`,
	`{"type":"t","payload_base64":"!!"}`, `{"type":"t","payload_base64":""}`, `{"type":"t","payload_base64":"AA\u003d\u003d"}`,
	`{"type":"t","payload_base64":"AA\r\n=="}`, `{"type":"t","payload_base64":5}`, `{"type":"t","payload_base64":{}}`,
	`{"type":"t","payload_base64":"!!","created_at":"bad"}`,
	`{"type":"t","payload":null}`, `{"type":"t","payload":""}`, `{"type":"t","payload":"a\"b\\c\u00e9\ud83d\ude00"}`,
	`{"type":"t","payload": { "a" : [ 1 , 2 , { "b" : "c d" } ] } }`, `{"type":"t","payload":[],"content_type":"text/plain"}`,
	`{"type":"t","payload":{"k":"\udc00"}}`, "{\"type\":\"t\",\"payload\":{\"k\":\"\xff\"}}", "{\"type\":\"t\",\"payload\":{\"\xff\":1}}",
	"{\"type\":\"t\",\"entity_id\":\"a\xffb\"}", "{\"type\":\"t\",\"payload\":\"\xff\",\"payload\":1}", "{\"type\":\"t\",\"payload\":1,\"payload\":\"\xff\"}", "{\"type\":\"t\",\"entity_id\":\"a\xed\xa0\x80\"}",
	`{"type":"t","entity_id":"x\uD800"}`, `{"type":"t","entity_id":"\ud800\u0041"}`, `{"type":"t","entity_id":"\ud800\ud800"}`,
	`{"type":"t","entity_id":"\udc00\ud800"}`, `{"type":"t","entity_id":"m\ud83d\ude00"}`, `{"type":"t","entity_id":"a\"b\\\u0063\/"}`,
	`{"type":"t","entity_id":"\udc00","entity_id":"ok"}`, `{"type":"t","entity_id":"ok","entity_id":"\udc00"}`,
	`{"type":"t","metadata":{"\ud800":"v"},"user_id":"\udc00"}`, `{"type":"t","user_id":"\udc00","metadata":{"\ud800":"v"}}`,
	`{"type":"t","priority":"\udc00"}`, `{"type":"t","priority":{"\udc00":1}}`, `{"type":"t","created_at":"\udc00"}`,
	`{"type":"t","metadata":null}`, `{"type":"t","metadata":[1]}`, `{"type":"t","metadata":"k=v"}`, `{"type":"t","metadata": { "a" : 1 } }`,
	`{"type":"t","unknown":1,"entity_id":"\udc00"}`, `{"type":"t","retry":{"x":1},"entity_id":"\udc00"}`,
	`{"type":"t","retry":{"x":1},"retry":{"initial_interval":"1s","max_interval":"1m"}}`,
	`{"type":"t","retry":{"initial_interval":"1s","max_interval":"1m"},"retry":{"x":1}}`,
	`{"type":"t","retry":{"initial_interval":"1s","max_interval":"1m"},"retry":"x"}`,
	`{"type":"t","created_at":"bad","retry":{"initial_interval":"soon","max_interval":"1m"}}`,
	`{"type":"t","retry":{"initial_interval":"soon","max_interval":"1m"},"created_at":"bad"}`,
	`{"type":"t","priority":"x","retry":{"initial_interval":"soon","max_interval":"1m"}}`,
	`{"type":"type.refused"}`, `{"type":"a","entity_id":"e1"}`,
	` {"type":"t"} `, `{"type":"t"} x`, `{"type":"t"}{"type":"u"}`, `null`, `"a"`, `42`, ``, ` `,
	`{"type":"t","payload":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}`,
	`{"type":"t","payload":1.}`, `{"type":"t","payload":01}`, `{"type":"t","payload":-}`, `{"type":"t","payload":1e}`,
	`{"type":"t","payload":"\x"}`, `{"type":"t","payload":"\u12"}`, "{\"type\":\"t\",\"payload\":\"\t\"}", `{"type":"t","payload":tru}`,
	`{"type":"t","payload":[1,]}`, `{"type":"t","payload":{"a":1,}}`, `{"type":"t",}`, `{"type":"t" "a":1}`, `{"type":"t":1}`,
}

// batchBodies are the shapes of a batch body besides {"events":[e]}.
var batchBodies = []string{
	`{"events":[{"type":"a"},{"type":"b","entity_id":"e"}]}`,
	`{"events":[{"type":"a"}],"events":[{"type":"b"}]}`,
	`{"events":[{"type":"a","priority":"x"}],"events":[{"type":"b"}]}`,
	`{"\u0065vents":[{"type":"a"}]}`,
	`{"events":[{"type":"a"}],"zz":1,"aa":2}`,
	`{"events":[{"type":"a","foo":1}],"other":1}`,
	`{"events":[]}`, `{"events":null}`, `{}`, `{"events":{"type":"a"}}`, `{"events":[null]}`, `{"events":[1,{"type":"a"}]}`,
	`{"events":[{"type":"a"},null]}`, `[{"type":"a"}]`, `{"events":[{"type":"a"}`, `{"events":[{"type":"a"}]}]`,
	`{"events":[{"type":"type.refused"},{"type":"a","priority":"x"}]}`,
	`{"events":[{"type":"a","priority":"x"},{"type":"type.refused"}]}`,
	`{"events":[{"type":"a"},{"type":"a","entity_id":"\udc00"}]}`,
	`{"events":[{"type":"a","user_id":"u"},{"type":"a","user_id":"u"},{"type":"a","user_id":"v"}]}`,
	` { "events" : [ { "type" : "a" } , { "type" : "b" } ] } `,
	`{"events":[{"type":"a"}] , "events" : [{"type":"b"}]}`,
	`{"events":[{"type":"a"},]}`, `{"events":[{"type":"a"}}`, `{"events":[{"type":"a"}]`,
}

// corpus adds the fuzz corpora of this package's other targets.
func corpus(t testing.TB) []string {
	var out []string
	for _, dir := range []string{"FuzzPostEvent", "FuzzScan", "FuzzDecode"} {
		files, _ := filepath.Glob(filepath.Join("testdata", "fuzz", dir, "*"))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(string(b), "\n")
			if len(lines) < 2 {
				continue
			}
			v := strings.TrimSpace(lines[1])
			for _, prefix := range []string{"[]byte(", "string("} {
				if strings.HasPrefix(v, prefix) {
					if s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(v, prefix), ")")); err == nil {
						out = append(out, s)
					}
				}
			}
		}
	}
	return out
}

// compareDecoders decodes body as a single event and, wrapped, as
// batches, with both decoders, and fails t on any difference.
func compareDecoders(t *testing.T, body []byte) {
	t.Helper()
	e, err := decodeSingle(body)
	re, rerr := refSingle(body)
	sameOutcome(t, "POST /v1/events", body, e, err, re, rerr)
	for _, b := range [][]byte{
		body,
		append(append([]byte(`{"events":[`), body...), "]}"...),
		append(append(append(append([]byte(`{"events":[`), body...), ','), body...), "]}"...),
		append(append([]byte(`{"events":[{"type":"a","user_id":"u1"},`), body...), "]}"...),
	} {
		events, err := decodeBatch(b, checkForTest)
		ref, rerr := refBatch(b, checkForTest)
		sameOutcome(t, "POST /v1/events/batch", b, events, err, ref, rerr)
	}
}

func sameOutcome(t *testing.T, route string, body []byte, got any, err error, want any, wantErr error) {
	t.Helper()
	if (err == nil) != (wantErr == nil) {
		t.Fatalf("%s %q:\n got  %v (%#v)\n want %v (%#v)", route, body, err, got, wantErr, want)
	}
	if err != nil {
		gs, gm := statusOf(err)
		ws, wm := statusOf(wantErr)
		if gs != ws || gm != wm {
			t.Fatalf("%s %q:\n got  %d %s\n want %d %s", route, body, gs, gm, ws, wm)
		}
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s %q: events differ:\n got  %#v\n want %#v", route, body, got, want)
	}
}

func TestDecodeMatchesReference(t *testing.T) {
	bodies := append(append(slicesOf(equivSeeds), slicesOf(batchBodies)...), slicesOf(corpus(t))...)
	for _, b := range bodies {
		compareDecoders(t, b)
	}
}

func slicesOf(ss []string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}

// FuzzDecode holds the one-pass decoder to the reference on any body:
// accepted by both or refused by both with the same status and message,
// and decoded to the same events. Seeds: equivSeeds, batchBodies and
// testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	for _, s := range append(append([]string{}, equivSeeds...), batchBodies...) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		compareDecoders(t, body)
	})
}

// TestEventKeys holds the decoder's keys to outbox.Event's tags: a field
// added there must be decoded here.
func TestEventKeys(t *testing.T) {
	if got := eventKeys[:]; !reflect.DeepEqual(got, refEventKeys) {
		t.Errorf("eventKeys = %q,\nwant %q (outbox.Event's tags, then payload, payload_base64)", got, refEventKeys)
	}
	if got := retryKeys[:]; !reflect.DeepEqual(got, refRetryKeys) {
		t.Errorf("retryKeys = %q, want %q", got, refRetryKeys)
	}
	for f, k := range eventKeys {
		if got, ok := fieldOf([]byte(k)); !ok || got != field(f) {
			t.Errorf("fieldOf(%q) = %d, %v; want %d", k, got, ok, f)
		}
	}
}

// FuzzLex holds the scanner to encoding/json: the same values valid (at
// any depth of nesting around them), the same end of each value as
// valueEnd, and what it notes of the text: the first fault as the old
// text check found it, invalid UTF-8 as utf8.Valid, white space as
// json.Compact.
func FuzzLex(f *testing.F) {
	for _, s := range append(append([]string{
		`{"a":1,"b":[1,2,{"c":"]"}],"a":"\"}"}`, ` [ 1 , "x" ,{ } , [ ], null,true ,-1.5e3 ] `,
		`{"\u0061":1,"a":2,"\ud800":3,"\\":4}`, "{\"k\xff\":1}", `0`, `-0.0e-0`, `1E+2`, `[[[]]]`, `"\ud83d\ude00\udc00"`,
		`"\uD83D\uDE00"`, `"\ud800\u12"`, `"abcdefghijklmnopqrstuvwxyz\"0123456789"`, "\"abcdefgh\x01\"", `tru`, `nul`, `[1 2]`,
	}, equivSeeds...), batchBodies...) {
		f.Add(s, 0)
	}
	f.Fuzz(func(t *testing.T, s string, depth int) {
		depth = max(0, min(depth, maxDepth+1))
		raw := []byte(s)
		var ti textInfo
		i := skipSpace(raw, 0)
		end := scanValue(raw, i, 0, &ti)
		valid := end >= 0 && skipSpace(raw, end) == len(raw)
		if want := json.Valid(raw); valid != want {
			t.Fatalf("scanValue(%q): valid %v (end %d), json.Valid %v", s, valid, end, want)
		}
		if !valid {
			return
		}
		v := raw[i:end]
		if e := valueEnd(v, 0); e != len(v) {
			t.Fatalf("%q: scanValue ends at %d, valueEnd at %d", v, len(v), e)
		}
		if want := refCheckStrings(v); ti.reason != want {
			t.Fatalf("%q: reason %q, want %q", v, ti.reason, want)
		}
		if ti.badUTF8 == utf8.Valid(v) {
			t.Fatalf("%q: badUTF8 %v, utf8.Valid %v", v, ti.badUTF8, utf8.Valid(v))
		}
		var c bytes.Buffer
		if err := json.Compact(&c, v); err != nil {
			t.Fatal(err)
		}
		if ti.space != (c.Len() != len(v)) {
			t.Fatalf("%q: space %v, compacted %q", v, ti.space, c.Bytes())
		}
		if got := appendCompact(nil, v); !bytes.Equal(got, c.Bytes()) {
			t.Fatalf("appendCompact(%q) = %q, json.Compact %q", v, got, c.Bytes())
		}
		// Nested in depth arrays, as an event's payload is in a batch.
		nested := []byte(strings.Repeat("[", depth) + string(v) + strings.Repeat("]", depth))
		var nt textInfo
		ok := scanValue(nested, 0, 0, &nt) == len(nested)
		if want := json.Valid(nested); ok != want {
			t.Fatalf("%q in %d arrays: valid %v, json.Valid %v", v, depth, ok, want)
		}
	})
}
