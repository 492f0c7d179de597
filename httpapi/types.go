package httpapi

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/fitiqcore/outbox"
)

// ErrTypeNotAllowed wraps the error CheckType returns for a type outside the
// allowlist. It also wraps outbox.ErrInvalidEvent, so the API answers 400.
var ErrTypeNotAllowed = errors.New("type not allowed")

// CheckType returns nil when allowed is empty (no allowlist) or holds typ,
// and otherwise an error wrapping ErrTypeNotAllowed and outbox.ErrInvalidEvent
// that names the allowed types. Applications that embed the store can call
// it before enqueueing to hold themselves to the same allowlist as the
// sidecar.
func CheckType(allowed []string, typ string) error {
	if len(allowed) == 0 || slices.Contains(allowed, typ) {
		return nil
	}
	return &typeError{typ: typ, allowed: allowed}
}

type typeError struct {
	typ     string
	allowed []string
}

func (e *typeError) Error() string {
	return fmt.Sprintf("invalid type: %q is not allowed (allowed: %s)", e.typ, strings.Join(e.allowed, ", "))
}

func (e *typeError) Is(target error) bool {
	return target == ErrTypeNotAllowed || target == outbox.ErrInvalidEvent
}
