package main

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/fitiqcore/outbox/schema"
	"gopkg.in/yaml.v3"
)

// EventType is an entry of event_types: a type name ("mood.created"), or a
// mapping that also gives the type JSON Schema files for its payload and
// metadata ({name: review.created, payload_schema: schemas/review.json}),
// their paths relative to the config file's directory. Unknown keys of the
// mapping are refused by checkKeys, which runs before decoding.
type EventType struct {
	Name           string `yaml:"name"`
	PayloadSchema  string `yaml:"payload_schema"`
	MetadataSchema string `yaml:"metadata_schema"`
}

// UnmarshalYAML takes a scalar as the name alone, and a mapping as its keys.
func (t *EventType) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*t = EventType{}
		return n.Decode(&t.Name)
	case yaml.MappingNode:
		type plain EventType // without this method
		var p plain
		if err := n.Decode(&p); err != nil {
			return err
		}
		*t = EventType(p)
		return nil
	}
	return errors.New("want a type name, or a mapping of name, payload_schema and metadata_schema")
}

// eventTypeNames is the names of event_types, in order.
func eventTypeNames(types []EventType) []string {
	if len(types) == 0 {
		return nil
	}
	names := make([]string, len(types))
	for i, t := range types {
		names[i] = t.Name
	}
	return names
}

// compileSchemas compiles the schemas of event_types once, at load, with
// their paths taken relative to dir, the config file's directory: nil when
// no type has a schema. A schema that does not compile is a config error
// naming the key and the file ("config: event_types[2].payload_schema:
// schemas/review.json: not JSON: ...").
func compileSchemas(types []EventType, dir string) (*schema.Set, error) {
	list := make([]schema.Type, len(types))
	typed := false
	for i, t := range types {
		list[i] = schema.Type{Name: t.Name, PayloadSchema: resolve(dir, t.PayloadSchema), MetadataSchema: resolve(dir, t.MetadataSchema)}
		typed = typed || t.PayloadSchema != "" || t.MetadataSchema != ""
	}
	if !typed {
		return nil, nil
	}
	set, err := schema.Compile(list)
	if ce, ok := errors.AsType[*schema.CompileError](err); ok {
		key := fmt.Sprintf("event_types[%d]", ce.Index)
		switch ce.Field {
		case "PayloadSchema":
			key += ".payload_schema"
		case "MetadataSchema":
			key += ".metadata_schema"
		}
		if ce.Path != "" {
			return nil, badKey(key, "%s: %v", ce.Path, ce.Err)
		}
		return nil, badKey(key, "%v", ce.Err)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: event_types: %w", errConfig, err)
	}
	return set, nil
}

// resolve takes a relative path of the config file as relative to its
// directory.
func resolve(dir, path string) string {
	if path == "" || filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(dir, path)
}
