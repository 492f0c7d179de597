package outbox

import (
	"encoding/json"
	"fmt"
)

// Type is an event type whose payload is a T, carried as JSON: typed events
// without boilerplate. A producer makes Enqueue-ready events from a T
// (Event); a subscriber decodes them back (Decode; handlers.HandleJSON does
// it for a handler). The schema of T's JSON form, when the relay's
// event_types gives one, is checked at ingest.
type Type[T any] struct {
	name string
}

// NewType returns the event type name with payloads of type T. It panics
// when name is not a valid type (ValidateType): a type is declared once, as
// a package-level variable, and a bad one is a programming error, like a bad
// regexp in regexp.MustCompile.
func NewType[T any](name string) Type[T] {
	if err := ValidateType(name); err != nil {
		panic(fmt.Sprintf("outbox.NewType: %v", err))
	}
	return Type[T]{name: name}
}

// Name is the event type.
func (t Type[T]) Name() string { return t.name }

// Event returns a new event of the type with v, encoded as JSON, as its
// payload (content type application/json); the caller sets the entity, the
// user and the rest before enqueueing it.
func (t Type[T]) Event(v T) (*Event, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("outbox: %s payload: %w", t.name, err)
	}
	return &Event{Type: t.name, Payload: b, ContentType: ContentTypeJSON}, nil
}

// Decode decodes e's payload into a T. It fails when e is of another type,
// its payload is not JSON, or the JSON does not fit T. Fields T does not
// know are ignored (a tolerant reader: a producer may add fields before its
// subscribers know them).
func (t Type[T]) Decode(e *Event) (T, error) {
	var v T
	if e.Type != t.name {
		return v, fmt.Errorf("outbox: event of type %s, want %s", e.Type, t.name)
	}
	if !IsJSONContentType(e.ContentType) {
		return v, fmt.Errorf("outbox: %s payload has content type %q, want JSON", t.name, e.ContentType)
	}
	if err := json.Unmarshal(e.Payload, &v); err != nil {
		return v, fmt.Errorf("outbox: %s payload: %w", t.name, err)
	}
	return v, nil
}
