package schema

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
)

// firstLeaf picks the one failure a violation is reported by, among the
// leaves of the library's tree of causes: the failures no other failure
// explains. An anyOf or oneOf whose alternatives all failed is a leaf of its
// own (which alternative was meant is not known), as are contains (no item
// need match it but one) and propertyNames. Of the leaves, the first
// by instance location (an object before its members, members by name in
// byte order, array items by index), then by the keyword's location in the
// schema: the library finds the failures of an object's members in map
// order, and an answer must not change between two posts of one event.
func firstLeaf(e *jsonschema.ValidationError) *jsonschema.ValidationError {
	leaves := collectLeaves(e, nil)
	return slices.MinFunc(leaves, func(a, b *jsonschema.ValidationError) int {
		if c := compareLocations(a.InstanceLocation, b.InstanceLocation); c != 0 {
			return c
		}
		return strings.Compare(keywordLocation(a), keywordLocation(b))
	})
}

// repairLocations gives the propertyNames failures in the tree of e their
// object's location in doc, the value validated. jsonschema v6.0.3 keeps
// the validator's location slice in a propertyNames failure without
// copying it, and the validation of a later sibling writes over it
// (santhosh-tekuri/jsonschema#258, #269): the failure keeps the right
// length and may name another member. Its object is the one at that
// location when it has the failing name; otherwise the first (in the
// order of firstLeaf) at that depth that has it.
func repairLocations(e *jsonschema.ValidationError, doc any) {
	if k, ok := e.ErrorKind.(*kind.PropertyNames); ok {
		e.InstanceLocation = objectWith(doc, e.InstanceLocation, k.Property)
		return // its causes are about the name
	}
	for _, c := range e.Causes {
		repairLocations(c, doc)
	}
}

// objectWith is loc when the value at loc in doc is an object with the
// member name, else the first location of len(loc) tokens of such an
// object, else loc.
func objectWith(doc any, loc []string, name string) []string {
	has := func(v any) bool {
		obj, ok := v.(map[string]any)
		if ok {
			_, ok = obj[name]
		}
		return ok
	}
	if has(at(doc, loc)) {
		return slices.Clone(loc)
	}
	var found []string
	var walk func(v any, path []string)
	walk = func(v any, path []string) {
		if len(path) == len(loc) {
			if has(v) && (found == nil || compareLocations(path, found) < 0) {
				found = slices.Clone(path)
			}
			return
		}
		switch v := v.(type) {
		case map[string]any:
			for k, m := range v {
				walk(m, append(path, k))
			}
		case []any:
			for i, m := range v {
				walk(m, append(path, strconv.Itoa(i)))
			}
		}
	}
	walk(doc, make([]string, 0, len(loc)))
	if found == nil {
		return slices.Clone(loc)
	}
	return found
}

func collectLeaves(e *jsonschema.ValidationError, out []*jsonschema.ValidationError) []*jsonschema.ValidationError {
	switch e.ErrorKind.(type) {
	case *kind.AnyOf, *kind.OneOf:
		if len(e.Causes) > 1 {
			return append(out, e)
		}
	case *kind.PropertyNames: // its causes are about the name, not a value
		return append(out, e)
	case *kind.Contains, *kind.MinContains, *kind.MaxContains: // its causes are the items that need not match
		return append(out, e)
	}
	if len(e.Causes) == 0 {
		return append(out, e)
	}
	for _, c := range e.Causes {
		out = collectLeaves(c, out)
	}
	return out
}

// compareLocations orders instance locations: a prefix first, array
// indexes as numbers, property names as strings.
func compareLocations(a, b []string) int {
	for i := range min(len(a), len(b)) {
		x, errX := strconv.ParseUint(a[i], 10, 64)
		y, errY := strconv.ParseUint(b[i], 10, 64)
		if errX == nil && errY == nil {
			if c := cmp.Compare(x, y); c != 0 {
				return c
			}
			continue
		}
		if c := strings.Compare(a[i], b[i]); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(a), len(b))
}

// keywordLocation is the failing keyword's absolute location in its schema.
func keywordLocation(e *jsonschema.ValidationError) string {
	return e.SchemaURL + pointer(e.ErrorKind.KeywordPath())
}

// pointerEscaper escapes a reference token of a JSON pointer.
var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")

// pointer writes tokens as a JSON pointer (RFC 6901): "/score", "" for the
// whole value.
func pointer(tokens []string) string {
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		b.WriteString(pointerEscaper.Replace(t))
	}
	return b.String()
}

// maxShown bounds the JSON of the values a reason quotes (enum, const).
const maxShown = 200

