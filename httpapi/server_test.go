package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
	"github.com/fitiqcore/outbox/httpapi"
	"github.com/google/uuid"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// env is a Server over a real boltstore, served by an httptest.Server.
type env struct {
	srv   *httptest.Server
	api   *httpapi.Server
	store *boltstore.Store
	token string // sent as a bearer token when set
}

func newEnv(t testing.TB, opts httpapi.Options, storeOpts *boltstore.Options) *env {
	t.Helper()
	store, err := boltstore.Open(filepath.Join(t.TempDir(), "o.db"), storeOpts)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { store.Close() })
	api := httpapi.New(store, opts)
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close) // runs before the store closes
	return &env{srv: srv, api: api, store: store}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (e *env) do(t testing.TB, method, path, contentType string, body io.Reader) response {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if e.token != "" {
		req.Header.Set("Authorization", "Bearer "+e.token)
	}
	res, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	if res.Close { // net/http takes the header out when it acts on it
		res.Header.Set("Connection", "close")
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}

func (e *env) post(t testing.TB, path, body string) response {
	t.Helper()
	return e.do(t, http.MethodPost, path, "application/json", strings.NewReader(body))
}

func (e *env) get(t testing.TB, path string) response {
	t.Helper()
	return e.do(t, http.MethodGet, path, "", nil)
}

func (e *env) stats(t testing.TB) boltstore.Stats {
	t.Helper()
	st, err := e.store.Stats(context.Background())
	if err != nil {
		t.Fatalf("stats: %v", err)
	}
	return st
}

// object decodes a JSON object response, failing the test on anything else.
func (r response) object(t testing.TB) map[string]any {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json (body %s)", ct, r.body)
	}
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil || m == nil {
		t.Fatalf("body is not a JSON object: %v: %s", err, r.body)
	}
	return m
}

// wantStatus checks the status code.
func (r response) wantStatus(t testing.TB, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d, want %d; body: %s", r.status, status, r.body)
	}
}

// wantError checks the status and that the body is {"error": "..."}
// containing want.
func (r response) wantError(t testing.TB, status int, want string) {
	t.Helper()
	r.wantStatus(t, status)
	m := r.object(t)
	msg, ok := m["error"].(string)
	if !ok || msg == "" {
		t.Fatalf(`body has no "error" string: %s`, r.body)
	}
	if len(m) != 1 {
		t.Errorf(`body has fields besides "error": %s`, r.body)
	}
	if !strings.Contains(msg, want) {
		t.Errorf("error = %q, want it to mention %q", msg, want)
	}
}

