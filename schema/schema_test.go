package schema_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/schema"
)

// mustCompile compiles types with their files in testdata.
func mustCompile(t testing.TB, types ...schema.Type) *schema.Set {
	t.Helper()
	for i := range types {
		if p := types[i].PayloadSchema; p != "" {
			types[i].PayloadSchema = filepath.Join("testdata", p)
		}
		if p := types[i].MetadataSchema; p != "" {
			types[i].MetadataSchema = filepath.Join("testdata", p)
		}
	}
	s, err := schema.Compile(types)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func jsonEvent(typ, metadata, payload string) *outbox.Event {
	e := &outbox.Event{Type: typ, Metadata: []byte(metadata), Payload: []byte(payload)}
	if payload != "" {
		e.ContentType = outbox.ContentTypeJSON
	}
	return e
}

func TestCheck(t *testing.T) {
	s := mustCompile(t,
		schema.Type{Name: "review.created", PayloadSchema: "review.json", MetadataSchema: "metadata.json"},
		schema.Type{Name: "review.tagged", MetadataSchema: "metadata_required.json"},
		schema.Type{Name: "order.placed", PayloadSchema: "id.json"},
		schema.Type{Name: "user.signed_up", PayloadSchema: "draft07.json"},
		schema.Type{Name: "plain.event"},
	)
	const review = "review.created"
	tests := []struct {
		name  string
		event *outbox.Event
		field string // "" valid
		want  string // the reason
	}{
		{"valid", jsonEvent(review, `{"tenant":"t-1"}`, `{"score":5,"title":"Dune","sku":"ABC-12","tags":["a","b"],"kind":"book","version":2}`), "", ""},
		{"valid without metadata", jsonEvent(review, "", `{"score":1}`), "", ""},
		{"valid with null metadata", jsonEvent(review, "null", `{"score":1}`), "", ""},
		{"valid with +json content type", &outbox.Event{Type: review, ContentType: "application/vnd.review+json; charset=utf-8", Payload: []byte(`{"score":3}`)}, "", ""},
		{"type without schemas", &outbox.Event{Type: "plain.event", ContentType: outbox.ContentTypeBinary, Payload: []byte{0xff}}, "", ""},
		{"type not listed", &outbox.Event{Type: "other.event", Metadata: []byte(`{"x":1}`)}, "", ""},
		{"exact numbers", jsonEvent(review, "", `{"score":4.0,"step":12345678901234567890.5}`), "", ""},

		{"maximum", jsonEvent(review, "", `{"score":7}`), "payload/score", "must be <= 5"},
		{"minimum", jsonEvent(review, "", `{"score":0}`), "payload/score", "must be >= 1"},
		{"exclusive maximum", jsonEvent(review, "", `{"score":1,"weight":1}`), "payload/weight", "must be < 1"},
		{"exclusive minimum", jsonEvent(review, "", `{"score":1,"weight":0}`), "payload/weight", "must be > 0"},
		{"multiple of", jsonEvent(review, "", `{"score":1,"step":0.7}`), "payload/step", "must be a multiple of 0.5"},
		{"type", jsonEvent(review, "", `{"score":"five"}`), "payload/score", "must be integer, got string"},
		{"type of an integer", jsonEvent(review, "", `{"score":1,"title":3}`), "payload/title", "must be string, got integer"},
		{"type of a fraction", jsonEvent(review, "", `{"score":2.5}`), "payload/score", "must be integer, got number"},
		{"type of the whole payload", jsonEvent(review, "", `[1]`), "payload", "must be object, got array"},
		{"required", jsonEvent(review, "", `{"title":"Dune"}`), "payload", `missing property "score"`},
		{"required in a member", jsonEvent(review, "", `{"score":1,"author":{}}`), "payload/author", `missing property "id"`},
		{"additional property", jsonEvent(review, "", `{"score":1,"x":true}`), "payload", `property "x" not allowed`},
		{"additional properties, sorted", jsonEvent(review, "", `{"zz":1,"score":1,"aa":2}`), "payload", `properties "aa", "zz" not allowed`},
		{"false schema", jsonEvent(review, "", `{"score":1,"legacy":"x"}`), "payload/legacy", "not allowed"},
		{"enum", jsonEvent(review, "", `{"score":1,"kind":"song"}`), "payload/kind", `must be one of "book", "film"`},
		{"const", jsonEvent(review, "", `{"score":1,"version":1}`), "payload/version", "must be 2"},
		{"min length", jsonEvent(review, "", `{"score":1,"title":"It"}`), "payload/title", "must be at least 3 characters long, got 2"},
		{"max length", jsonEvent(review, "", `{"score":1,"title":"Neuromancer"}`), "payload/title", "must be at most 10 characters long, got 11"},
		{"pattern through a $ref", jsonEvent(review, "", `{"score":1,"sku":"abc"}`), "payload/sku", `must match the pattern "^[A-Z]{3}-[0-9]+$"`},
		{"array item", jsonEvent(review, "", `{"score":1,"tags":["a",2]}`), "payload/tags/1", "must be string, got integer"},
		{"max items", jsonEvent(review, "", `{"score":1,"tags":["a","b","c","d"]}`), "payload/tags", "must have at most 3 items, got 4"},
		{"unique items", jsonEvent(review, "", `{"score":1,"tags":["a","a"]}`), "payload/tags", "must have unique items, items 0 and 1 are equal"},
		{"anyOf", jsonEvent(review, "", `{"score":1,"either":true}`), "payload/either", "must match a schema of anyOf, matched none"},
		{"oneOf, two matched", jsonEvent(review, "", `{"score":1,"one":3}`), "payload/one", "must match exactly one schema of oneOf, matched 0 and 1"},
		{"oneOf, none matched", jsonEvent(review, "", `{"score":1,"one":-0.5}`), "payload/one", "must match exactly one schema of oneOf, matched none"},
		{"propertyNames", jsonEvent(review, "", `{"score":1,"labels":{"ok":1,"Bad":2}}`), "payload/labels", `property name "Bad" not allowed: must match the pattern "^[a-z]+$"`},
		{"propertyNames in an array item", jsonEvent(review, "", `{"score":1,"groups":[{"Bad":1},{"ok":1},{"fine":2}]}`), "payload/groups/0", `property name "Bad" not allowed: must match the pattern "^[a-z]+$"`},
		{"not", jsonEvent(review, "", `{"score":1,"not_null":null}`), "payload/not_null", "must not match the schema of not"},
		{"contains", jsonEvent(review, "", `{"score":1,"ids":["a"]}`), "payload/ids", "must contain an item that matches the schema of contains"},
		{"the library's message", jsonEvent(review, "", `{"score":1,"votes":[1,0]}`), "payload/votes", "min 2 items required to match contains schema, but matched 1 items at 0"},
		{"escaped pointer", jsonEvent(review, "", `{"score":1,"a/b":"yes"}`), "payload/a~1b", "must be boolean, got string"},
		{"the object before its members", jsonEvent(review, "", `{"title":"x","tags":[1]}`), "payload", `missing property "score"`},
		{"first member by name", jsonEvent(review, "", `{"weight":5,"score":9,"title":"x"}`), "payload/score", "must be <= 5"},
		{"format is an annotation in 2020-12", jsonEvent(review, "", `{"score":1,"email":"nope"}`), "", ""},
		{"format asserted in draft-07", jsonEvent("user.signed_up", "", `{"email":"nope"}`), "payload/email", "must be a valid email: missing @"},
		{"$ref against the file's $id", jsonEvent("order.placed", "", `{"total":-1}`), "payload/total", "must be >= 0"},

		{"payload not JSON", &outbox.Event{Type: review, ContentType: "image/png", Payload: []byte{0x89, 'P', 'N', 'G'}}, "payload", `the type's payload_schema needs a JSON content type, got "image/png"`},
		{"payload_base64 without a content type", &outbox.Event{Type: review, ContentType: outbox.ContentTypeBinary, Payload: []byte(`{"score":1}`)}, "payload", `the type's payload_schema needs a JSON content type, got "application/octet-stream"`},
		{"no payload", &outbox.Event{Type: review}, "payload", "required: the type's payload_schema needs a JSON payload"},
		{"JSON content type, bytes not JSON", &outbox.Event{Type: review, ContentType: outbox.ContentTypeJSON, Payload: []byte(`{"score":`)}, "payload", "not valid JSON: unexpected EOF"},

		{"metadata pattern", jsonEvent(review, `{"tenant":"acme"}`, `{"score":1}`), "metadata/tenant", `must match the pattern "^t-"`},
		{"metadata additional property", jsonEvent(review, `{"x":1}`, `{"score":1}`), "metadata", `property "x" not allowed`},
		{"metadata before payload", jsonEvent(review, `{"x":1}`, `{"score":9}`), "metadata", `property "x" not allowed`},
		{"metadata not an object", jsonEvent(review, `[1]`, `{"score":1}`), "metadata", "must be a JSON object"},
		{"absent metadata is {}", jsonEvent("review.tagged", "", ""), "metadata", `missing property "tenant"`},
		{"metadata only", jsonEvent("review.tagged", `{"tenant":"t-1"}`, ""), "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.Check(tt.event)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			ve, ok := errors.AsType[*outbox.ValidationError](err)
			if !ok {
				t.Fatalf("error %v (%T), want an *outbox.ValidationError", err, err)
			}
			if !errors.Is(err, outbox.ErrInvalidEvent) {
				t.Errorf("error %v does not wrap outbox.ErrInvalidEvent", err)
			}
			if ve.Field != tt.field || ve.Reason != tt.want {
				t.Errorf("got %s: %s\nwant %s: %s", ve.Field, ve.Reason, tt.field, tt.want)
			}
		})
	}
}

