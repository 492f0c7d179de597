package publisher

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/fitiqcore/outbox"
)

// StreamConfig describes the stream the relay publishes to.
type StreamConfig struct {
	// Manage: create or update the stream at connect (and after every
	// reconnect). When false the stream is used as found, never changed.
	Manage          bool
	Name            string
	Replicas        int           // default 1
	Storage         string        // "file" (default) or "memory"
	DuplicateWindow time.Duration // default 2m
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

// Config is what Connect needs.
type Config struct {
	URL           string
	Name          string // connection name shown by the server
	SubjectPrefix string
	Source        string // ce-source (default outbox.DefaultSource)
	Stream        StreamConfig
	Auth          Auth
	// Retry is the relay's default backoff, carried in the headers of events
	// without a policy of their own so subscribers back off the same way.
	Retry *outbox.RetryPolicy
	// PublishTimeout bounds the wait for one ack (default 5s).
	PublishTimeout time.Duration
	// MaxPending is the most publishes awaiting an ack (default 4096).
	MaxPending int
	// ReconnectWait is the pause between reconnect attempts (default 250ms).
	ReconnectWait time.Duration
	Logger        *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Stream.Replicas == 0 {
		c.Stream.Replicas = 1
	}
	if c.Stream.Storage == "" {
		c.Stream.Storage = "file"
	}
	if c.Stream.DuplicateWindow == 0 {
		c.Stream.DuplicateWindow = 2 * time.Minute
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = 5 * time.Second
	}
	if c.MaxPending == 0 {
		c.MaxPending = 4096
	}
	if c.ReconnectWait == 0 {
		c.ReconnectWait = 250 * time.Millisecond
	}
	if c.Name == "" {
		c.Name = "fitiqcore-outbox-relay"
	}
	if c.Source == "" {
		c.Source = outbox.DefaultSource
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate checks the config, naming the bad field.
func (c *Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrInvalidConfig, field, fmt.Sprintf(format, args...))
	}
	switch {
	case c.URL == "":
		return bad("nats.url", "required")
	case c.SubjectPrefix == "" || outbox.ValidateType(c.SubjectPrefix) != nil:
		return bad("stream.subject_prefix", "%q must be dot-separated tokens of [A-Za-z0-9_-]", c.SubjectPrefix)
	case c.Stream.Name == "" || strings.ContainsAny(c.Stream.Name, ". *>\t\r\n/\\"):
		return bad("stream.name", "%q must be non-empty without spaces, dots, wildcards or slashes", c.Stream.Name)
	case c.Stream.Replicas < 1 || c.Stream.Replicas > 5:
		return bad("stream.replicas", "must be 1..5, got %d", c.Stream.Replicas)
	case c.Stream.Storage != "file" && c.Stream.Storage != "memory":
		return bad("stream.storage", "must be file or memory, got %q", c.Stream.Storage)
	case c.Stream.DuplicateWindow < 100*time.Millisecond:
		return bad("stream.duplicate_window", "must be at least 100ms, got %s", c.Stream.DuplicateWindow)
	case c.PublishTimeout <= 0:
		return bad("nats.publish_timeout", "must be positive")
	case c.MaxPending < 1:
		return bad("relay.max_in_flight", "must be at least 1")
	}
	// ce-source goes into every message's headers: outbox.HeaderAllowance
	// counts on it being at most outbox.MaxSourceLen printable bytes.
	if err := outbox.ValidateSource(c.Source); err != nil {
		return bad("stream.source", "%v", err)
	}
	return nil
}
