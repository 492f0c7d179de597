package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
	"github.com/fitiqcore/outbox/httpapi"
	"github.com/fitiqcore/outbox/publisher"
	"github.com/fitiqcore/outbox/relay"
	"github.com/fitiqcore/outbox/schema"
	"gopkg.in/yaml.v3"
)

// Config is the daemon's configuration, mirrored key for key in
// config.example.yaml. Decode it with loadConfig.
type Config struct {
	Store     StoreConfig     `yaml:"store"`
	Retention RetentionConfig `yaml:"retention"`
	NATS      NATSConfig      `yaml:"nats"`
	Stream    StreamConfig    `yaml:"stream"`
	HTTP      HTTPConfig      `yaml:"http"`
	Relay     RelayConfig     `yaml:"relay"`
	Retry     RetryConfig     `yaml:"retry"`
	Log       LogConfig       `yaml:"log"`
	Tracing   TracingConfig   `yaml:"tracing"`
	// EventTypes is the event type allowlist; empty allows every type. An
	// entry is a name, or a mapping that gives the type schemas (EventType).
	EventTypes []EventType `yaml:"event_types"`

	// schemas is the compiled schemas of EventTypes (nil: none), compiled
	// once by loadConfig and given to the HTTP API by serve.
	schemas *schema.Set
}

type StoreConfig struct {
	Path       string `yaml:"path"`
	MaxPayload int    `yaml:"max_payload"`
	// Admission control: past a high-water mark ingest answers 503 with
	// Retry-After. 0 means no limit.
	MaxPending    int64         `yaml:"max_pending"`
	MaxBytes      int64         `yaml:"max_bytes"`
	MaxPendingAge time.Duration `yaml:"max_pending_age"`
	// StaleAfter: a pending event older than this is stale (default 5m).
	StaleAfter time.Duration `yaml:"stale_after"`
	// IdempotencyWindow: how long the id of a removed event is remembered,
	// so that a re-post within it stores nothing (default 24h, or
	// stream.duplicate_window when that is longer; at least that window).
	IdempotencyWindow time.Duration `yaml:"idempotency_window"`
	// EntityHorizon: how long an entity none of whose events is stored any
	// more is remembered; past it its entity_seq starts again at 1 (default
	// 168h, or the idempotency window when that is longer). 0s never forgets.
	// A pointer, so that an explicit 0 differs from unset.
	EntityHorizon *time.Duration `yaml:"entity_horizon"`
}

// RetentionConfig says how long completed events are kept.
type RetentionConfig struct {
	// Completed is how long a completed event is kept (default 24h); 0
	// removes it on ack. A pointer, so that an explicit 0 differs from unset.
	Completed *time.Duration `yaml:"completed"`
	// Interval is the period of the background sweep (default 1m).
	Interval time.Duration `yaml:"interval"`
}

type NATSConfig struct {
	URL            string        `yaml:"url"`
	EmbeddedAddr   string        `yaml:"embedded_addr"`
	StoreDir       string        `yaml:"store_dir"`
	PublishTimeout time.Duration `yaml:"publish_timeout"`
	User           string        `yaml:"user"`
	Password       string        `yaml:"password"`
	Token          string        `yaml:"token"`
	NKeySeedFile   string        `yaml:"nkey_seed_file"`
	CredsFile      string        `yaml:"creds_file"`
	TLS            TLSConfig     `yaml:"tls"`
	// EmbeddedAuth is the auth of the embedded server (nats.url empty):
	// required on a non-loopback nats.embedded_addr, and then needed by
	// every subscriber too.
	EmbeddedAuth EmbeddedAuthConfig `yaml:"embedded_auth"`
}

// EmbeddedAuthConfig is either a token or a user with a password.
type EmbeddedAuthConfig struct {
	Token    string `yaml:"token"`
	User     string `yaml:"user"`
	Password string `yaml:"password"`
}

// set reports whether any auth is configured.
func (a EmbeddedAuthConfig) set() bool { return a.Token != "" || a.User != "" || a.Password != "" }

