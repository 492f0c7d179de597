package publisher

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/fitiqcore/outbox"
)

// StreamConfig describes the stream the relay publishes to.
type StreamConfig struct {
	// Manage: create or update the stream at connect (and after every
	// reconnect). When false the stream is used as found, never changed.
	Manage          bool
	Name            string        // required: outbox.ValidateName
	Replicas        int           // default DefaultReplicas, at most MaxReplicas
	Storage         string        // "file" (DefaultStorage) or "memory"
	DuplicateWindow time.Duration // default outbox.DefaultDuplicateWindow, from outbox.MinDuplicateWindow to outbox.MaxDuplicateWindow
}

// Auth holds NATS credentials; at most one of user/password, token, nkey
// seed file and creds file is used, with TLS on top.
type Auth struct {
	User, Password string
	Token          string
	NKeySeedFile   string
	CredsFile      string
	TLSCAFile      string
	TLSCertFile    string
	TLSKeyFile     string
}

// Config is what Connect needs. A zero field takes its default (the Default
// constants below); Validate states the rules of the others.
type Config struct {
	URL           string // required
	Name          string // connection name shown by the server (default DefaultName)
	SubjectPrefix string // required: dot-separated tokens (outbox.ValidateType)
	Source        string // ce-source (default outbox.DefaultSource; outbox.ValidateSource)
	Stream        StreamConfig
	Auth          Auth
	// Retry is the relay's default backoff, carried in the headers of events
	// without a policy of their own so subscribers back off the same way.
	// Nil carries none; a policy must pass outbox.RetryPolicy.Validate.
	Retry *outbox.RetryPolicy
	// PublishTimeout bounds the wait for one ack (default
	// DefaultPublishTimeout, from MinPublishTimeout to MaxPublishTimeout).
	PublishTimeout time.Duration
	// MaxPending is the most publishes awaiting an ack (default
	// DefaultMaxPending, from 1 to MaxPendingLimit).
	MaxPending int
	// ReconnectWait is the pause between reconnect attempts (default
	// DefaultReconnectWait).
	ReconnectWait time.Duration
	Logger        *slog.Logger
}

// The defaults of Config, the ones a caller that fills its own (the daemon's
// configuration) takes from here.
const (
	DefaultName           = "fitiqcore-outbox-relay"
	DefaultReplicas       = 1
	DefaultStorage        = "file"
	DefaultPublishTimeout = 5 * time.Second
	DefaultMaxPending     = 4096
	DefaultReconnectWait  = 250 * time.Millisecond
)

// The bounds Validate holds Config to.
const (
	// MaxReplicas is JetStream's largest replica count.
	MaxReplicas = 5
	// A publish timeout under MinPublishTimeout fails publishes a network
	// round trip can answer; over MaxPublishTimeout an ack that will not
	// come holds its slot of MaxPending too long.
	MinPublishTimeout = 100 * time.Millisecond
	MaxPublishTimeout = 10 * time.Minute
	// MaxPendingLimit bounds MaxPending: the futures of the publishes
	// awaiting an ack are held in memory.
	MaxPendingLimit = 1_000_000
)

func (c *Config) setDefaults() {
	if c.Stream.Replicas == 0 {
		c.Stream.Replicas = DefaultReplicas
	}
	if c.Stream.Storage == "" {
		c.Stream.Storage = DefaultStorage
	}
	if c.Stream.DuplicateWindow == 0 {
		c.Stream.DuplicateWindow = outbox.DefaultDuplicateWindow
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = DefaultPublishTimeout
	}
	if c.MaxPending == 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.ReconnectWait == 0 {
		c.ReconnectWait = DefaultReconnectWait
	}
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.Source == "" {
		c.Source = outbox.DefaultSource
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate checks the config as Connect would use it (zero fields take their
// defaults), and is the one owner of these rules: a caller that takes them
// from elsewhere (the daemon's configuration file) calls it rather than
// restating them. The error is an *outbox.FieldError wrapping
// ErrInvalidConfig and naming the Go field ("publisher: invalid config:
// Stream.Name: ..."); for Retry its Err is the *outbox.ValidationError of
// outbox.RetryPolicy.Validate.
func (c *Config) Validate() error {
	d := *c
	d.setDefaults()
	return d.validate()
}

func (c *Config) validate() error {
	bad := func(field, format string, args ...any) error {
		return &outbox.FieldError{Kind: ErrInvalidConfig, Field: field, Err: fmt.Errorf(format, args...)}
	}
	s := c.Stream
	switch {
	case c.URL == "":
		return bad("URL", "required")
	case c.SubjectPrefix == "" || outbox.ValidateType(c.SubjectPrefix) != nil:
		return bad("SubjectPrefix", "%q must be dot-separated tokens of [A-Za-z0-9_-]", c.SubjectPrefix)
	}
	if err := outbox.ValidateName("name", s.Name); err != nil {
		return bad("Stream.Name", "%s", reason(err))
	}
	switch {
	case s.Replicas < 1 || s.Replicas > MaxReplicas:
		return bad("Stream.Replicas", "must be 1..%d, got %d", MaxReplicas, s.Replicas)
	case s.Storage != "file" && s.Storage != "memory":
		return bad("Stream.Storage", "must be file or memory, got %q", s.Storage)
	case s.DuplicateWindow < outbox.MinDuplicateWindow || s.DuplicateWindow > outbox.MaxDuplicateWindow:
		return bad("Stream.DuplicateWindow", "must be from %s to %dh, got %s", outbox.MinDuplicateWindow, outbox.MaxDuplicateWindow/time.Hour, s.DuplicateWindow)
	case c.PublishTimeout < MinPublishTimeout || c.PublishTimeout > MaxPublishTimeout:
		return bad("PublishTimeout", "must be from %s to %s, got %s", MinPublishTimeout, MaxPublishTimeout, c.PublishTimeout)
	case c.MaxPending < 1 || c.MaxPending > MaxPendingLimit:
		return bad("MaxPending", "must be 1..%d, got %d", MaxPendingLimit, c.MaxPending)
	}
	// ce-source goes into every message's headers: outbox.HeaderAllowance
	// counts on it being at most outbox.MaxSourceLen printable bytes.
	if err := outbox.ValidateSource(c.Source); err != nil {
		return bad("Source", "%s", reason(err))
	}
	if c.Retry != nil {
		if err := c.Retry.Validate(); err != nil {
			return &outbox.FieldError{Kind: ErrInvalidConfig, Field: "Retry", Err: err}
		}
	}
	return nil
}

// reason is the reason of an outbox validation error, without its field.
func reason(err error) string {
	if ve, ok := errors.AsType[*outbox.ValidationError](err); ok {
		return ve.Reason
	}
	return err.Error()
}
