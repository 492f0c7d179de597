package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/fitiqcore/outbox"
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
	// EventTypes is the event type allowlist; empty allows every type.
	EventTypes []string `yaml:"event_types"`
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
}

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
}

type RelayConfig struct {
	BatchSize    int           `yaml:"batch_size"`
	MaxInFlight  int           `yaml:"max_in_flight"`
	DrainTimeout time.Duration `yaml:"drain_timeout"`
	Reconcile    *bool         `yaml:"reconcile"`
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

func (c *Config) setDefaults() {
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&c.Store.Path, "./data/outbox.db")
	if c.Store.MaxPayload == 0 {
		c.Store.MaxPayload = outbox.DefaultPayload
	}
	if c.Store.StaleAfter == 0 {
		c.Store.StaleAfter = 5 * time.Minute
	}
	if c.Retention.Completed == nil {
		d := 24 * time.Hour
		c.Retention.Completed = &d
	}
	if c.Retention.Interval == 0 {
		c.Retention.Interval = time.Minute
	}
	def(&c.NATS.EmbeddedAddr, "127.0.0.1:4222")
	def(&c.NATS.StoreDir, "./data/nats")
	if c.NATS.PublishTimeout == 0 {
		c.NATS.PublishTimeout = 5 * time.Second
	}
	def(&c.Stream.Name, "OUTBOX")
	def(&c.Stream.SubjectPrefix, "outbox")
	if c.Stream.DuplicateWindow == 0 {
		c.Stream.DuplicateWindow = 2 * time.Minute
	}
	if c.Stream.Replicas == 0 {
		c.Stream.Replicas = 1
	}
	def(&c.Stream.Storage, "file")
	if c.Stream.Manage == nil {
		t := true
		c.Stream.Manage = &t
	}
	if c.Relay.Reconcile == nil {
		t := true
		c.Relay.Reconcile = &t
	}
	def(&c.Stream.Source, outbox.DefaultSource)
	def(&c.HTTP.Addr, "127.0.0.1:7070")
	if c.Relay.BatchSize == 0 {
		c.Relay.BatchSize = 1000
	}
	if c.Relay.MaxInFlight == 0 {
		c.Relay.MaxInFlight = 4096
	}
	if c.Relay.DrainTimeout == 0 {
		c.Relay.DrainTimeout = 10 * time.Second
	}
	if c.Retry.InitialInterval == 0 {
		c.Retry.InitialInterval = time.Second
	}
	if c.Retry.MaxInterval == 0 {
		c.Retry.MaxInterval = 10 * time.Minute
	}
	if c.Retry.Multiplier == 0 {
		c.Retry.Multiplier = 5
	}
	if c.Retry.MaxAttempts == 0 {
		c.Retry.MaxAttempts = 5
	}
	if c.Retry.Jitter == nil {
		j := 0.2
		c.Retry.Jitter = &j
	}
	def(&c.Log.Level, "info")
	def(&c.Log.Format, "auto")
}

// errConfig wraps every configuration error; the message names the key.
var errConfig = errors.New("config")

func badKey(key, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", errConfig, key, fmt.Sprintf(format, args...))
}

