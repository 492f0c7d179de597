package handlers

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/fitiqcore/outbox"
)

// Option configures a Router. Each option checks its value and returns an
// error wrapping ErrInvalidOption, which NewRouter returns.
type Option func(*options) error

type options struct {
	subjectPrefix   string // "" = read from the stream at Run
	dlqPrefix       string // "" = "dlq." + subjectPrefix
	workers         int
	ackWait         time.Duration
	maxAckPending   int // 0 = workers * defaultPerWorker
	retry           outbox.RetryPolicy
	maxAttempts     int
	dedupBucket     string
	dedupTTL        time.Duration
	shutdownTimeout time.Duration
	pullExpiry      time.Duration
	noStartupHold   bool
	logger          *slog.Logger
	tracer          trace.Tracer // nil: no spans
}

// Defaults of the options.
const (
	DefaultWorkers         = 1
	DefaultAckWait         = 30 * time.Second
	DefaultMaxAttempts     = outbox.DefaultMaxAttempts
	DefaultShutdownTimeout = 30 * time.Second
	DefaultPerWorker       = 64 // messages in flight per worker when MaxAckPending is not set
	defaultPullExpiry      = time.Second
)

// DefaultRetryPolicy is the backoff of events that carry none in their
// headers, unless WithRetryPolicy sets another: outbox.DefaultRetryPolicy, the
// relay's own (1s, 5s, 25s, ... at most 10m), so that an event whose headers
// carry no policy backs off on both sides alike.
var DefaultRetryPolicy = outbox.DefaultRetryPolicy

func defaultOptions() options {
	return options{
		workers:         DefaultWorkers,
		ackWait:         DefaultAckWait,
		retry:           DefaultRetryPolicy,
		maxAttempts:     DefaultMaxAttempts,
		shutdownTimeout: DefaultShutdownTimeout,
		pullExpiry:      defaultPullExpiry,
		logger:          slog.Default(),
	}
}

// setDefaults fills the defaults that depend on other options:
// maxAckPending follows the workers.
func (o *options) setDefaults() {
	if o.maxAckPending == 0 {
		o.maxAckPending = o.workers * DefaultPerWorker
	}
}

// validate fills the defaults that depend on other options and checks the
// rules between options (each option checks its own value).
func (o *options) validate() error {
	o.setDefaults()
	// DefaultRetryPolicy is a variable an application may have changed.
	if err := o.retry.Validate(); err != nil {
		return invalidf("retry policy: %v", err)
	}
	if o.maxAckPending < o.workers {
		return invalidf("max ack pending %d is below the %d workers: workers would idle", o.maxAckPending, o.workers)
	}
	if o.subjectPrefix != "" && o.dlqPrefix != "" {
		return checkPrefixes(o.subjectPrefix, o.dlqPrefix)
	}
	return nil
}

// checkPrefixes refuses a dead-letter prefix whose subjects can meet the
// subject prefix's: NewRouter when both are set, Run once the subject
// prefix is read from the stream.
func checkPrefixes(subject, dlq string) error {
	if overlaps(subject, dlq) {
		return invalidf("dead-letter prefix %q overlaps subject prefix %q", dlq, subject)
	}
	return nil
}

// overlaps reports whether the subjects under a and b can meet.
func overlaps(a, b string) bool {
	return a == b || strings.HasPrefix(a, b+".") || strings.HasPrefix(b, a+".")
}

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidOption}, args...)...)
}

// WithSubjectPrefix sets the prefix the relay publishes under
// (<prefix>.<type>). Without it, Run reads it from the stream, which must then
// have exactly one subject of the form <prefix>.> (as the relay creates it).
func WithSubjectPrefix(prefix string) Option {
	return func(o *options) error {
		if outbox.ValidateType(prefix) != nil {
			return invalidf("subject prefix %q: want dot-separated tokens of [A-Za-z0-9_-]", prefix)
		}
		o.subjectPrefix = prefix
		return nil
	}
}

// WithDeadLetterPrefix sets the prefix of dead-letter subjects:
// <prefix>.<type>. The default is "dlq.<subject prefix>". It must not overlap
// the subject prefix; a stream that covers <prefix>.> keeps the dead letters
// (without one they are published on core NATS, see the package doc).
func WithDeadLetterPrefix(prefix string) Option {
	return func(o *options) error {
		if outbox.ValidateType(prefix) != nil {
			return invalidf("dead-letter prefix %q: want dot-separated tokens of [A-Za-z0-9_-]", prefix)
		}
		o.dlqPrefix = prefix
		return nil
	}
}