type TLSConfig struct {
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

type StreamConfig struct {
	Name            string        `yaml:"name"`
	SubjectPrefix   string        `yaml:"subject_prefix"`
	DuplicateWindow time.Duration `yaml:"duplicate_window"`
	Replicas        int           `yaml:"replicas"`
	Storage         string        `yaml:"storage"`
	Manage          *bool         `yaml:"manage"`
	Source          string        `yaml:"source"`
}

type HTTPConfig struct {
	Addr string `yaml:"addr"`
	// Token, when set, is required as "Authorization: Bearer <token>" on
	// every request but the probes. Required on a non-loopback addr.
	Token string `yaml:"token"`
	// TLS, when cert_file and key_file are set, serves HTTPS.
	TLS HTTPTLSConfig `yaml:"tls"`
	// The server's timeouts (net/http.Server). The write timeout does not
	// apply to streaming routes (the backup), which set their own deadline.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	ReadTimeout       time.Duration `yaml:"read_timeout"`
	WriteTimeout      time.Duration `yaml:"write_timeout"`
	IdleTimeout       time.Duration `yaml:"idle_timeout"`
	// Limits on what requests may hold: requests served at once, one
	// request's body, and the bodies of all requests being read together.
	MaxConcurrentRequests int   `yaml:"max_concurrent_requests"`
	MaxBodyBytes          int64 `yaml:"max_body_bytes"`
	MaxInflightBodyBytes  int64 `yaml:"max_inflight_body_bytes"`
}

// HTTPTLSConfig is the HTTP API's certificate. CAFile is not used by the
// server: it is the CA the operator's commands trust when they read this
// file (a private CA or a self-signed cert_file); it does not enable
// client certificates.
type HTTPTLSConfig struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	CAFile   string `yaml:"ca_file"`
}

// enabled reports whether the API serves HTTPS.
func (c HTTPTLSConfig) enabled() bool { return c.CertFile != "" }

type RelayConfig struct {
	BatchSize    int           `yaml:"batch_size"`
	MaxInFlight  int           `yaml:"max_in_flight"`
	DrainTimeout time.Duration `yaml:"drain_timeout"`
	Reconcile    *bool         `yaml:"reconcile"`
	// Fairness: fifo (default) or user (boltstore.Options.Fairness).
	Fairness string `yaml:"fairness"`
}

// TracingConfig turns on OpenTelemetry tracing of the publishes.
type TracingConfig struct {
	// OTLPEndpoint is the OTLP/HTTP endpoint the spans are exported to
	// (http://collector:4318, or a URL with the path, .../v1/traces);
	// empty: no tracing, at no cost.
	OTLPEndpoint string `yaml:"otlp_endpoint"`
}

type RetryConfig struct {
	InitialInterval time.Duration `yaml:"initial_interval"`
	MaxInterval     time.Duration `yaml:"max_interval"`
	Multiplier      float64       `yaml:"multiplier"`
	MaxAttempts     int           `yaml:"max_attempts"`
	Jitter          *float64      `yaml:"jitter"`
}

type LogConfig struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// setDefaults fills what the file left out. The daemon's own defaults (its
// file paths and addresses, the embedded server, the HTTP server's
// timeouts, the stream's name and subjects, logging) are written here; every
// other is the library's, taken from its Default constant, so that a key
// left out means what the library would do with it.
func (c *Config) setDefaults() {
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	defDuration := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	defInt := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	defTrue := func(p **bool) {
		if *p == nil {
			t := true
			*p = &t
		}
	}
	// The daemon's own.
	def(&c.Store.Path, "./data/outbox.db")
	def(&c.NATS.EmbeddedAddr, "127.0.0.1:4222")
	def(&c.NATS.StoreDir, "./data/nats")
	def(&c.Stream.Name, "OUTBOX")
	def(&c.Stream.SubjectPrefix, "outbox")
	defTrue(&c.Stream.Manage)   // the publisher's zero is false: unmanaged
	defTrue(&c.Relay.Reconcile) // relay.Config.DisableReconcile's zero
	def(&c.HTTP.Addr, "127.0.0.1:7070")
	defDuration(&c.HTTP.ReadHeaderTimeout, 5*time.Second)
	defDuration(&c.HTTP.ReadTimeout, 30*time.Second)
	defDuration(&c.HTTP.WriteTimeout, 30*time.Second)
	defDuration(&c.HTTP.IdleTimeout, 2*time.Minute)
	def(&c.Log.Level, "info")
	def(&c.Log.Format, "auto")

	// The libraries'.
	defInt(&c.Store.MaxPayload, outbox.DefaultPayload)
	defDuration(&c.Store.StaleAfter, boltstore.DefaultStaleAfter)
	defDuration(&c.Stream.DuplicateWindow, outbox.DefaultDuplicateWindow)
	// The windows the store remembers ids and entities for cover the
	// windows before them (Validate holds them to it).
	defDuration(&c.Store.IdempotencyWindow, max(boltstore.DefaultIdempotencyWindow, c.Stream.DuplicateWindow))
	if c.Store.EntityHorizon == nil {
		d := max(boltstore.DefaultEntityHorizon, c.Store.IdempotencyWindow)
		c.Store.EntityHorizon = &d
	}
	if c.Retention.Completed == nil {
		d := boltstore.DefaultRetention
		c.Retention.Completed = &d
	}
	defDuration(&c.Retention.Interval, boltstore.DefaultRetentionInterval)
	defDuration(&c.NATS.PublishTimeout, publisher.DefaultPublishTimeout)
	defInt(&c.Stream.Replicas, publisher.DefaultReplicas)
	def(&c.Stream.Storage, publisher.DefaultStorage)
	def(&c.Stream.Source, outbox.DefaultSource)
	defInt(&c.HTTP.MaxConcurrentRequests, httpapi.DefaultMaxConcurrent)
	if c.HTTP.MaxBodyBytes == 0 {
		c.HTTP.MaxBodyBytes = httpapi.DefaultMaxBodyBytes
	}
	if c.HTTP.MaxInflightBodyBytes == 0 {
		c.HTTP.MaxInflightBodyBytes = httpapi.DefaultMaxInflightBodyBytes
	}
	defInt(&c.Relay.BatchSize, relay.DefaultBatchSize)
	defInt(&c.Relay.MaxInFlight, relay.DefaultMaxInFlight)
	defDuration(&c.Relay.DrainTimeout, relay.DefaultDrainTimeout)
	defDuration(&c.Retry.InitialInterval, outbox.DefaultRetryPolicy.InitialInterval)
	defDuration(&c.Retry.MaxInterval, outbox.DefaultRetryPolicy.MaxInterval)
	if c.Retry.Multiplier == 0 {
		c.Retry.Multiplier = outbox.DefaultRetryPolicy.Multiplier
	}
	defInt(&c.Retry.MaxAttempts, outbox.DefaultMaxAttempts)
	if c.Retry.Jitter == nil {
		j := outbox.DefaultJitter
		c.Retry.Jitter = &j
	}
}