func TestPostEventCreated(t *testing.T) {
	e := newEnv(t, httpapi.Options{}, nil)
	tests := []struct {
		name        string
		contentType string
		body        string
		want        map[string]any // fields of the answer, compared as JSON
		absent      []string       // fields the answer must not have
	}{{
		name: "JSON payload",
		body: `{"type":"mood.created","entity_id":"mood-1","user_id":"user-1","priority":3,"is_new_record":true,
			"metadata":{"source": "app"},"payload":{"score": 7, "tags": ["calm"]}}`,
		want: map[string]any{
			"type": "mood.created", "entity_id": "mood-1", "user_id": "user-1", "priority": 3.0,
			"is_new_record": true, "metadata": map[string]any{"source": "app"},
			"payload":      map[string]any{"score": 7.0, "tags": []any{"calm"}},
			"content_type": "application/json", "status": "pending", "entity_seq": 1.0,
			"max_attempts": 5.0, "attempt_count": 0.0,
		},
		absent: []string{"payload_base64", "last_error", "completed_at"},
	}, {
		name:   "second event of the entity",
		body:   `{"type":"mood.updated","entity_id":"mood-1","payload":{"score":8}}`,
		want:   map[string]any{"entity_seq": 2.0, "payload": map[string]any{"score": 8.0}},
		absent: []string{"payload_base64"},
	}, {
		name:   "base64 payload",
		body:   `{"type":"blob.put","payload_base64":"AAEC/w=="}`,
		want:   map[string]any{"payload_base64": "AAEC/w==", "content_type": "application/octet-stream", "entity_seq": 0.0},
		absent: []string{"payload"},
	}, {
		name: "string payload",
		body: `{"type":"note.added","payload":"hello"}`,
		want: map[string]any{"payload": "hello", "content_type": "application/json"},
	}, {
		name:        "charset parameter",
		contentType: "application/json; charset=UTF-8",
		body:        `{"type":"a"}`,
		want:        map[string]any{"type": "a", "status": "pending", "content_type": "application/octet-stream"},
		absent:      []string{"payload", "payload_base64"},
	}, {
		name: "retry and max_attempts",
		body: `{"type":"a.b-c_d","max_attempts":2,"retry":{"initial_interval":"1s","max_interval":"1m","multiplier":2}}`,
		want: map[string]any{
			"max_attempts": 2.0,
			"retry":        map[string]any{"initial_interval": "1s", "max_interval": "1m0s", "multiplier": 2.0},
		},
	}}
	var seq float64
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct := tt.contentType
			if ct == "" {
				ct = "application/json"
			}
			res := e.do(t, http.MethodPost, "/v1/events", ct, strings.NewReader(tt.body))
			res.wantStatus(t, http.StatusCreated)
			got := res.object(t)
			id, _ := got["id"].(string)
			u, err := uuid.Parse(id)
			if err != nil || u.Version() != 7 || u.String() != id {
				t.Errorf("id = %q, want a canonical UUIDv7", id)
			}
			if loc := res.header.Get("Location"); loc != "/v1/events/"+id {
				t.Errorf("Location = %q, want /v1/events/%s", loc, id)
			}
			if s, _ := got["seq"].(float64); s <= seq {
				t.Errorf("seq = %v, want more than %v", got["seq"], seq)
			} else {
				seq = s
			}
			if _, err := time.Parse(time.RFC3339Nano, fmt.Sprint(got["created_at"])); err != nil {
				t.Errorf("created_at = %v: %v", got["created_at"], err)
			}
			for k, want := range tt.want {
				if !jsonEqual(got[k], want) {
					t.Errorf("%s = %#v, want %#v", k, got[k], want)
				}
			}
			for _, k := range tt.absent {
				if v, ok := got[k]; ok {
					t.Errorf("%s = %#v, want it absent", k, v)
				}
			}
			// The stored event reads back as it was answered.
			back := e.get(t, "/v1/events/"+id)
			back.wantStatus(t, http.StatusOK)
			if !jsonEqual(back.object(t), got) {
				t.Errorf("GET answered\n%s\nPOST answered\n%s", back.body, res.body)
			}
		})
	}
	if st := e.stats(t); st.Total != int64(len(tests)) || st.Pending != int64(len(tests)) {
		t.Errorf("stats = %+v, want %d pending", st, len(tests))
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

func TestPostEventRepost(t *testing.T) {
	e := newEnv(t, httpapi.Options{}, nil)
	id := "0190b5a8-7f3e-7c3a-9d2e-1a2b3c4d5e6f"
	body := `{"id":"` + id + `","type":"mood.created","entity_id":"m1","payload":{"score":7}}`
	first := e.post(t, "/v1/events", body)
	first.wantStatus(t, http.StatusCreated)
	stored := first.object(t)

	tests := []struct {
		name   string
		body   string
		status int
		want   string // in the error, for a rejection
	}{
		{"identical", body, http.StatusOK, ""},
		{"identical, other spelling", `{"type":"mood.created","payload":{ "score" : 7 },"entity_id":"m1","id":"` + strings.ToUpper(id) + `"}`, http.StatusOK, ""},
		{"identical, posted back as answered", string(first.body), http.StatusOK, ""},
		{"other payload", `{"id":"` + id + `","type":"mood.created","entity_id":"m1","payload":{"score":8}}`, http.StatusConflict, id},
		{"other type", `{"id":"` + id + `","type":"mood.deleted","entity_id":"m1","payload":{"score":7}}`, http.StatusConflict, id},
		{"other priority", `{"id":"` + id + `","type":"mood.created","entity_id":"m1","priority":1,"payload":{"score":7}}`, http.StatusConflict, id},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := e.post(t, "/v1/events", tt.body)
			if tt.status != http.StatusOK {
				res.wantError(t, tt.status, tt.want)
			} else {
				res.wantStatus(t, http.StatusOK)
				if got := res.object(t); !jsonEqual(got, stored) {
					t.Errorf("answered\n%s\nwant the stored event\n%s", res.body, first.body)
				}
			}
			if st := e.stats(t); st.Total != 1 {
				t.Errorf("stats total = %d, want 1", st.Total)
			}
			if got := e.get(t, "/v1/events/"+id).object(t); !jsonEqual(got, stored) {
				t.Errorf("stored event changed: %v", got)
			}
		})
	}
}

func TestPostEventConcurrentRepost(t *testing.T) {
	e := newEnv(t, httpapi.Options{}, nil)
	body := `{"id":"0190b5a8-7f3e-7c3a-9d2e-000000000001","type":"a","payload":[1,2,3]}`
	const n = 16
	statuses := make(chan int, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() { statuses <- e.post(t, "/v1/events", body).status })
	}
	wg.Wait()
	close(statuses)
	count := map[int]int{}
	for s := range statuses {
		count[s]++
	}
	if count[http.StatusCreated] != 1 || count[http.StatusOK] != n-1 {
		t.Errorf("statuses = %v, want one 201 and %d 200", count, n-1)
	}
	if st := e.stats(t); st.Total != 1 {
		t.Errorf("stats total = %d, want 1", st.Total)
	}
}

// hideLength hides a reader's length from net/http, so that the body is
// sent chunked, without a Content-Length.
type hideLength struct{ io.Reader }

