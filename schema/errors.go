package schema

import (
	"errors"
	"fmt"
)

// Errors of compiling, returned by Compile.
var (
	// ErrInvalidSchema is wrapped by every error of Compile (a
	// *CompileError): a schema file that cannot be read, is not JSON, is
	// not a valid JSON Schema or refers outside itself, or a type that
	// cannot have schemas.
	ErrInvalidSchema = errors.New("schema: invalid schema")

	// ErrRemoteRef is wrapped by the error of a schema that refers to a
	// document outside its own file (a $ref or $schema to another file or
	// to a URL): nothing is loaded from the network or from other files.
	ErrRemoteRef = errors.New("schema: reference outside the schema file")
)

// CompileError is the error of Compile. It names the Type by its index in
// the list given to Compile and the field at fault, so that a caller that
// reads the list from a file names its own key for it with no parsing of
// messages. It wraps ErrInvalidSchema and Err, the reason.
type CompileError struct {
	Index int    // of the Type in the list given to Compile
	Field string // "Name", "PayloadSchema" or "MetadataSchema"
	Path  string // the schema file, as given; "" for Name
	Err   error
}

func (e *CompileError) Error() string {
	if e.Path == "" {
		return fmt.Sprintf("schema: types[%d].%s: %v", e.Index, e.Field, e.Err)
	}
	return fmt.Sprintf("schema: types[%d].%s: %s: %v", e.Index, e.Field, e.Path, e.Err)
}

func (e *CompileError) Unwrap() []error { return []error{ErrInvalidSchema, e.Err} }
