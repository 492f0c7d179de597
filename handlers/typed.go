package handlers

import (
	"context"

	"github.com/fitiqcore/outbox"
)

// HandleJSON registers fn for the events of type t (the exact pattern
// t.Name(), as Router.HandleFunc does), their payloads decoded into a T
// with t.Decode. An event whose payload does not decode (not JSON, or JSON
// that does not fit T) is dead-lettered at once: its handler fails with
// Permanent and the decode error, without calling fn. fn's own error counts
// as a Handler's (see Handler).
//
// Like Handle, HandleJSON panics on a nil fn or a zero Type (whose name is
// no valid pattern).
func HandleJSON[T any](r *Router, t outbox.Type[T], fn func(ctx context.Context, e *outbox.Event, v T) error) {
	if fn == nil {
		panic("handlers: nil handler func for " + t.Name())
	}
	r.Handle(t.Name(), HandlerFunc(func(ctx context.Context, e *outbox.Event) error {
		v, err := t.Decode(e)
		if err != nil {
			return Permanent(err)
		}
		return fn(ctx, e, v)
	}))
}