// loadConfig reads path (the defaults when path is empty), rejecting unknown
// keys by their full name, then fills defaults, validates, and compiles the
// schemas of event_types (paths relative to the file's directory).
func loadConfig(path string) (*Config, error) {
	c := &Config{}
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errConfig, err)
		}
		if err := decodeConfig(b, c); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	c.setDefaults()
	err := c.Validate()
	if err == nil {
		c.schemas, err = compileSchemas(c.EventTypes, filepath.Dir(path))
	}
	if err != nil {
		if path != "" {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return nil, err
	}
	return c, nil
}

func decodeConfig(b []byte, c *Config) error {
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return fmt.Errorf("%w: %v", errConfig, err)
	}
	if len(root.Content) == 0 {
		return nil // empty file: defaults
	}
	if err := checkKeys(root.Content[0], reflect.TypeOf(*c), ""); err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil {
		return fmt.Errorf("%w: %v", errConfig, err)
	}
	return nil
}

// checkKeys walks a mapping node against the struct's yaml tags and names
// the first unknown key by its dotted path, the elements of a list of
// structs by their index ("event_types[2].payload_schema"). A struct that
// decodes itself takes a value other than a mapping as a leaf (an
// EventType's name).
func checkKeys(n *yaml.Node, t reflect.Type, prefix string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct && n.Kind == yaml.SequenceNode {
		key := strings.TrimSuffix(prefix, ".")
		for i, el := range n.Content {
			if err := checkKeys(el, t.Elem(), fmt.Sprintf("%s[%d].", key, i)); err != nil {
				return err
			}
		}
		return nil
	}
	selfDecoding := reflect.PointerTo(t).Implements(reflect.TypeFor[yaml.Unmarshaler]())
	if t.Kind() != reflect.Struct || (selfDecoding && n.Kind != yaml.MappingNode) {
		// A leaf: decode it alone, so a bad value is named by its key.
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			msg := err.Error()
			if i := strings.LastIndex(msg, ": "); i >= 0 {
				msg = msg[i+2:]
			}
			if t == reflect.TypeFor[time.Duration]() {
				msg = "want a duration with a unit, such as 0s, 90s or 24h"
			}
			key := strings.TrimSuffix(prefix, ".")
			if n.Kind != yaml.ScalarNode {
				return badKey(key, "bad value (line %d): %s", n.Line, msg)
			}
			return badKey(key, "bad value %q (line %d): %s", n.Value, n.Line, msg)
		}
		return nil
	}
	if n.Kind != yaml.MappingNode {
		if n.Tag == "!!null" {
			return nil
		}
		return badKey(strings.TrimSuffix(prefix, "."), "must be a mapping (line %d)", n.Line)
	}
	fields := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue // not the file's (Config.schemas)
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		fields[name] = f.Type
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		ft, ok := fields[k.Value]
		if !ok {
			return badKey(prefix+k.Value, "unknown key (line %d)", k.Line)
		}
		if err := checkKeys(v, ft, prefix+k.Value+"."); err != nil {
			return err
		}
	}
	return nil
}
