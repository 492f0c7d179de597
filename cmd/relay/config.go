package main

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
	"github.com/fitiqcore/outbox/httpapi"
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
	if c.Stream.DuplicateWindow == 0 {
		c.Stream.DuplicateWindow = 2 * time.Minute
	}
	if c.Store.IdempotencyWindow == 0 {
		c.Store.IdempotencyWindow = max(boltstore.DefaultIdempotencyWindow, c.Stream.DuplicateWindow)
	}
	if c.Store.EntityHorizon == nil {
		d := max(boltstore.DefaultEntityHorizon, c.Store.IdempotencyWindow)
		c.Store.EntityHorizon = &d
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
	defDuration := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	defDuration(&c.HTTP.ReadHeaderTimeout, 5*time.Second)
	defDuration(&c.HTTP.ReadTimeout, 30*time.Second)
	defDuration(&c.HTTP.WriteTimeout, 30*time.Second)
	defDuration(&c.HTTP.IdleTimeout, 2*time.Minute)
	// The limits' defaults are httpapi's own.
	if c.HTTP.MaxConcurrentRequests == 0 {
		c.HTTP.MaxConcurrentRequests = httpapi.DefaultMaxConcurrent
	}
	if c.HTTP.MaxBodyBytes == 0 {
		c.HTTP.MaxBodyBytes = httpapi.DefaultMaxBodyBytes
	}
	if c.HTTP.MaxInflightBodyBytes == 0 {
		c.HTTP.MaxInflightBodyBytes = httpapi.DefaultMaxInflightBodyBytes
	}
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

// The bounds of the configuration's durations and sizes. Each is checked
// in Validate, with an error naming the key; a bound owned by another package
// (retry policies, max_attempts, ce-source, the broker's message limit) is
// checked by that package's own function.
const (
	// maxAge bounds the ages and horizons: store.stale_after,
	// store.max_pending_age, store.idempotency_window, store.entity_horizon,
	// retention.completed.
	maxAge = 366 * 24 * time.Hour
	// minRetentionInterval keeps the sweep from spinning (1ns took 25% of a
	// CPU on an idle relay); maxRetentionInterval keeps it useful.
	minRetentionInterval = time.Second
	maxRetentionInterval = 24 * time.Hour
	// The duplicate window JetStream keeps ids for, in server memory.
	minDuplicateWindow = 100 * time.Millisecond
	maxDuplicateWindow = 7 * 24 * time.Hour
	// The HTTP server's timeouts.
	minHTTPTimeout = 100 * time.Millisecond
	maxHTTPTimeout = time.Hour
	// nats.publish_timeout and relay.drain_timeout.
	minPublishTimeout = 100 * time.Millisecond
	maxPublishTimeout = 10 * time.Minute
	maxDrainTimeout   = time.Hour
	// Sizes.
	maxStorePayload         = 64 << 20 // with nats.url; with the embedded server, embeddedPayloadLimit
	maxPendingEvents        = 1_000_000_000
	maxStoreBytes           = 1 << 40
	maxConcurrentRequests   = 100_000
	maxBodyBytes            = 1 << 30
	maxInflightBodyBytesCap = 16 << 30
)

// Validate checks every key, naming the first bad one.
func (c *Config) Validate() error {
	if err := c.validateStore(); err != nil {
		return err
	}
	if err := c.validateNATS(); err != nil {
		return err
	}
	if err := c.validateStream(); err != nil {
		return err
	}
	if err := c.validateHTTP(); err != nil {
		return err
	}
	if err := c.validateRelay(); err != nil {
		return err
	}
	for i, t := range c.EventTypes {
		if err := outbox.ValidateType(t); err != nil {
			return badKey(fmt.Sprintf("event_types[%d]", i), "%v", err)
		}
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

func (c *Config) validateStore() error {
	if c.NATS.URL == "" {
		// The embedded server is given max_payload embeddedMaxPayload.
		if lim := embeddedPayloadLimit(); c.Store.MaxPayload < 1 || c.Store.MaxPayload > lim {
			return badKey("store.max_payload", "must be 1..%d bytes with the embedded NATS server, got %d (the server's max_payload, this plus %d bytes for headers and a dead letter, may be at most %d)",
				lim, c.Store.MaxPayload, embeddedMaxPayload(0), maxServerPayload)
		}
	} else if c.Store.MaxPayload < 1 || c.Store.MaxPayload > maxStorePayload {
		return badKey("store.max_payload", "must be 1..%d bytes, got %d", maxStorePayload, c.Store.MaxPayload)
	}
	if c.Store.MaxPending < 0 || c.Store.MaxPending > maxPendingEvents {
		return badKey("store.max_pending", "must be 0 (no limit) up to %d, got %d", maxPendingEvents, c.Store.MaxPending)
	}
	if c.Store.MaxBytes < 0 || c.Store.MaxBytes > maxStoreBytes {
		return badKey("store.max_bytes", "must be 0 (no limit) up to %d (1 TiB), got %d", int64(maxStoreBytes), c.Store.MaxBytes)
	}
	if d := c.Store.MaxPendingAge; d != 0 {
		if err := checkDuration("store.max_pending_age", d, time.Second, maxAge, "0s (no limit) or "); err != nil {
			return err
		}
	}
	if err := checkDuration("store.stale_after", c.Store.StaleAfter, time.Second, maxAge, ""); err != nil {
		return err
	}
	if err := checkDuration("store.idempotency_window", c.Store.IdempotencyWindow, c.Stream.DuplicateWindow, maxAge, ""); err != nil {
		return fmt.Errorf("%w (at least stream.duplicate_window: a re-post is recognised for as long as JetStream would de-duplicate it)", err)
	}
	if d := *c.Store.EntityHorizon; d != 0 {
		if err := checkDuration("store.entity_horizon", d, c.Store.IdempotencyWindow, maxAge, "0s (never forget) or "); err != nil {
			return fmt.Errorf("%w (at least store.idempotency_window)", err)
		}
	}
	if d := *c.Retention.Completed; d != 0 {
		if err := checkDuration("retention.completed", d, 0, maxAge, "0s (remove on ack) or "); err != nil {
			return err
		}
	}
	return checkDuration("retention.interval", c.Retention.Interval, minRetentionInterval, maxRetentionInterval, "")
}

func (c *Config) validateNATS() error {
	n := c.NATS
	if n.URL == "" {
		if _, _, err := net.SplitHostPort(n.EmbeddedAddr); err != nil {
			return badKey("nats.embedded_addr", "%v", err)
		}
		// The client keys are for nats.url: a token set here would not
		// protect the embedded server, whatever its reader believes.
		for key, v := range map[string]string{
			"nats.user": n.User, "nats.password": n.Password, "nats.token": n.Token,
			"nats.nkey_seed_file": n.NKeySeedFile, "nats.creds_file": n.CredsFile,
			"nats.tls.ca_file": n.TLS.CAFile, "nats.tls.cert_file": n.TLS.CertFile, "nats.tls.key_file": n.TLS.KeyFile,
		} {
			if v != "" {
				return badKey(key, "applies to the server of nats.url, which is not set (the embedded server is used): to protect the embedded server set nats.embedded_auth")
			}
		}
		a := n.EmbeddedAuth
		switch {
		case a.Token != "" && (a.User != "" || a.Password != ""):
			return badKey("nats.embedded_auth", "set either token or user and password, not both")
		case a.User != "" && a.Password == "":
			return badKey("nats.embedded_auth.password", "required with nats.embedded_auth.user")
		case a.Password != "" && a.User == "":
			return badKey("nats.embedded_auth.user", "required with nats.embedded_auth.password")
		}
		for key, v := range map[string]string{"nats.embedded_auth.token": a.Token, "nats.embedded_auth.user": a.User, "nats.embedded_auth.password": a.Password} {
			if strings.ContainsAny(v, " \t\r\n") {
				return badKey(key, "must not contain white space")
			}
		}
	} else if n.EmbeddedAuth.set() {
		return badKey("nats.embedded_auth", "applies to the embedded server only, and nats.url is set: use nats.user/password, nats.token, nats.nkey_seed_file or nats.creds_file for that server")
	}
	return checkDuration("nats.publish_timeout", n.PublishTimeout, minPublishTimeout, maxPublishTimeout, "")
}

func (c *Config) validateStream() error {
	if err := outbox.ValidateType(c.Stream.SubjectPrefix); err != nil {
		return badKey("stream.subject_prefix", "%q must be dot-separated tokens of [A-Za-z0-9_-]", c.Stream.SubjectPrefix)
	}
	if strings.ContainsAny(c.Stream.Name, ". *>\t\r\n/\\") {
		return badKey("stream.name", "%q must have no spaces, dots, wildcards or slashes", c.Stream.Name)
	}
	if err := checkDuration("stream.duplicate_window", c.Stream.DuplicateWindow, minDuplicateWindow, maxDuplicateWindow, ""); err != nil {
		return err
	}
	if c.Stream.Replicas < 1 || c.Stream.Replicas > 5 {
		return badKey("stream.replicas", "must be 1..5, got %d", c.Stream.Replicas)
	}
	if c.Stream.Storage != "file" && c.Stream.Storage != "memory" {
		return badKey("stream.storage", "must be file or memory, got %q", c.Stream.Storage)
	}
	if err := outbox.ValidateSource(c.Stream.Source); err != nil {
		return ownedKey("stream.source", err)
	}
	return nil
}

func (c *Config) validateHTTP() error {
	h := c.HTTP
	if _, _, err := net.SplitHostPort(h.Addr); err != nil {
		return badKey("http.addr", "%v", err)
	}
	if strings.ContainsAny(h.Token, " \t\r\n") {
		return badKey("http.token", "must not contain white space")
	}
	switch {
	case h.TLS.CertFile != "" && h.TLS.KeyFile == "":
		return badKey("http.tls.key_file", "required with http.tls.cert_file")
	case h.TLS.KeyFile != "" && h.TLS.CertFile == "":
		return badKey("http.tls.cert_file", "required with http.tls.key_file")
	}
	for _, t := range []struct {
		key string
		d   time.Duration
	}{
		{"http.read_header_timeout", h.ReadHeaderTimeout}, {"http.read_timeout", h.ReadTimeout},
		{"http.write_timeout", h.WriteTimeout}, {"http.idle_timeout", h.IdleTimeout},
	} {
		if err := checkDuration(t.key, t.d, minHTTPTimeout, maxHTTPTimeout, ""); err != nil {
			return err
		}
	}
	if h.ReadHeaderTimeout > h.ReadTimeout {
		return badKey("http.read_header_timeout", "must be at most http.read_timeout (%s), got %s", h.ReadTimeout, h.ReadHeaderTimeout)
	}
	if h.MaxConcurrentRequests < 1 || h.MaxConcurrentRequests > maxConcurrentRequests {
		return badKey("http.max_concurrent_requests", "must be 1..%d, got %d", maxConcurrentRequests, h.MaxConcurrentRequests)
	}
	if lo := minBodyBytes(c.Store.MaxPayload); h.MaxBodyBytes < lo || h.MaxBodyBytes > maxBodyBytes {
		return badKey("http.max_body_bytes", "must be %d..%d bytes, got %d (at least one event of store.max_payload %d, as payload_base64 with metadata at its limit)",
			lo, int64(maxBodyBytes), h.MaxBodyBytes, c.Store.MaxPayload)
	}
	if h.MaxInflightBodyBytes < h.MaxBodyBytes || h.MaxInflightBodyBytes > maxInflightBodyBytesCap {
		return badKey("http.max_inflight_body_bytes", "must be from http.max_body_bytes (%d) to %d bytes, got %d",
			h.MaxBodyBytes, int64(maxInflightBodyBytesCap), h.MaxInflightBodyBytes)
	}
	return nil
}

func (c *Config) validateRelay() error {
	if c.Relay.BatchSize < 1 || c.Relay.BatchSize > 100000 {
		return badKey("relay.batch_size", "must be 1..100000, got %d", c.Relay.BatchSize)
	}
	if c.Relay.MaxInFlight < 1 || c.Relay.MaxInFlight > 1000000 {
		return badKey("relay.max_in_flight", "must be 1..1000000, got %d", c.Relay.MaxInFlight)
	}
	if err := checkDuration("relay.drain_timeout", c.Relay.DrainTimeout, minPublishTimeout, maxDrainTimeout, ""); err != nil {
		return err
	}
	// The retry policy's rules have one owner: outbox.RetryPolicy.Validate.
	if err := c.retryPolicy().Validate(); err != nil {
		return ownedKey("retry", err)
	}
	if c.Retry.MaxAttempts < 1 || c.Retry.MaxAttempts > outbox.MaxAttemptsLimit {
		return badKey("retry.max_attempts", "must be 1..%d, got %d", outbox.MaxAttemptsLimit, c.Retry.MaxAttempts)
	}
	if j := *c.Retry.Jitter; !(j >= 0 && j < 1) { // NaN fails too
		return badKey("retry.jitter", "must be in [0,1), got %g", j)
	}
	return nil
}

// minBodyBytes is the smallest request body limit that carries one event
// with a payload of maxPayload bytes: as payload_base64, with its metadata at
// outbox.MaxMetadataLen and room for the other fields.
func minBodyBytes(maxPayload int) int64 {
	return int64(base64.StdEncoding.EncodedLen(maxPayload)) + outbox.MaxMetadataLen + 16<<10
}

// retryPolicy is the relay's default retry policy.
func (c *Config) retryPolicy() outbox.RetryPolicy {
	return outbox.RetryPolicy{InitialInterval: c.Retry.InitialInterval, MaxInterval: c.Retry.MaxInterval, Multiplier: c.Retry.Multiplier}
}

// ownedKey turns the validation error of the package that owns a rule into
// a config error naming the yaml key: key itself, or key's section followed
// by the field the owner named ("retry" and "retry.initial_interval" give
// retry.initial_interval; "stream.source" and "source" give stream.source).
func ownedKey(key string, err error) error {
	var ve *outbox.ValidationError
	if !errors.As(err, &ve) {
		return badKey(key, "%v", err)
	}
	section, _, _ := strings.Cut(key, ".")
	switch {
	case strings.HasPrefix(ve.Field, section+"."):
		key = ve.Field
	case !strings.Contains(key, "."):
		key += "." + ve.Field
	}
	return badKey(key, "%s", ve.Reason)
}

// checkDuration checks lo <= d <= hi; zero, when not empty, says what 0
// means for the key ("0s (no limit) or ").
func checkDuration(key string, d, lo, hi time.Duration, zero string) error {
	if d < lo || d > hi {
		return badKey(key, "must be %sfrom %s to %s, got %s", zero, fmtDuration(lo), fmtDuration(hi), d)
	}
	return nil
}

// fmtDuration writes whole hours as "8784h" rather than "8784h0m0s".
func fmtDuration(d time.Duration) string {
	if d >= time.Hour && d%time.Hour == 0 {
		return fmt.Sprintf("%dh", d/time.Hour)
	}
	return d.String()
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