func TestCheckNilSet(t *testing.T) {
	var s *schema.Set
	if err := s.Check(jsonEvent("review.created", "", `{"score":9}`)); err != nil {
		t.Errorf("a nil Set: %v", err)
	}
	if err := new(schema.Set).Check(jsonEvent("review.created", "", `{"score":9}`)); err != nil {
		t.Errorf("the zero Set: %v", err)
	}
}

// TestCheckIsDeterministic: an event with several failing members gets the
// same answer every time, whatever order the library finds them in.
func TestCheckIsDeterministic(t *testing.T) {
	s := mustCompile(t, schema.Type{Name: "review.created", PayloadSchema: "review.json"})
	e := jsonEvent("review.created", "", `{"title":"x","weight":7,"score":9,"tags":[1,2],"kind":"no","version":0,"sku":"x"}`)
	first := s.Check(e)
	if first == nil || first.Error() != "invalid payload/kind: must be one of \"book\", \"film\"" {
		t.Fatalf("first answer: %v", first)
	}
	for range 200 {
		if err := s.Check(e); err == nil || err.Error() != first.Error() {
			t.Fatalf("answer changed: %v, then %v", first, err)
		}
	}
}

// TestCheckConcurrent: one Set checks events from many goroutines (run
// with -race).
func TestCheckConcurrent(t *testing.T) {
	s := mustCompile(t, schema.Type{Name: "review.created", PayloadSchema: "review.json", MetadataSchema: "metadata.json"})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				score := 1 + (g+i)%7 // 6 and 7 are over the maximum
				err := s.Check(jsonEvent("review.created", `{"tenant":"t-1"}`, fmt.Sprintf(`{"score":%d}`, score)))
				if (err != nil) != (score > 5) {
					errs <- fmt.Errorf("score %d: %v", score, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name   string
		types  []schema.Type
		index  int
		field  string
		path   string // in testdata; "" for none
		want   string // in the message
		remote bool   // wraps ErrRemoteRef
	}{
		{"missing file", []schema.Type{{Name: "a.b", PayloadSchema: "nope.json"}}, 0, "PayloadSchema", "nope.json", "read: no such file or directory", false},
		{"not JSON", []schema.Type{{Name: "a.b"}, {Name: "c.d", MetadataSchema: "not_json.json"}}, 1, "MetadataSchema", "not_json.json", "not JSON: ", false},
		{"invalid keyword", []schema.Type{{Name: "a.b", PayloadSchema: "bad_keyword.json"}}, 0, "PayloadSchema", "bad_keyword.json", "not a valid JSON Schema: at /properties/score/maximum: must be number, got string", false},
		{"remote $ref", []schema.Type{{Name: "a.b", PayloadSchema: "remote_ref.json"}}, 0, "PayloadSchema", "remote_ref.json", `reference to "https://schemas.example.com/user.json" not loaded: only references within the file resolve`, true},
		{"$ref to another file", []schema.Type{{Name: "a.b", PayloadSchema: "file_ref.json"}}, 0, "PayloadSchema", "file_ref.json", `/testdata/user.json" not loaded`, true},
		{"remote $schema", []schema.Type{{Name: "a.b", MetadataSchema: "remote_meta.json"}}, 0, "MetadataSchema", "remote_meta.json", `reference to "https://schemas.example.com/meta.json" not loaded`, true},
		{"invalid name", []schema.Type{{Name: "a.*", PayloadSchema: "review.json"}}, 0, "Name", "", "invalid type: character '*' not allowed", false},
		{"listed twice with schemas", []schema.Type{{Name: "a.b", PayloadSchema: "review.json"}, {Name: "a.b", MetadataSchema: "metadata.json"}}, 1, "Name", "", `type "a.b" with schemas is listed twice (first at index 0)`, false},
		{"listed again without", []schema.Type{{Name: "a.b", PayloadSchema: "review.json"}, {Name: "a.b"}}, 1, "Name", "", `type "a.b" is listed twice (first at index 0, with schemas)`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			types := make([]schema.Type, len(tt.types))
			for i, ty := range tt.types {
				if ty.PayloadSchema != "" {
					ty.PayloadSchema = filepath.Join("testdata", ty.PayloadSchema)
				}
				if ty.MetadataSchema != "" {
					ty.MetadataSchema = filepath.Join("testdata", ty.MetadataSchema)
				}
				types[i] = ty
			}
			s, err := schema.Compile(types)
			if err == nil {
				t.Fatalf("compiled: %v", s)
			}
			if !errors.Is(err, schema.ErrInvalidSchema) {
				t.Errorf("error %v does not wrap ErrInvalidSchema", err)
			}
			if errors.Is(err, schema.ErrRemoteRef) != tt.remote {
				t.Errorf("error %v: wraps ErrRemoteRef %v, want %v", err, !tt.remote, tt.remote)
			}
			ce, ok := errors.AsType[*schema.CompileError](err)
			if !ok {
				t.Fatalf("error %v (%T), want a *CompileError", err, err)
			}
			path := ""
			if tt.path != "" {
				path = filepath.Join("testdata", tt.path)
			}
			if ce.Index != tt.index || ce.Field != tt.field || ce.Path != path {
				t.Errorf("CompileError names types[%d].%s %q, want types[%d].%s %q", ce.Index, ce.Field, ce.Path, tt.index, tt.field, path)
			}
			prefix := fmt.Sprintf("schema: types[%d].%s: ", tt.index, tt.field)
			if path != "" {
				prefix += path + ": "
			}
			if msg := err.Error(); !strings.HasPrefix(msg, prefix) || !strings.Contains(msg, tt.want) {
				t.Errorf("error %q\nwant %q...%q", msg, prefix, tt.want)
			}
		})
	}
}

