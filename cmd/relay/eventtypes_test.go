package main

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fitiqcore/outbox"
)

// The schema files of the config tests, written beside the config file.
var schemaFiles = map[string]string{
	"schemas/review.json":   `{"type":"object","required":["score"],"properties":{"score":{"type":"integer","minimum":1,"maximum":5}}}`,
	"schemas/meta.json":     `{"type":"object","required":["tenant"],"properties":{"tenant":{"type":"string"}}}`,
	"schemas/not_json.json": `{"type": "object",`,
	"schemas/bad.json":      `{"properties":{"score":{"maximum":"five"}}}`,
	"schemas/remote.json":   `{"$ref":"https://schemas.example.com/review.json"}`,
}

// writeConfigWithSchemas writes body as a config file in a new directory
// with schemaFiles beside it, and returns the config's path.
func writeConfigWithSchemas(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range schemaFiles {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(dir, "relay.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConfigEventTypes: an entry of event_types is a name or a mapping of
// name, payload_schema and metadata_schema, with paths relative to the
// config file; the schemas are compiled at load and check events.
func TestConfigEventTypes(t *testing.T) {
	review := func(payload, metadata string) *outbox.Event {
		return &outbox.Event{Type: "review.created", ContentType: outbox.ContentTypeJSON, Payload: []byte(payload), Metadata: []byte(metadata)}
	}
	tests := []struct {
		name    string
		body    string
		types   []EventType
		checked bool // loadConfig compiled schemas
	}{
		{"names", "event_types:\n  - mood.created\n  - journal.created\n",
			[]EventType{{Name: "mood.created"}, {Name: "journal.created"}}, false},
		{"a mapping with both schemas", "event_types:\n  - mood.created\n  - name: review.created\n    payload_schema: schemas/review.json\n    metadata_schema: ./schemas/meta.json\n",
			[]EventType{{Name: "mood.created"}, {Name: "review.created", PayloadSchema: "schemas/review.json", MetadataSchema: "./schemas/meta.json"}}, true},
		{"a flow mapping", "event_types:\n  - {name: review.created, payload_schema: schemas/review.json, metadata_schema: schemas/meta.json}\n",
			[]EventType{{Name: "review.created", PayloadSchema: "schemas/review.json", MetadataSchema: "schemas/meta.json"}}, true},
		{"a mapping with a name only", "event_types:\n  - name: review.created\n",
			[]EventType{{Name: "review.created"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadConfig(writeConfigWithSchemas(t, tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(c.EventTypes, tt.types) {
				t.Errorf("event_types %+v, want %+v", c.EventTypes, tt.types)
			}
			names := append(eventTypeNames(tt.types), verifyType)
			if o := c.httpOptions(); !slices.Equal(o.AllowedTypes, names) {
				t.Errorf("allowed types %v, want %v", o.AllowedTypes, names)
			}
			if (c.schemas != nil) != tt.checked {
				t.Fatalf("schemas compiled: %v, want %v", c.schemas != nil, tt.checked)
			}
			if !tt.checked {
				return
			}
			if err := c.schemas.Check(review(`{"score":4}`, `{"tenant":"t-1"}`)); err != nil {
				t.Errorf("a valid event: %v", err)
			}
			if err := c.schemas.Check(review(`{"score":7}`, `{"tenant":"t-1"}`)); err == nil || err.Error() != "invalid payload/score: must be <= 5" {
				t.Errorf("a payload over the maximum: %v", err)
			}
			if err := c.schemas.Check(review(`{"score":4}`, "")); err == nil || err.Error() != `invalid metadata: missing property "tenant"` {
				t.Errorf("no metadata: %v", err)
			}
		})
	}
}

// TestConfigEventTypeErrors: what is wrong with an entry of event_types is
// a config error naming the entry's key, its line for an unknown key or a
// bad value, and the schema file for a schema that does not compile.
func TestConfigEventTypeErrors(t *testing.T) {
	const head = "event_types:\n  - mood.created\n"
	tests := []struct {
		name, body string
		want       string // after "<config path>: config: "; <dir> is the config's directory
	}{
		{"a broken schema file", head + "  - journal.created\n  - name: review.created\n    payload_schema: schemas/not_json.json\n",
			"event_types[2].payload_schema: <dir>/schemas/not_json.json: not JSON: "},
		{"an invalid schema", head + "  - {name: review.created, metadata_schema: schemas/bad.json}\n",
			"event_types[1].metadata_schema: <dir>/schemas/bad.json: not a valid JSON Schema: at /properties/score/maximum: must be number, got string"},
		{"a missing schema file", head + "  - {name: review.created, payload_schema: nope.json}\n",
			"event_types[1].payload_schema: <dir>/nope.json: read: no such file or directory"},
		{"a remote $ref", head + "  - {name: review.created, payload_schema: schemas/remote.json}\n",
			`event_types[1].payload_schema: <dir>/schemas/remote.json: reference to "https://schemas.example.com/review.json" not loaded: only references within the file resolve`},
		{"an unknown key in a mapping", head + "  - name: review.created\n    payload_shema: schemas/review.json\n",
			"event_types[1].payload_shema: unknown key (line 4)"},
		{"a bad value in a mapping", head + "  - name: review.created\n    payload_schema: [a, b]\n",
			"event_types[1].payload_schema: bad value (line 4): "},
		{"an invalid name in a mapping", head + "  - name: 'review.*'\n    payload_schema: schemas/review.json\n",
			`event_types[1]: invalid type: character '*' not allowed in "review.*"`},
		{"an invalid name", head + "  - 'mood created'\n",
			`event_types[1]: invalid type: character ' ' not allowed in "mood created"`},
		{"a mapping without a name", head + "  - payload_schema: schemas/review.json\n",
			"event_types[1]: invalid type: required"},
		{"a list for an entry", head + "  - [a, b]\n",
			"event_types[1]: bad value (line 3): want a type name, or a mapping of name, payload_schema and metadata_schema"},
		{"a typed name listed twice", head + "  - {name: review.created, payload_schema: schemas/review.json}\n  - review.created\n",
			`event_types[2]: type "review.created" is listed twice (first at index 1, with schemas)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfigWithSchemas(t, tt.body)
			_, err := loadConfig(path)
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, errConfig) {
				t.Errorf("error %v does not wrap errConfig", err)
			}
			want := path + ": config: " + strings.ReplaceAll(tt.want, "<dir>", filepath.Dir(path))
			if !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error %q\nwant      %q...", err, want)
			}
		})
	}
}

// TestServeTypedEvents: relay serve compiles the schemas of event_types at
// start and its API refuses an event that violates them, alone or in a
// batch, with a 400 naming the field and the JSON pointer; a valid one is
// stored.
func TestServeTypedEvents(t *testing.T) {
	r := startRelay(t, relayOpts{
		eventTypes: []string{"mood.created", "{name: review.created, payload_schema: review.json}"},
		files:      map[string]string{"review.json": schemaFiles["schemas/review.json"]},
	})
	r.post(`{"type":"review.created","payload":{"score":5}}`)
	r.post(`{"type":"mood.created","payload":{"score":9}}`)
	for _, tt := range []struct{ path, body, want string }{
		{"/v1/events", `{"type":"review.created","payload":{"score":7}}`, "invalid payload/score: must be <= 5"},
		{"/v1/events/batch", `{"events":[{"type":"mood.created"},{"type":"review.created","payload":{"score":"x"}}]}`, "events[1]: invalid payload/score: must be integer, got string"},
	} {
		var body map[string]string
		if st := r.api(http.MethodPost, tt.path, tt.body, &body); st != http.StatusBadRequest || body["error"] != tt.want {
			t.Errorf("POST %s %s: %d %v, want 400 %q", tt.path, tt.body, st, body, tt.want)
		}
	}
	var stats struct{ Total int }
	if r.api(http.MethodGet, "/v1/stats", "", &stats); stats.Total != 2 {
		t.Errorf("stored %d events, want the 2 valid ones", stats.Total)
	}
}

// TestServeRefusesABrokenSchema: a schema that does not compile stops
// relay serve at start, before anything is opened, naming the key and the
// file.
func TestServeRefusesABrokenSchema(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "relay.yaml")
	body := "store:\n  path: " + filepath.Join(dir, "outbox.db") + "\nevent_types:\n  - {name: review.created, payload_schema: review.json}\n"
	if err := os.WriteFile(filepath.Join(dir, "review.json"), []byte(`{"type": 3}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	res := cli(t, "", "serve", "--config", cfg).wantCode(t, 1)
	contains(t, "serve with a broken schema", res.stderr, "config: event_types[0].payload_schema: "+filepath.Join(dir, "review.json")+": not a valid JSON Schema: at /type: ")
	if _, err := os.Stat(filepath.Join(dir, "outbox.db")); !os.IsNotExist(err) {
		t.Errorf("refused serve created the store: %v", err)
	}
}