// WithWorkers sets how many handlers run at once (default 1). Events of one
// entity always go to the same worker, so they are handled one at a time.
func WithWorkers(n int) Option {
	return func(o *options) error {
		if n < 1 || n > 4096 {
			return invalidf("workers must be 1..4096, got %d", n)
		}
		o.workers = n
		return nil
	}
}

// WithAckWait sets the consumer's AckWait (default 30s): how long the server
// waits for an ack before it redelivers. The Router sends in-progress acks
// every AckWait/3 for every message it holds, so a long handler keeps its
// message; AckWait only bounds how soon the messages of a crashed process come
// back.
func WithAckWait(d time.Duration) Option {
	return func(o *options) error {
		if d < 100*time.Millisecond {
			return invalidf("ack wait must be at least 100ms, got %s", d)
		}
		o.ackWait = d
		return nil
	}
}

// WithMaxAckPending sets the consumer's MaxAckPending, which is also the most
// messages this Router holds at once (queued for a worker or being handled).
// The default is workers × DefaultPerWorker. It must be at least the number of
// workers. Several processes sharing the durable share this limit: set it to
// processes × workers × a small per-worker backlog.
func WithMaxAckPending(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return invalidf("max ack pending must be positive, got %d", n)
		}
		o.maxAckPending = n
		return nil
	}
}

// WithRetryPolicy sets the backoff of events that carry no policy in their
// headers, or one that outbox.RetryPolicy.Validate refuses (default
// DefaultRetryPolicy). The n-th delivery that fails waits p.Delay(n) with
// outbox.DefaultJitter: InitialInterval × Multiplier^(n-1), at most
// MaxInterval, spread by ±20%. p must pass outbox.RetryPolicy.Validate.
func WithRetryPolicy(p outbox.RetryPolicy) Option {
	return func(o *options) error {
		if err := p.Validate(); err != nil {
			return invalidf("retry policy: %v", err)
		}
		o.retry = p
		return nil
	}
}

// WithMaxAttempts sets max_attempts for events that carry none in their
// headers, or one outside 1..outbox.MaxAttemptsLimit (default 5).
func WithMaxAttempts(n int) Option {
	return func(o *options) error {
		if n < 1 || n > outbox.MaxAttemptsLimit {
			return invalidf("max attempts must be 1..%d, got %d", outbox.MaxAttemptsLimit, n)
		}
		o.maxAttempts = n
		return nil
	}
}

// WithIdempotency turns on de-duplication: the id of every handled event is
// kept in the JetStream key-value bucket for ttl, and an event whose id is
// there is acked without running its handler. Run creates the bucket when it
// does not exist (with this ttl); an existing bucket is used as it is. Keys are
// <durable>.<event id>, so services can share a bucket.
func WithIdempotency(bucket string, ttl time.Duration) Option {
	return func(o *options) error {
		if bucket == "" || strings.ContainsFunc(bucket, func(r rune) bool {
			return !(r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
		}) {
			return invalidf("idempotency bucket %q: want [A-Za-z0-9_-]+", bucket)
		}
		if ttl < time.Second {
			return invalidf("idempotency ttl must be at least 1s, got %s", ttl)
		}
		o.dedupBucket, o.dedupTTL = bucket, ttl
		return nil
	}
}

// WithShutdownTimeout bounds how long Run drains after its ctx ends (default
// 30s). At the timeout the handlers' contexts are cancelled; Run then waits at
// most as long again for them to return.
func WithShutdownTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return invalidf("shutdown timeout must be positive, got %s", d)
		}
		o.shutdownTimeout = d
		return nil
	}
}

// WithLogger sets the logger of the Router's own events: dead letters,
// fetch errors, failed acks (default slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return invalidf("nil logger")
		}
		o.logger = l
		return nil
	}
}

// WithStartupHold sets whether Run, finding messages that were delivered but
// not acked (by a process that crashed, or by another process sharing the
// durable), waits for them to be acked or to come back before its first fetch
// (at most AckWait and a little more). The server redelivers expired messages
// ahead of new ones, in stream order, so the hold keeps per-entity order
// across a crash: an event a dead process held is handled before the later
// events of its entity. The default is on; turn it off to start at once when
// order does not matter.
func WithStartupHold(on bool) Option {
	return func(o *options) error {
		o.noStartupHold = !on
		return nil
	}
}

// WithTracerProvider makes the Router start a span for every event it
// handles, "handle <event type>" of kind Consumer, a child of the event's
// trace context (the request that wrote it), ended when the handler returns,
// with its error (see the package doc, Tracing). Without it there are no
// spans; the handler's ctx carries the event's trace context either way.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) error {
		if tp == nil {
			return invalidf("nil tracer provider")
		}
		o.tracer = tp.Tracer(tracerName, trace.WithSchemaURL(semconv.SchemaURL))
		return nil
	}
}
