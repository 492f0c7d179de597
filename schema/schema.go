package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/fitiqcore/outbox"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Type names an event type and the JSON Schema files of its payload and
// metadata. A path left empty means no schema for that part.
type Type struct {
	Name           string
	PayloadSchema  string // a JSON Schema file for the payload
	MetadataSchema string // a JSON Schema file for the metadata
}

// Set is the compiled schemas of a list of event types. It is immutable
// once compiled and safe for concurrent use. The zero value and a nil *Set
// have no schemas: Check accepts every event.
type Set struct {
	types map[string]typeSchemas
}

// typeSchemas is a type's compiled schemas; nil for a part without one.
type typeSchemas struct {
	payload, metadata *jsonschema.Schema
}

// Compile reads and compiles the schema files of types, each once (a file
// named by several types is compiled once and shared). Types with neither
// schema are left out: Check accepts their events as any other type's. A
// type with a schema must have a valid name (outbox.ValidateType) and be
// listed once. The first error is a *CompileError naming the type's index,
// the field and the file.
func Compile(types []Type) (*Set, error) {
	s := &Set{types: make(map[string]typeSchemas)}
	first := make(map[string]int, len(types)) // the index a name is first listed at
	byPath := make(map[string]*jsonschema.Schema)
	for i, t := range types {
		j, listed := first[t.Name]
		if !listed {
			first[t.Name] = i
		}
		if t.PayloadSchema == "" && t.MetadataSchema == "" {
			if listed && types[j].hasSchema() {
				return nil, &CompileError{Index: i, Field: "Name", Err: fmt.Errorf("type %q is listed twice (first at index %d, with schemas)", t.Name, j)}
			}
			continue
		}
		if listed {
			return nil, &CompileError{Index: i, Field: "Name", Err: fmt.Errorf("type %q with schemas is listed twice (first at index %d)", t.Name, j)}
		}
		if err := outbox.ValidateType(t.Name); err != nil {
			return nil, &CompileError{Index: i, Field: "Name", Err: err}
		}
		var ts typeSchemas
		for _, part := range []struct {
			field, path string
			dst         **jsonschema.Schema
		}{
			{"PayloadSchema", t.PayloadSchema, &ts.payload},
			{"MetadataSchema", t.MetadataSchema, &ts.metadata},
		} {
			if part.path == "" {
				continue
			}
			sch, err := compileFile(part.path, byPath)
			if err != nil {
				return nil, &CompileError{Index: i, Field: part.field, Path: part.path, Err: err}
			}
			*part.dst = sch
		}
		s.types[t.Name] = ts
	}
	return s, nil
}

func (t Type) hasSchema() bool { return t.PayloadSchema != "" || t.MetadataSchema != "" }

