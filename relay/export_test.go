package relay

import (
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/fitiqcore/outbox"
)

// SetSweep shortens the sweep of unknown outcomes for a test; call it before
// Run.
func SetSweep(r *Relay, every, age time.Duration) { r.sweepEvery, r.sweepAge = every, age }

// IdleWait is idleWait, MaxIdleWait maxIdleWait.
var IdleWait = idleWait

const MaxIdleWait = maxIdleWait

// TracePublish starts and ends the span of an acked publish of e, as the
// relay does on its hot path.
func TracePublish(r *Relay, e *outbox.Event) {
	var span trace.Span
	if r.tracer != nil {
		span = r.startSpan(e, 1)
	}
	endSpan(span, Outcome{Kind: Published, Event: e, Attempt: 1})
}
