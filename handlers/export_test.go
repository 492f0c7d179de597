package handlers

import "github.com/fitiqcore/outbox"

// SetBeforeAck installs a hook that runs after a handler succeeded and its id
// was recorded, before the ack; returning false skips the ack, as a crash at
// that moment would. Call it before Run.
func SetBeforeAck(r *Router, f func(e *outbox.Event) bool) { r.beforeAck = f }