// Validate checks every key, naming the first bad one.
func (c *Config) Validate() error {
	if c.Store.MaxPayload < 1 || c.Store.MaxPayload > 64<<20 {
		return badKey("store.max_payload", "must be 1..%d bytes, got %d", 64<<20, c.Store.MaxPayload)
	}
	if c.Store.MaxPending < 0 {
		return badKey("store.max_pending", "must be 0 (no limit) or positive, got %d", c.Store.MaxPending)
	}
	if c.Store.MaxBytes < 0 {
		return badKey("store.max_bytes", "must be 0 (no limit) or positive, got %d", c.Store.MaxBytes)
	}
	if c.Store.MaxPendingAge < 0 {
		return badKey("store.max_pending_age", "must be 0 (no limit) or positive, got %s", c.Store.MaxPendingAge)
	}
	if c.Store.StaleAfter < 0 {
		return badKey("store.stale_after", "must be positive, got %s", c.Store.StaleAfter)
	}
	if *c.Retention.Completed < 0 {
		return badKey("retention.completed", "must be 0 (remove on ack) or positive, got %s", *c.Retention.Completed)
	}
	if c.Retention.Interval < 0 {
		return badKey("retention.interval", "must be positive, got %s", c.Retention.Interval)
	}
	for i, t := range c.EventTypes {
		if err := outbox.ValidateType(t); err != nil {
			return badKey(fmt.Sprintf("event_types[%d]", i), "%v", err)
		}
	}
	if strings.ContainsAny(c.HTTP.Token, " \t\r\n") {
		return badKey("http.token", "must not contain white space")
	}
	if c.NATS.URL == "" {
		if _, _, err := net.SplitHostPort(c.NATS.EmbeddedAddr); err != nil {
			return badKey("nats.embedded_addr", "%v", err)
		}
	}
	if c.NATS.PublishTimeout < 0 {
		return badKey("nats.publish_timeout", "must be positive")
	}
	if err := outbox.ValidateType(c.Stream.SubjectPrefix); err != nil {
		return badKey("stream.subject_prefix", "%q must be dot-separated tokens of [A-Za-z0-9_-]", c.Stream.SubjectPrefix)
	}
	if strings.ContainsAny(c.Stream.Name, ". *>\t\r\n/\\") {
		return badKey("stream.name", "%q must have no spaces, dots, wildcards or slashes", c.Stream.Name)
	}
	if c.Stream.DuplicateWindow < 100*time.Millisecond {
		return badKey("stream.duplicate_window", "must be at least 100ms, got %s", c.Stream.DuplicateWindow)
	}
	if c.Stream.Replicas < 1 || c.Stream.Replicas > 5 {
		return badKey("stream.replicas", "must be 1..5, got %d", c.Stream.Replicas)
	}
	if c.Stream.Storage != "file" && c.Stream.Storage != "memory" {
		return badKey("stream.storage", "must be file or memory, got %q", c.Stream.Storage)
	}
	if _, _, err := net.SplitHostPort(c.HTTP.Addr); err != nil {
		return badKey("http.addr", "%v", err)
	}
	if c.Relay.BatchSize < 1 || c.Relay.BatchSize > 100000 {
		return badKey("relay.batch_size", "must be 1..100000, got %d", c.Relay.BatchSize)
	}
	if c.Relay.MaxInFlight < 1 || c.Relay.MaxInFlight > 1000000 {
		return badKey("relay.max_in_flight", "must be 1..1000000, got %d", c.Relay.MaxInFlight)
	}
	if c.Relay.DrainTimeout < 0 {
		return badKey("relay.drain_timeout", "must be positive")
	}
	if c.Retry.InitialInterval <= 0 {
		return badKey("retry.initial_interval", "must be positive, got %s", c.Retry.InitialInterval)
	}
	if c.Retry.MaxInterval < c.Retry.InitialInterval {
		return badKey("retry.max_interval", "must be at least retry.initial_interval (%s), got %s", c.Retry.InitialInterval, c.Retry.MaxInterval)
	}
	if c.Retry.Multiplier < 1 {
		return badKey("retry.multiplier", "must be at least 1, got %g", c.Retry.Multiplier)
	}
	if c.Retry.MaxAttempts < 1 {
		return badKey("retry.max_attempts", "must be at least 1, got %d", c.Retry.MaxAttempts)
	}
	if j := *c.Retry.Jitter; j < 0 || j >= 1 {
		return badKey("retry.jitter", "must be in [0,1), got %g", j)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return badKey("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "auto", "text", "json":
	default:
		return badKey("log.format", "must be auto, text or json, got %q", c.Log.Format)
	}
	return nil
}

// loadConfig reads path (the defaults when path is empty), rejecting unknown
// keys by their full name, then fills defaults and validates.
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
	if err := c.Validate(); err != nil {
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
// the first unknown key by its dotted path.
func checkKeys(n *yaml.Node, t reflect.Type, prefix string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		// A leaf: decode it alone, so a bad value is named by its key.
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			msg := err.Error()
			if i := strings.LastIndex(msg, ": "); i >= 0 {
				msg = msg[i+2:]
			}
			if t == reflect.TypeFor[time.Duration]() {
				msg = "want a duration with a unit, such as 0s, 90s or 24h"
			}
			return badKey(strings.TrimSuffix(prefix, "."), "bad value %q (line %d): %s", n.Value, n.Line, msg)
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