// TestCompileAccepts: lists Compile takes.
func TestCompileAccepts(t *testing.T) {
	tests := []struct {
		name  string
		types []schema.Type
	}{
		{"none", nil},
		{"names only, one twice", []schema.Type{{Name: "a.b"}, {Name: "a.b"}, {Name: "c.d"}}},
		{"one file for two types", []schema.Type{{Name: "a.b", PayloadSchema: "review.json"}, {Name: "c.d", PayloadSchema: "review.json", MetadataSchema: "review.json"}}},
		{"a schema with its own $id", []schema.Type{{Name: "a.b", PayloadSchema: "id.json"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustCompile(t, tt.types...)
			for _, ty := range tt.types {
				if ty.PayloadSchema == "review.json" {
					if err := s.Check(jsonEvent(ty.Name, "", `{"score":6}`)); err == nil || err.Error() != "invalid payload/score: must be <= 5" {
						t.Errorf("%s: %v", ty.Name, err)
					}
				}
			}
		})
	}
}

func Example() {
	set, err := schema.Compile([]schema.Type{
		{Name: "review.created", PayloadSchema: "testdata/review.json"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, payload := range []string{`{"score":4}`, `{"score":7}`, `{"title":"Dune"}`} {
		e := &outbox.Event{Type: "review.created", ContentType: "application/json", Payload: []byte(payload)}
		fmt.Println(payload, set.Check(e))
	}
	// Output:
	// {"score":4} <nil>
	// {"score":7} invalid payload/score: must be <= 5
	// {"title":"Dune"} invalid payload: missing property "score"
}