func TestPostEventRejected(t *testing.T) {
	const maxPayload, maxBody = 1024, 8192
	e := newEnv(t, httpapi.Options{MaxBodyBytes: maxBody}, &boltstore.Options{Event: outbox.Options{MaxPayload: maxPayload}})
	big := strings.Repeat("x", maxPayload) // as a JSON string: 2 bytes over the limit
	tests := []struct {
		name        string
		contentType string // default application/json; "-" for none
		body        string
		chunked     bool
		status      int
		want        string
	}{
		// Malformed JSON and bodies that are not one object.
		{name: "empty body", body: ``, status: 400, want: "empty body"},
		{name: "white space only", body: " \n\t", status: 400, want: "empty body"},
		{name: "truncated", body: `{"type":"a"`, status: 400, want: "malformed JSON"},
		{name: "syntax error", body: `{"type" "a"}`, status: 400, want: "malformed JSON at offset"},
		{name: "single quotes", body: `{'type':'a'}`, status: 400, want: "malformed JSON"},
		{name: "trailing comma", body: `{"type":"a",}`, status: 400, want: "malformed JSON"},
		{name: "second value", body: `{"type":"a"} {"type":"b"}`, status: 400, want: "data after the JSON value"},
		{name: "trailing garbage", body: `{"type":"a"}x`, status: 400, want: "data after the JSON value"},
		{name: "null", body: `null`, status: 400, want: "must be a JSON object, got null"},
		{name: "array", body: `[{"type":"a"}]`, status: 400, want: "must be a JSON object, got an array"},
		{name: "string", body: `"a"`, status: 400, want: "must be a JSON object, got a string"},
		{name: "number", body: `42`, status: 400, want: "must be a JSON object"},
		// Unknown fields.
		{name: "unknown field", body: `{"type":"a","foo":1}`, status: 400, want: `unknown field "foo"`},
		{name: "field in another case", body: `{"Type":"a"}`, status: 400, want: `unknown field "Type"`},
		{name: "payload in camel case", body: `{"type":"a","payloadBase64":"AA=="}`, status: 400, want: `unknown field "payloadBase64"`},
		{name: "unknown retry field", body: `{"type":"a","retry":{"initial_interval":"1s","max_interval":"2s","multiplier":2,"jitter":1}}`, status: 400, want: `unknown field "retry.jitter"`},
		// Wrong JSON types.
		{name: "priority as string", body: `{"type":"a","priority":"high"}`, status: 400, want: "invalid priority: want an integer, got string"},
		{name: "priority fractional", body: `{"type":"a","priority":1.5}`, status: 400, want: "invalid priority"},
		{name: "priority overflow", body: `{"type":"a","priority":1e100}`, status: 400, want: "invalid priority"},
		{name: "type as number", body: `{"type":5}`, status: 400, want: "invalid type: want a string"},
		{name: "entity_id as object", body: `{"type":"a","entity_id":{}}`, status: 400, want: "invalid entity_id"},
		{name: "is_new_record as string", body: `{"type":"a","is_new_record":"yes"}`, status: 400, want: "invalid is_new_record: want a boolean"},
		{name: "id as number", body: `{"type":"a","id":7}`, status: 400, want: "invalid id"},
		{name: "retry as string", body: `{"type":"a","retry":"1s"}`, status: 400, want: "invalid retry"},
		{name: "retry interval as number", body: `{"type":"a","retry":{"initial_interval":1,"max_interval":"2s","multiplier":2}}`, status: 400, want: "invalid retry.initial_interval"},
		{name: "created_at not a time", body: `{"type":"a","created_at":"yesterday"}`, status: 400, want: "invalid created_at"},
		// Validation, by the model and the store.
		{name: "type missing", body: `{"payload":{}}`, status: 400, want: "invalid type"},
		{name: "type with wildcard", body: `{"type":"a.*"}`, status: 400, want: "invalid type"},
		{name: "type with full wildcard", body: `{"type":"a.>"}`, status: 400, want: "invalid type"},
		{name: "type with space", body: `{"type":"a b"}`, status: 400, want: "invalid type"},
		{name: "type with empty token", body: `{"type":"a..b"}`, status: 400, want: "invalid type"},
		{name: "type too long", body: `{"type":"` + strings.Repeat("a", 129) + `"}`, status: 400, want: "invalid type"},
		{name: "priority 10", body: `{"type":"a","priority":10}`, status: 400, want: "invalid priority"},
		{name: "priority negative", body: `{"type":"a","priority":-1}`, status: 400, want: "invalid priority"},
		{name: "entity_id over 256 bytes", body: `{"type":"a","entity_id":"` + strings.Repeat("e", 257) + `"}`, status: 400, want: "invalid entity_id"},
		{name: "user_id with control character", body: `{"type":"a","user_id":"u\n1"}`, status: 400, want: "invalid user_id"},
		{name: "metadata an array", body: `{"type":"a","metadata":[1]}`, status: 400, want: "invalid metadata"},
		{name: "metadata a string", body: `{"type":"a","metadata":"k=v"}`, status: 400, want: "invalid metadata"},
		{name: "id not a UUID", body: `{"type":"a","id":"42"}`, status: 400, want: "invalid id"},
		{name: "max_attempts negative", body: `{"type":"a","max_attempts":-1}`, status: 400, want: "invalid max_attempts"},
		{name: "content_type two lines", body: `{"type":"a","content_type":"text/plain\r\nX: y"}`, status: 400, want: "invalid content_type"},
		{name: "payload and payload_base64", body: `{"type":"a","payload":1,"payload_base64":"AA=="}`, status: 400, want: "invalid payload"},
		{name: "payload_base64 not base64", body: `{"type":"a","payload_base64":"!!"}`, status: 400, want: "invalid payload_base64"},
		{name: "retry interval not a duration", body: `{"type":"a","retry":{"initial_interval":"soon","max_interval":"2s","multiplier":2}}`, status: 400, want: "invalid retry.initial_interval"},
		{name: "retry multiplier below 1", body: `{"type":"a","retry":{"initial_interval":"1s","max_interval":"2s","multiplier":0.5}}`, status: 400, want: "invalid retry.multiplier"},
		// Text that JSON would alter (U+FFFD): refused, naming the field.
		{name: "entity_id invalid UTF-8", body: "{\"type\":\"a\",\"entity_id\":\"a\xffb\"}", status: 400, want: "invalid entity_id: not valid UTF-8"},
		{name: "entity_id UTF-8 of a surrogate", body: "{\"type\":\"a\",\"entity_id\":\"a\xed\xa0\x80\"}", status: 400, want: "invalid entity_id: not valid UTF-8"},
		{name: "entity_id lone low surrogate", body: `{"type":"a","entity_id":"\udc00"}`, status: 400, want: "invalid entity_id: lone surrogate escape"},
		{name: "entity_id high surrogate at the end", body: `{"type":"a","entity_id":"x\uD800"}`, status: 400, want: "invalid entity_id: lone surrogate escape"},
		{name: "entity_id high surrogate then a letter", body: `{"type":"a","entity_id":"\ud800\u0041"}`, status: 400, want: "invalid entity_id: lone surrogate escape"},
		{name: "entity_id two high surrogates", body: `{"type":"a","entity_id":"\ud800\ud800"}`, status: 400, want: "invalid entity_id: lone surrogate escape"},
		{name: "entity_id low then high", body: `{"type":"a","entity_id":"\udc00\ud800"}`, status: 400, want: "invalid entity_id: lone surrogate escape"},
		{name: "user_id invalid UTF-8", body: "{\"type\":\"a\",\"user_id\":\"\xc3\"}", status: 400, want: "invalid user_id: not valid UTF-8"},
		{name: "user_id lone surrogate", body: `{"type":"a","user_id":"u\udfff"}`, status: 400, want: "invalid user_id: lone surrogate escape"},
		{name: "id lone surrogate", body: `{"type":"a","id":"\udc00"}`, status: 400, want: "invalid id: lone surrogate escape"},
		{name: "type invalid UTF-8", body: "{\"type\":\"a\x80\"}", status: 400, want: "invalid type: not valid UTF-8"},
		{name: "content_type lone surrogate", body: `{"type":"a","content_type":"text/\udc00"}`, status: 400, want: "invalid content_type: lone surrogate escape"},
		{name: "metadata value lone surrogate", body: `{"type":"a","metadata":{"k":"\udc00"}}`, status: 400, want: "invalid metadata: lone surrogate escape"},
		{name: "metadata key lone surrogate", body: `{"type":"a","metadata":{"\ud800":"v"}}`, status: 400, want: "invalid metadata: lone surrogate escape"},
		{name: "metadata nested invalid UTF-8", body: "{\"type\":\"a\",\"metadata\":{\"k\":[\"\xff\"]}}", status: 400, want: "invalid metadata: not valid UTF-8"},
		{name: "retry lone surrogate", body: `{"type":"a","retry":{"initial_interval":"1s\udc00","max_interval":"2s","multiplier":2}}`, status: 400, want: "invalid retry: lone surrogate escape"},
		{name: "payload invalid UTF-8", body: "{\"type\":\"a\",\"payload\":{\"k\":\"\xff\"}}", status: 400, want: "invalid payload: not valid UTF-8"},
		{name: "payload_base64 invalid UTF-8", body: "{\"type\":\"a\",\"payload_base64\":\"AA\xff\"}", status: 400, want: "invalid payload_base64: not valid UTF-8"},
		// Limits.
		{name: "JSON payload over the limit", body: `{"type":"a","payload":"` + big + `"}`, status: 413, want: "invalid payload"},
		{name: "base64 payload over the limit", body: `{"type":"a","payload_base64":"` + base64Of(maxPayload+1) + `"}`, status: 413, want: "invalid payload"},
		{name: "body over the limit", body: `{"type":"a","payload":"` + strings.Repeat("x", maxBody) + `"}`, status: 413, want: "request body"},
		{name: "chunked body over the limit", body: `{"type":"a","payload":"` + strings.Repeat("x", maxBody) + `"}`, chunked: true, status: 413, want: "request body"},
		// Content types.
		{name: "no content type", contentType: "-", body: `{"type":"a"}`, status: 415, want: "Content-Type"},
		{name: "text/plain", contentType: "text/plain", body: `{"type":"a"}`, status: 415, want: "Content-Type"},
		{name: "form", contentType: "application/x-www-form-urlencoded", body: `type=a`, status: 415, want: "Content-Type"},
		{name: "json prefix", contentType: "application/jsonx", body: `{"type":"a"}`, status: 415, want: "Content-Type"},
		{name: "malformed content type", contentType: "application/json; =", body: `{"type":"a"}`, status: 415, want: "Content-Type"},
		{name: "latin-1", contentType: "application/json; charset=iso-8859-1", body: `{"type":"a"}`, status: 415, want: "charset"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct := tt.contentType
			switch ct {
			case "":
				ct = "application/json"
			case "-":
				ct = ""
			}
			var body io.Reader = strings.NewReader(tt.body)
			if tt.chunked {
				body = hideLength{body}
			}
			res := e.do(t, http.MethodPost, "/v1/events", ct, body)
			res.wantError(t, tt.status, tt.want)
			if st := e.stats(t); st.Total != 0 {
				t.Errorf("stats total = %d after a rejected request, want 0", st.Total)
			}
		})
	}
}