// reason is the short message of a failure in doc, the value validated:
// what the failing value must be, in the words of the keyword that failed.
// Keywords with no message here take the library's own English one.
func reason(e *jsonschema.ValidationError, doc any) string {
	switch k := e.ErrorKind.(type) {
	case *kind.Maximum:
		return "must be <= " + number(k.Want)
	case *kind.Minimum:
		return "must be >= " + number(k.Want)
	case *kind.ExclusiveMaximum:
		return "must be < " + number(k.Want)
	case *kind.ExclusiveMinimum:
		return "must be > " + number(k.Want)
	case *kind.MultipleOf:
		return "must be a multiple of " + number(k.Want)
	case *kind.Type:
		got := k.Got
		if n, ok := at(doc, e.InstanceLocation).(json.Number); ok && got == "number" && isInteger(n) {
			got = "integer" // the library says number for every number
		}
		return fmt.Sprintf("must be %s, got %s", strings.Join(k.Want, " or "), got)
	case *kind.Required:
		return "missing " + plural("property", "properties", k.Missing)
	case *kind.DependentRequired:
		return fmt.Sprintf("missing %s, required with property %q", plural("property", "properties", k.Missing), k.Prop)
	case *kind.Dependency:
		return fmt.Sprintf("missing %s, required with property %q", plural("property", "properties", k.Missing), k.Prop)
	case *kind.AdditionalProperties:
		return plural("property", "properties", slices.Sorted(slices.Values(k.Properties))) + " not allowed"
	case *kind.PropertyNames:
		msg := fmt.Sprintf("property name %q not allowed", k.Property)
		if len(e.Causes) > 0 { // why: the failures of the name
			msg += ": " + reason(firstLeaf(&jsonschema.ValidationError{ErrorKind: &kind.Group{}, Causes: e.Causes}), k.Property)
		}
		return msg
	case *kind.FalseSchema:
		return "not allowed"
	case *kind.Enum:
		if s, ok := shown(k.Want...); ok {
			if len(k.Want) == 1 {
				return "must be " + s
			}
			return "must be one of " + s
		}
		return fmt.Sprintf("must be one of the %d values of its enum", len(k.Want))
	case *kind.Const:
		if s, ok := shown(k.Want); ok {
			return "must be " + s
		}
		return "must be the value of its const"
	case *kind.MinLength:
		return fmt.Sprintf("must be at least %d characters long, got %d", k.Want, k.Got)
	case *kind.MaxLength:
		return fmt.Sprintf("must be at most %d characters long, got %d", k.Want, k.Got)
	case *kind.Pattern:
		return fmt.Sprintf("must match the pattern %q", k.Want)
	case *kind.Format:
		if k.Err != nil {
			return fmt.Sprintf("must be a valid %s: %v", k.Want, k.Err)
		}
		return "must be a valid " + k.Want
	case *kind.MinItems:
		return fmt.Sprintf("must have at least %d items, got %d", k.Want, k.Got)
	case *kind.MaxItems:
		return fmt.Sprintf("must have at most %d items, got %d", k.Want, k.Got)
	case *kind.UniqueItems:
		return fmt.Sprintf("must have unique items, items %d and %d are equal", k.Duplicates[0], k.Duplicates[1])
	case *kind.MinProperties:
		return fmt.Sprintf("must have at least %d properties, got %d", k.Want, k.Got)
	case *kind.MaxProperties:
		return fmt.Sprintf("must have at most %d properties, got %d", k.Want, k.Got)
	case *kind.AnyOf:
		return "must match a schema of anyOf, matched none"
	case *kind.OneOf:
		if len(k.Subschemas) == 2 {
			return fmt.Sprintf("must match exactly one schema of oneOf, matched %d and %d", k.Subschemas[0], k.Subschemas[1])
		}
		return "must match exactly one schema of oneOf, matched none"
	case *kind.Not:
		return "must not match the schema of not"
	case *kind.Contains:
		return "must contain an item that matches the schema of contains"
	}
	// The library's own message, through its output form (its English
	// printer is not exported).
	out := (&jsonschema.ValidationError{ErrorKind: e.ErrorKind}).BasicOutput()
	if out.Error != nil {
		return out.Error.String()
	}
	return "invalid"
}

// at is the value at the instance location loc in doc, or nil.
func at(doc any, loc []string) any {
	for _, tok := range loc {
		switch v := doc.(type) {
		case map[string]any:
			doc = v[tok]
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(v) {
				return nil
			}
			doc = v[i]
		default:
			return nil
		}
	}
	return doc
}

// isInteger reports whether n is a whole number (1, 1.0, 1e3).
func isInteger(n json.Number) bool {
	r, ok := new(big.Rat).SetString(string(n))
	return ok && r.IsInt()
}

// number writes a bound of the schema as written: an integer whole, other
// numbers as the shortest float that reads back the same.
func number(r *big.Rat) string {
	if r.IsInt() {
		return r.Num().String()
	}
	f, _ := r.Float64()
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// plural writes `property "a"` or `properties "a", "b"`.
func plural(one, many string, names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	if len(names) == 1 {
		return one + " " + q[0]
	}
	return many + " " + strings.Join(q, ", ")
}

// shown writes values as JSON, separated by commas; ok is false when that
// is longer than maxShown.
func shown(values ...any) (s string, ok bool) {
	parts := make([]string, len(values))
	n := 0
	for i, v := range values {
		b, err := json.Marshal(v)
		if err != nil {
			return "", false
		}
		parts[i] = string(b)
		if n += len(b) + 2; n > maxShown {
			return "", false
		}
	}
	return strings.Join(parts, ", "), true
}
