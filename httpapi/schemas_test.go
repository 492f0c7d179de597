package httpapi_test

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/httpapi"
	"github.com/fitiqcore/outbox/schema"
)

// The schema.Set of the daemon is a Checker.
var _ httpapi.Checker = (*schema.Set)(nil)

// reviewSchemas compiles a payload schema and a metadata schema for
// review.created, written into a temporary directory.
func reviewSchemas(t testing.TB) *schema.Set {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"review.json": `{"type":"object","required":["score"],"properties":{"score":{"type":"integer","minimum":1,"maximum":5}}}`,
		"meta.json":   `{"type":"object","properties":{"tenant":{"type":"string","pattern":"^t-"}}}`,
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s, err := schema.Compile([]schema.Type{{
		Name:           "review.created",
		PayloadSchema:  filepath.Join(dir, "review.json"),
		MetadataSchema: filepath.Join(dir, "meta.json"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSchemasAtIngest: with Options.Schemas, every event posted, alone or
// in a batch, is checked against its type's schemas before the store sees
// it; a violation is a 400 naming the field and the JSON pointer (after the
// event's index in a batch), and nothing of the request is stored.
func TestSchemasAtIngest(t *testing.T) {
	e := newEnv(t, httpapi.Options{Schemas: reviewSchemas(t), AllowedTypes: []string{"review.created", "other.event"}}, nil)
	const (
		good  = `{"type":"review.created","metadata":{"tenant":"t-1"},"payload":{"score":4}}`
		other = `{"type":"other.event","payload_base64":"AAE="}`
	)
	tests := []struct {
		name, path, body string
		status           int
		want             string // in the error; "" for a success
	}{
		{"valid", "/v1/events", good, http.StatusCreated, ""},
		{"type without schemas", "/v1/events", other, http.StatusCreated, ""},
		{"valid batch", "/v1/events/batch", `{"events":[` + good + `,` + other + `]}`, http.StatusCreated, ""},
		{"payload over the maximum", "/v1/events", `{"type":"review.created","payload":{"score":7}}`, http.StatusBadRequest, "invalid payload/score: must be <= 5"},
		{"payload of the wrong type", "/v1/events", `{"type":"review.created","payload":{"score":"7"}}`, http.StatusBadRequest, "invalid payload/score: must be integer, got string"},
		{"payload missing a property", "/v1/events", `{"type":"review.created","payload":{}}`, http.StatusBadRequest, `invalid payload: missing property "score"`},
		{"payload not JSON", "/v1/events", `{"type":"review.created","payload_base64":"AAE="}`, http.StatusBadRequest, `invalid payload: the type's payload_schema needs a JSON content type, got "application/octet-stream"`},
		{"no payload", "/v1/events", `{"type":"review.created"}`, http.StatusBadRequest, "invalid payload: required"},
		{"metadata", "/v1/events", `{"type":"review.created","metadata":{"tenant":"acme"},"payload":{"score":1}}`, http.StatusBadRequest, `invalid metadata/tenant: must match the pattern "^t-"`},
		{"in a batch", "/v1/events/batch", `{"events":[` + good + `,{"type":"review.created","payload":{"score":7}}]}`, http.StatusBadRequest, "events[1]: invalid payload/score: must be <= 5"},
		{"in a batch of one", "/v1/events/batch", `{"events":[{"type":"review.created","payload":{"score":0}}]}`, http.StatusBadRequest, "events[0]: invalid payload/score: must be >= 1"},
		{"in a batch, before a later fault", "/v1/events/batch", `{"events":[{"type":"review.created","payload":{"score":9}},{"type":"a.*"}]}`, http.StatusBadRequest, "events[0]: invalid payload/score: must be <= 5"},
		{"the allowlist first", "/v1/events", `{"type":"mood.created","payload":{"score":9}}`, http.StatusBadRequest, `"mood.created" is not allowed`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.stats(t).Total
			res := e.post(t, tt.path, tt.body)
			if tt.want == "" {
				res.wantStatus(t, tt.status)
				return
			}
			res.wantError(t, tt.status, tt.want)
			if msg := res.object(t)["error"].(string); strings.Count(msg, "events[") > 1 {
				t.Errorf("error = %q: names the event more than once", msg)
			}
			if after := e.stats(t).Total; after != before {
				t.Errorf("a refused request stored %d events", after-before)
			}
		})
	}
}

// checkerFunc is a Checker of a function.
type checkerFunc func(e *outbox.Event) error

func (f checkerFunc) Check(e *outbox.Event) error { return f(e) }

// TestCheckerContract: the Checker sees each event once, decoded (its
// content type filled in) and of an allowed type; an error that is not the
// client's is a 500.
func TestCheckerContract(t *testing.T) {
	var (
		mu   sync.Mutex
		seen []string
	)
	fault := errors.New("checker broke")
	check := checkerFunc(func(e *outbox.Event) error {
		mu.Lock()
		seen = append(seen, e.Type+" "+e.ContentType)
		mu.Unlock()
		if e.Type == "broken.event" {
			return fault
		}
		return nil
	})
	e := newEnv(t, httpapi.Options{Schemas: check, AllowedTypes: []string{"a.b", "c.d", "broken.event"}}, nil)
	e.post(t, "/v1/events/batch", `{"events":[{"type":"a.b","payload":{"x":1}},{"type":"c.d","payload_base64":"AA=="}]}`).wantStatus(t, http.StatusCreated)
	e.post(t, "/v1/events", `{"type":"not.allowed"}`).wantStatus(t, http.StatusBadRequest)
	mu.Lock()
	got := strings.Join(seen, "; ")
	mu.Unlock()
	if want := "a.b application/json; c.d application/octet-stream"; got != want {
		t.Errorf("the Checker saw %q, want %q", got, want)
	}
	e.post(t, "/v1/events", `{"type":"broken.event"}`).wantError(t, http.StatusInternalServerError, "internal: checker broke")
	e.post(t, "/v1/events/batch", `{"events":[{"type":"a.b"},{"type":"broken.event"}]}`).wantError(t, http.StatusInternalServerError, "events[1]: internal: checker broke")
	if st := e.stats(t); st.Total != 2 {
		t.Errorf("stored %d events, want the 2 of the first batch", st.Total)
	}
}