// compileFile compiles the schema in the file at path, or returns the one
// compiled already from the same file. The file is read here and given to
// the compiler as the resource of its absolute file URL, so that its
// location (and what a relative $id or $ref in it resolves against) does
// not depend on the library's loader; the compiler's loader refuses every
// other document (remoteRefs).
func compileFile(path string, byPath map[string]*jsonschema.Schema) (*jsonschema.Schema, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	if sch, ok := byPath[abs]; ok {
		return sch, nil
	}
	b, err := os.ReadFile(abs)
	if err != nil {
		if pe, ok := errors.AsType[*fs.PathError](err); ok {
			err = pe.Err // the path is named by the caller
		}
		return nil, fmt.Errorf("read: %w", err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		return nil, fmt.Errorf("not JSON: at offset %d: %w", se.Offset, err)
	}
	if err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	// The file's URL, escaped: the library would take a "#" in a path for
	// a fragment.
	slashed := filepath.ToSlash(abs)
	if !strings.HasPrefix(slashed, "/") {
		slashed = "/" + slashed
	}
	loc := (&url.URL{Scheme: "file", Path: slashed}).String()
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.UseLoader(remoteRefs{})
	if err := c.AddResource(loc, doc); err != nil {
		return nil, err
	}
	sch, err := c.Compile(loc)
	if err != nil {
		return nil, compileError(err, doc)
	}
	byPath[abs] = sch
	return sch, nil
}

// remoteRefs is the compiler's loader: it loads nothing. The meta-schemas
// of the drafts are built into the library and never reach a loader; any
// other document a schema names, by a $ref or its $schema, is refused.
type remoteRefs struct{}

func (remoteRefs) Load(string) (any, error) { return nil, ErrRemoteRef }

// refError is the error of a schema that names a document outside its
// file; it wraps ErrRemoteRef.
type refError struct{ url string }

func (e *refError) Error() string {
	return fmt.Sprintf("reference to %q not loaded: only references within the file resolve", e.url)
}

func (e *refError) Unwrap() error { return ErrRemoteRef }

// compileError rewrites the library's compile errors that have a clearer
// form: a schema that its meta-schema refuses names the keyword's place in
// the file as a JSON pointer, and a refused reference names the document.
func compileError(err error, doc any) error {
	if le, ok := errors.AsType[*jsonschema.LoadURLError](err); ok && errors.Is(le.Err, ErrRemoteRef) {
		return &refError{url: le.URL}
	}
	if se, ok := errors.AsType[*jsonschema.SchemaValidationError](err); ok {
		if ve, ok := errors.AsType[*jsonschema.ValidationError](se.Err); ok {
			repairLocations(ve, doc)
			leaf := firstLeaf(ve)
			at := pointer(leaf.InstanceLocation)
			if at == "" {
				at = "/"
			}
			return fmt.Errorf("not a valid JSON Schema: at %s: %s", at, reason(leaf, doc))
		}
	}
	return err
}

// Check validates e against the schemas of its type: nil when its type has
// none (or s is nil), else an *outbox.ValidationError for the first
// violation, whose Field is "metadata" or "payload" followed by the JSON
// pointer of the failing value ("payload/score"; the whole value:
// "payload") and whose Reason says what is wrong ("must be <= 5"). The
// metadata is checked before the payload, as outbox.Event.Validate does.
// Check does not change e and is safe for concurrent use.
//
// Metadata that is absent (or null) is checked as {}; metadata that is not
// a JSON object is refused as outbox.Event.Validate refuses it. A type with
// a payload schema needs a payload of a JSON content type
// (outbox.IsJSONContentType) that holds valid JSON.
func (s *Set) Check(e *outbox.Event) error {
	if s == nil {
		return nil
	}
	ts, ok := s.types[e.Type]
	if !ok {
		return nil
	}
	if ts.metadata != nil {
		if err := checkMetadata(ts.metadata, e.Metadata); err != nil {
			return err
		}
	}
	if ts.payload != nil {
		return checkPayload(ts.payload, e)
	}
	return nil
}

func checkMetadata(sch *jsonschema.Schema, metadata []byte) error {
	var v any = map[string]any{}
	if m := bytes.TrimSpace(metadata); len(m) > 0 && !bytes.Equal(m, []byte("null")) {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(m))
		if _, obj := doc.(map[string]any); err != nil || !obj {
			return &outbox.ValidationError{Field: "metadata", Reason: "must be a JSON object"}
		}
		v = doc
	}
	return violation("metadata", v, sch.Validate(v))
}

func checkPayload(sch *jsonschema.Schema, e *outbox.Event) error {
	switch {
	case len(e.Payload) == 0:
		return &outbox.ValidationError{Field: "payload", Reason: "required: the type's payload_schema needs a JSON payload"}
	case !outbox.IsJSONContentType(e.ContentType):
		return &outbox.ValidationError{Field: "payload", Reason: fmt.Sprintf("the type's payload_schema needs a JSON content type, got %q", e.ContentType)}
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(e.Payload))
	if err != nil {
		return &outbox.ValidationError{Field: "payload", Reason: "not valid JSON: " + err.Error()}
	}
	return violation("payload", v, sch.Validate(v))
}

// violation turns the error of the validation of v, the value of field,
// into the *outbox.ValidationError of its first leaf (see firstLeaf).
func violation(field string, v any, err error) error {
	if err == nil {
		return nil
	}
	ve, ok := errors.AsType[*jsonschema.ValidationError](err)
	if !ok {
		return fmt.Errorf("schema: check %s: %w", field, err)
	}
	repairLocations(ve, v)
	leaf := firstLeaf(ve)
	return &outbox.ValidationError{Field: field + pointer(leaf.InstanceLocation), Reason: reason(leaf, v)}
}