func base64Of(n int) string {
	return strings.Repeat("AAAA", (n+2)/3)
}

// TestTextKeptAsWritten checks what the text checks let through: proper
// surrogate pairs and UTF-8 in identifiers, and lone surrogate escapes in
// the payload, which is stored as its JSON text and never altered.
func TestTextKeptAsWritten(t *testing.T) {
	e := newEnv(t, httpapi.Options{}, nil)
	tests := []struct {
		name, body string
		field      string // of the stored event, compared as JSON text
		want       string
	}{
		{"surrogate pair in entity_id", `{"type":"a","entity_id":"m\ud83d\ude00"}`, "entity_id", `"m😀"`},
		{"UTF-8 in user_id", `{"type":"a","user_id":"Zoë 😀"}`, "user_id", `"Zoë 😀"`},
		{"escaped quote and backslash", `{"type":"a","entity_id":"a\"b\\\u0063"}`, "entity_id", `"a\"b\\c"`},
		{"surrogate pair in metadata", `{"type":"a","metadata":{"k":"\uD83D\uDE00"}}`, "metadata", `{"k":"\uD83D\uDE00"}`},
		{"lone surrogate escape in payload", `{"type":"a","payload":{"k":"\udc00"}}`, "payload", `{"k":"\udc00"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := e.post(t, "/v1/events", tt.body)
			res.wantStatus(t, http.StatusCreated)
			var got map[string]json.RawMessage
			if err := json.Unmarshal(res.body, &got); err != nil {
				t.Fatal(err)
			}
			var id string
			json.Unmarshal(got["id"], &id)
			stored, err := e.store.Get(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(stored)
			var back map[string]json.RawMessage
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			if string(back[tt.field]) != tt.want {
				t.Errorf("stored %s = %s, want %s", tt.field, back[tt.field], tt.want)
			}
		})
	}
}

func TestStorePayloadLimit(t *testing.T) {
	e := newEnv(t, httpapi.Options{}, &boltstore.Options{Event: outbox.Options{MaxPayload: 100}})
	e.post(t, "/v1/events", `{"type":"a","payload":"`+strings.Repeat("x", 98)+`"}`).wantStatus(t, http.StatusCreated)
	e.post(t, "/v1/events", `{"type":"a","payload":"`+strings.Repeat("x", 99)+`"}`).wantError(t, http.StatusRequestEntityTooLarge, "invalid payload")
	if st := e.stats(t); st.Total != 1 {
		t.Errorf("stats total = %d, want 1", st.Total)
	}
}

// TestPayloadLimitIsTheStores checks that the store's limit is the one rule:
// the API has no payload limit of its own that would refuse what the
// store accepts.
func TestPayloadLimitIsTheStores(t *testing.T) {
	e := newEnv(t, httpapi.Options{}, &boltstore.Options{Event: outbox.Options{MaxPayload: 2 << 20, MaxMessage: 4 << 20}})
	payload := `"` + strings.Repeat("x", 3<<19) + `"` // 1.5 MiB, over outbox.DefaultPayload
	e.post(t, "/v1/events", `{"type":"a","payload":`+payload+`}`).wantStatus(t, http.StatusCreated)
	e.post(t, "/v1/events/batch", `{"events":[{"type":"a","payload":`+payload+`}]}`).wantStatus(t, http.StatusCreated)
	e.post(t, "/v1/events/batch", `{"events":[{"type":"a"},{"type":"a","payload":"`+strings.Repeat("x", 2<<20)+`"}]}`).
		wantError(t, http.StatusRequestEntityTooLarge, "events[1]: invalid payload: 2097154 bytes, over the limit of 2097152")
	if st := e.stats(t); st.Total != 2 {
		t.Errorf("stats total = %d, want 2", st.Total)
	}
}

func TestBatchCreated(t *testing.T) {
	e := newEnv(t, httpapi.Options{}, nil)
	body := `{"events":[
		{"type":"mood.created","entity_id":"m1","payload":{"n":1}},
		{"type":"mood.updated","entity_id":"m1","payload_base64":"AQID"},
		{"type":"user.seen","user_id":"u1","payload":"third"},
		{"type":"mood.updated","entity_id":"m1","payload":{"n":4}}
	]}`
	res := e.post(t, "/v1/events/batch", body)
	res.wantStatus(t, http.StatusCreated)
	var got struct {
		Events []map[string]any `json:"events"`
	}
	if err := json.Unmarshal(res.body, &got); err != nil {
		t.Fatalf("decode answer: %v: %s", err, res.body)
	}
	want := []struct {
		typ       string
		entitySeq float64
		payload   string // the JSON of payload or payload_base64
	}{
		{"mood.created", 1, `{"n":1}`},
		{"mood.updated", 2, `"AQID"`},
		{"user.seen", 0, `"third"`},
		{"mood.updated", 3, `{"n":4}`},
	}
	if len(got.Events) != len(want) {
		t.Fatalf("answered %d events, want %d: %s", len(got.Events), len(want), res.body)
	}
	ids := map[string]bool{}
	for i, w := range want {
		ev := got.Events[i]
		id, _ := ev["id"].(string)
		ids[id] = true
		payload := ev["payload"]
		if payload == nil {
			payload = ev["payload_base64"]
		}
		if ev["type"] != w.typ || ev["entity_seq"] != w.entitySeq || ev["status"] != "pending" || !jsonEqual(payload, json.RawMessage(w.payload)) {
			t.Errorf("events[%d] = %v, want type %s, entity_seq %v, payload %s, pending", i, ev, w.typ, w.entitySeq, w.payload)
		}
		// Each event is stored as answered.
		back := e.get(t, "/v1/events/"+id)
		back.wantStatus(t, http.StatusOK)
		if !jsonEqual(back.object(t), ev) {
			t.Errorf("events[%d]: GET answered\n%s\nPOST answered\n%v", i, back.body, ev)
		}
	}
	if len(ids) != len(want) {
		t.Errorf("ids not distinct: %v", ids)
	}
	if st := e.stats(t); st.Total != int64(len(want)) {
		t.Errorf("stats total = %d, want %d", st.Total, len(want))
	}

	// Posting back the answer stores nothing new.
	again := e.post(t, "/v1/events/batch", string(res.body))
	again.wantStatus(t, http.StatusOK)
	if !jsonEqual(again.object(t), res.object(t)) {
		t.Errorf("re-post answered\n%s\nwant\n%s", again.body, res.body)
	}
	if st := e.stats(t); st.Total != int64(len(want)) {
		t.Errorf("stats total = %d after re-post, want %d", st.Total, len(want))
	}
}

func TestBatchRejected(t *testing.T) {
	e := newEnv(t, httpapi.Options{}, &boltstore.Options{Event: outbox.Options{MaxPayload: 1024}})
	const id = "0190b5a8-7f3e-7c3a-9d2e-1a2b3c4d5e6f"
	e.post(t, "/v1/events", `{"id":"`+id+`","type":"stored"}`).wantStatus(t, http.StatusCreated)
	ok := `{"type":"ok","entity_id":"e1"}`
	tests := []struct {
		name        string
		contentType string
		body        string
		status      int
		want        string
	}{
		{name: "invalid type at index 2", body: `{"events":[` + ok + `,` + ok + `,{"type":"a.*"}]}`, status: 400, want: "events[2]: invalid type"},
		{name: "only event invalid", body: `{"events":[{"type":"a","priority":10}]}`, status: 400, want: "events[0]: invalid priority"},
		{name: "wrong JSON type at index 1", body: `{"events":[` + ok + `,{"type":"a","priority":"x"}]}`, status: 400, want: "events[1]: invalid priority"},
		{name: "unknown field at index 0", body: `{"events":[{"type":"a","foo":1},` + ok + `]}`, status: 400, want: `events[0]: unknown field "foo"`},
		{name: "null event", body: `{"events":[` + ok + `,null]}`, status: 400, want: "events[1]: event must be a JSON object"},
		{name: "lone surrogate at index 1", body: `{"events":[` + ok + `,{"type":"a","entity_id":"\udc00"}]}`, status: 400, want: "events[1]: invalid entity_id: lone surrogate escape"},
		{name: "both payloads at index 1", body: `{"events":[` + ok + `,{"type":"a","payload":1,"payload_base64":"AA=="}]}`, status: 400, want: "events[1]: invalid payload"},
		{name: "payload over the limit at index 1", body: `{"events":[` + ok + `,{"type":"a","payload_base64":"` + base64Of(1025) + `"}]}`, status: 413, want: "events[1]: invalid payload"},
		{name: "id stored with other content", body: `{"events":[` + ok + `,{"id":"` + id + `","type":"other"}]}`, status: 409, want: "events[1]: "},
		{name: "only event stored with other content", body: `{"events":[{"id":"` + id + `","type":"other"}]}`, status: 409, want: "events[0]: boltstore: event id exists"},
		{name: "id repeated with other content", body: `{"events":[{"id":"0190b5a8-7f3e-7c3a-9d2e-000000000009","type":"a"},{"id":"0190b5a8-7f3e-7c3a-9d2e-000000000009","type":"b"}]}`, status: 409, want: "events[1]: "},
		{name: "empty list", body: `{"events":[]}`, status: 400, want: "events"},
		{name: "events null", body: `{"events":null}`, status: 400, want: "events"},
		{name: "events missing", body: `{}`, status: 400, want: "events"},
		{name: "events an object", body: `{"events":{"type":"a"}}`, status: 400, want: "invalid events: want an array"},
		{name: "unknown top-level field", body: `{"events":[` + ok + `],"event":1}`, status: 400, want: `unknown field "event"`},
		{name: "body an array", body: `[` + ok + `]`, status: 400, want: "must be a JSON object"},
		{name: "malformed", body: `{"events":[` + ok, status: 400, want: "malformed JSON"},
		{name: "trailing data", body: `{"events":[` + ok + `]}]`, status: 400, want: "data after the JSON value"},
		{name: "content type", contentType: "text/json", body: `{"events":[` + ok + `]}`, status: 415, want: "Content-Type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct := tt.contentType
			if ct == "" {
				ct = "application/json"
			}
			res := e.do(t, http.MethodPost, "/v1/events/batch", ct, strings.NewReader(tt.body))
			res.wantError(t, tt.status, tt.want)
			if msg := res.object(t)["error"].(string); strings.Count(msg, "events[") > 1 {
				t.Errorf("error = %q: names the event more than once", msg)
			}
			if st := e.stats(t); st.Total != 1 {
				t.Errorf("stats total = %d after a rejected batch, want 1", st.Total)
			}
		})
	}
}

func TestGetEvent(t *testing.T) {
	e := newEnv(t, httpapi.Options{}, nil)
	res := e.post(t, "/v1/events", `{"type":"a","entity_id":"e1"}`)
	res.wantStatus(t, http.StatusCreated)
	var posted outbox.Event
	if err := json.Unmarshal(res.body, &posted); err != nil {
		t.Fatal(err)
	}
	if got := e.get(t, "/v1/events/"+posted.ID).object(t)["status"]; got != "pending" {
		t.Errorf("status = %v, want pending", got)
	}
	if err := e.store.Complete(context.Background(), []boltstore.Ack{{Seq: posted.Seq, At: time.Now()}}); err != nil {
		t.Fatalf("complete: %v", err)
	}

	tests := []struct {
		name   string
		id     string
		status int
		want   map[string]any
	}{
		{"current status", posted.ID, 200, map[string]any{"status": "completed", "attempt_count": 1.0, "type": "a"}},
		{"upper-case id", strings.ToUpper(posted.ID), 200, map[string]any{"id": posted.ID, "status": "completed"}},
		{"unknown id", uuid.NewString(), 404, nil},
		{"not a UUID", "nope", 404, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := e.get(t, "/v1/events/"+tt.id)
			if tt.status != http.StatusOK {
				res.wantError(t, tt.status, "not found")
				return
			}
			res.wantStatus(t, tt.status)
			got := res.object(t)
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %v, want %v", k, got[k], v)
				}
			}
			if _, ok := got["completed_at"]; !ok {
				t.Errorf("completed_at missing: %s", res.body)
			}
		})
	}
}

func TestStats(t *testing.T) {
	e := newEnv(t, httpapi.Options{}, nil)
	// The fields of the first release keep their names; the rest are added.
	zero := map[string]any{"total": 0.0, "pending": 0.0, "processing": 0.0, "completed": 0.0, "failed": 0.0,
		"stale": 0.0, "oldest_pending_at": nil, "newest_completed_at": nil, "success_rate": 1.0, "has_issues": false}
	res := e.get(t, "/v1/stats")
	res.wantStatus(t, http.StatusOK)
	if got := res.object(t); !hasFields(got, zero) {
		t.Errorf("empty store: stats = %s, want %v", res.body, zero)
	}

	res = e.post(t, "/v1/events/batch", `{"events":[{"type":"a","user_id":"u1"},{"type":"b","user_id":"u2"},{"type":"c","user_id":"u1"}]}`)
	res.wantStatus(t, http.StatusCreated)
	var b struct{ Events []outbox.Event }
	if err := json.Unmarshal(res.body, &b); err != nil {
		t.Fatal(err)
	}
	if err := e.store.Complete(context.Background(), []boltstore.Ack{{Seq: b.Events[0].Seq, At: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		want map[string]any
	}{
		{"/v1/stats", map[string]any{"total": 3.0, "pending": 2.0, "processing": 0.0, "completed": 1.0, "failed": 0.0, "has_issues": false}},
		{"/v1/stats?user_id=u1", map[string]any{"total": 2.0, "pending": 1.0, "completed": 1.0, "failed": 0.0}},
		{"/v1/stats?user_id=u2", map[string]any{"total": 1.0, "pending": 1.0, "completed": 0.0}},
		{"/v1/stats?user_id=nobody", map[string]any{"total": 0.0, "pending": 0.0}},
	}
	for _, tt := range tests {
		res = e.get(t, tt.path)
		res.wantStatus(t, http.StatusOK)
		got := res.object(t)
		if !hasFields(got, tt.want) {
			t.Errorf("GET %s = %s, want %v", tt.path, res.body, tt.want)
		}
		if _, ok := got["oldest_pending_at"].(string); !ok && tt.want["pending"] != 0.0 {
			t.Errorf("GET %s: oldest_pending_at = %v, want a time", tt.path, got["oldest_pending_at"])
		}
	}
	e.get(t, "/v1/stats?user=u1").wantError(t, http.StatusBadRequest, `unknown parameter "user"`)
}

// hasFields reports whether got has every field of want with its value.
func hasFields(got, want map[string]any) bool {
	for k, v := range want {
		if g, ok := got[k]; !ok || !jsonEqual(g, v) {
			return false
		}
	}
	return true
}

func TestProbes(t *testing.T) {
	errNATS := errors.New("nats: no servers available")
	tests := []struct {
		name       string
		ready      func(context.Context) error
		closeStore bool
		path       string
		status     int
		want       string // the error, or "" for {"status":"ok"}
	}{
		{name: "healthz", path: "/healthz", status: 200},
		{name: "healthz while not ready", ready: func(context.Context) error { return errNATS }, path: "/healthz", status: 200},
		{name: "readyz without a Ready func", path: "/readyz", status: 200},
		{name: "readyz ready", ready: func(ctx context.Context) error { return ctx.Err() }, path: "/readyz", status: 200},
		{name: "readyz NATS down", ready: func(context.Context) error { return errNATS }, path: "/readyz", status: 503, want: "no servers available"},
		{name: "readyz store closed", closeStore: true, path: "/readyz", status: 503, want: "store"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, httpapi.Options{Ready: tt.ready}, nil)
			if tt.closeStore {
				e.store.Close()
			}
			res := e.get(t, tt.path)
			if tt.want != "" {
				res.wantError(t, tt.status, tt.want)
				return
			}
			res.wantStatus(t, tt.status)
			if got := res.object(t); !jsonEqual(got, map[string]any{"status": "ok"}) {
				t.Errorf("body = %s, want {\"status\":\"ok\"}", res.body)
			}
		})
	}
}

func TestUnrouted(t *testing.T) {
	e := newEnv(t, httpapi.Options{}, nil)
	id := uuid.NewString()
	tests := []struct {
		method, path string
		status       int
		allow        string // in the Allow header of a 405
	}{
		{http.MethodPut, "/v1/events", 405, "POST"},
		{http.MethodPatch, "/v1/events", 405, "DELETE"},
		{http.MethodPut, "/v1/events/" + id, 405, "DELETE"},
		{http.MethodPost, "/v1/events/" + id, 405, "GET"},
		{http.MethodGet, "/v1/events/" + id + "/retry", 405, "POST"},
		{http.MethodGet, "/v1/backup", 405, "POST"},
		{http.MethodGet, "/v1/reset", 405, "POST"},
		{http.MethodPost, "/v1/status", 405, "GET"},
		{http.MethodGet, "/metrics", 404, ""}, // no Options.Metrics
		{http.MethodPut, "/v1/events/batch", 405, "POST"},
		{http.MethodPost, "/v1/stats", 405, "GET"},
		{http.MethodPost, "/healthz", 405, "GET"},
		{http.MethodGet, "/nope", 404, ""},
		{http.MethodGet, "/", 404, ""},
		{http.MethodPost, "/v2/events", 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			res := e.do(t, tt.method, tt.path, "application/json", strings.NewReader(`{"type":"a"}`))
			res.wantError(t, tt.status, tt.path)
			if allow := res.header.Get("Allow"); !strings.Contains(allow, tt.allow) || (tt.allow == "") != (allow == "") {
				t.Errorf("Allow = %q, want it to contain %q", allow, tt.allow)
			}
			if st := e.stats(t); st.Total != 0 {
				t.Errorf("stats total = %d, want 0", st.Total)
			}
		})
	}
}

func TestHandle(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, nil))
	e := newEnv(t, httpapi.Options{Logger: logger}, nil)
	e.api.Handle("GET /v1/events/{id}/trace", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "trace %s", r.PathValue("id"))
	}))
	e.api.Handle("POST /v1/boom", http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		panic("boom")
	}))

	res := e.get(t, "/v1/events/x/trace")
	res.wantStatus(t, http.StatusOK)
	if string(res.body) != "trace x" {
		t.Errorf("body = %q, want %q", res.body, "trace x")
	}
	e.do(t, http.MethodDelete, "/v1/events/x/trace", "", nil).wantError(t, http.StatusMethodNotAllowed, "DELETE")
	e.post(t, "/v1/boom", `{}`).wantError(t, http.StatusInternalServerError, "internal")
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "boom") {
		t.Errorf("panic not logged: %s", logs.String())
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// stubStore fails every call with err.
type stubStore struct{ err error }

func (s stubStore) Enqueue(context.Context, ...*outbox.Event) (int, error) { return 0, s.err }
func (s stubStore) Get(context.Context, string) (*outbox.Event, error)     { return nil, s.err }
func (s stubStore) Stats(context.Context) (boltstore.Stats, error)         { return boltstore.Stats{}, s.err }

func TestStoreErrors(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		status int
		want   string
	}{
		{"cancelled", fmt.Errorf("boltstore: %w", context.Canceled), 503, "canceled"},
		{"deadline", context.DeadlineExceeded, 503, "deadline"},
		{"disk", errors.New("boltstore: write: no space left on device"), 500, "internal: boltstore: write: no space left on device"},
		{"not found", fmt.Errorf("%w: x", boltstore.ErrNotFound), 404, "not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(httpapi.New(stubStore{tt.err}, httpapi.Options{}))
			defer srv.Close()
			e := &env{srv: srv}
			e.post(t, "/v1/events", `{"type":"a"}`).wantError(t, tt.status, tt.want)
			e.post(t, "/v1/events/batch", `{"events":[{"type":"a"}]}`).wantError(t, tt.status, tt.want)
			e.get(t, "/v1/events/"+uuid.NewString()).wantError(t, tt.status, tt.want)
			e.get(t, "/v1/stats").wantError(t, tt.status, tt.want)
		})
	}
}

// TestGarbage sends random and mutated bodies: none may cause a 5xx, and
// every rejection is a JSON error.
func TestGarbage(t *testing.T) {
	e := newEnv(t, httpapi.Options{MaxBodyBytes: 1 << 16}, &boltstore.Options{Event: outbox.Options{MaxPayload: 1024}})
	valid := []string{
		`{"type":"mood.created","entity_id":"m1","user_id":"u","priority":3,"metadata":{"a":1},"payload":{"x":[1,2,{"y":null}]}}`,
		`{"id":"0190b5a8-7f3e-7c3a-9d2e-1a2b3c4d5e6f","type":"a","payload_base64":"AAEC","retry":{"initial_interval":"1s","max_interval":"1m","multiplier":2}}`,
		`{"events":[{"type":"a"},{"type":"b","payload":"x"}]}`,
	}
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte(`{}[]":,\ 0123456789.eE+-truefalsnul/abcxyz` + "\x00\xff\n")
	bodies := []string{
		strings.Repeat("[", 20000),
		strings.Repeat(`{"a":`, 20000),
		`{"type":"a","payload":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}`,
		`{"type":"a","priority":99999999999999999999999}`,
		`{"type":"a","metadata":{"a":` + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `}}`,
		`{"type":"\ud800"}`,
		"{\"type\":\"a\xff\"}",
		`{"events":[` + strings.Repeat(`{"type":"a"},`, 100) + `{}]}`,
	}
	for range 200 {
		b := make([]byte, r.IntN(64))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		bodies = append(bodies, string(b))
	}
	for range 400 {
		b := []byte(valid[r.IntN(len(valid))])
		for range 1 + r.IntN(3) {
			i := r.IntN(len(b))
			switch r.IntN(4) {
			case 0:
				b[i] = alphabet[r.IntN(len(alphabet))]
			case 1:
				b = b[:i]
			case 2:
				b = append(b[:i], b[i+1:]...)
			default:
				b = append(b[:i], append([]byte{alphabet[r.IntN(len(alphabet))]}, b[i:]...)...)
			}
			if len(b) == 0 {
				break
			}
		}
		bodies = append(bodies, string(b))
	}
	for i, body := range bodies {
		for _, path := range []string{"/v1/events", "/v1/events/batch"} {
			res := e.post(t, path, body)
			if res.status >= 500 {
				t.Errorf("body %d to %s: status %d: %s\nbody: %q", i, path, res.status, res.body, body)
				continue
			}
			if res.status >= 400 {
				var m map[string]any
				if err := json.Unmarshal(res.body, &m); err != nil || m["error"] == nil {
					t.Errorf("body %d to %s: status %d without a JSON error: %s", i, path, res.status, res.body)
				}
			}
		}
	}
}
