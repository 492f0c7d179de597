// Package schema gives event types JSON Schemas (draft 2020-12) for their
// payload and metadata, and checks events against them: the typed events of
// the relay's event_types. It owns the compiling of the schema files and
// the short messages of a violation; it validates with
// github.com/santhosh-tekuri/jsonschema/v6.
//
// # Basics
//
//	set, err := schema.Compile([]schema.Type{
//		{Name: "review.created", PayloadSchema: "schemas/review.json"},
//	})
//	err = set.Check(e) // nil, or an *outbox.ValidationError
//
// Compile reads each file once, when it is called (the daemon: at start,
// with the configuration), and a file that cannot be read, is not JSON, is
// not a valid JSON Schema or refers outside itself is a *CompileError
// naming the type, the field and the file: no schema is read or compiled
// while events are checked. A schema without $schema is draft 2020-12;
// one that names another draft the library knows (draft-04 to 2019-09) is
// compiled as that draft.
//
// Check validates an event of a type with schemas, and accepts any other
// event. A violation is an *outbox.ValidationError (it wraps
// outbox.ErrInvalidEvent, which the HTTP API answers 400) whose Field is
// the part, "metadata" or "payload", followed by the JSON pointer of the
// failing value without its leading slash, and whose Reason is short:
//
//	invalid payload/score: must be <= 5
//	invalid payload: missing property "score"        (the pointer of the object)
//	invalid payload/tags/1: must be string, got integer
//	invalid metadata: property "x" not allowed
//
// # What is checked
//
//   - The payload only with a JSON content type (outbox.IsJSONContentType).
//     A type with a payload schema refuses an event with no payload, or
//     with a payload of another content type ("the type's payload_schema
//     needs a JSON content type, got ..."): its payload cannot be checked,
//     and a typed event is checked or refused, never passed unchecked.
//   - The metadata, a JSON object: absent (or null) metadata is checked as
//     {}, so that a schema that requires a property (or refuses {} in any
//     other way) refuses an event without metadata; it has no "absent" of
//     its own to pass unchecked.
//   - Numbers are decoded exactly (jsonschema.UnmarshalJSON), not as
//     float64: bounds and multipleOf hold the number as written
//     (12345678901234567890.5 is a multiple of 0.5).
//
// # Messages
//
// The library reports a tree of causes. Check reports one failure: of the
// leaves of the tree (failures no other explains; an anyOf or oneOf none
// of whose alternatives matched is one leaf, as are a contains and a
// propertyNames, whose causes are items and names), the first by the
// failing value's place (an object before its members, members by name in
// byte order, array items by index), then by the keyword's place in the
// schema, so that the answer to an event does not change between two
// posts. Its
// message is ours for the common keywords (minimum, maximum and their
// exclusive forms, multipleOf, type, required, dependentRequired,
// additionalProperties, propertyNames, enum, const, minLength, maxLength,
// pattern, format, minItems, maxItems, uniqueItems, minProperties,
// maxProperties, anyOf, oneOf, not, contains, a false schema) and the
// library's own English one for the others.
//
// # Caveats
//
// Nothing is loaded from the network or from other files: a $ref resolves
// only within its own file (a "#/$defs/..." pointer, an anchor, a
// subschema's $id), and a $ref or $schema naming another document is a
// compile error (ErrRemoteRef); the meta-schemas of the drafts are built
// into the library. Keep every definition a schema needs in its file.
//
// format is an annotation in draft 2020-12, not an assertion: "format":
// "email" accepts any string. A schema that declares draft-07
// ("$schema": "http://json-schema.org/draft-07/schema#") has its formats
// asserted.
//
// jsonschema v6.0.3 can report a propertyNames failure at a sibling's
// location (santhosh-tekuri/jsonschema#258, #269): Check puts it back on
// the object that has the failing name (repairLocations; drop it with a
// release that fixes the library).
//
// A Set is immutable and safe for concurrent use; the schemas are compiled
// once and shared by every Check. Check decodes the payload and the
// metadata into Go values for the library: it costs a few times their size
// while it runs, on top of what the HTTP API holds.
package schema
