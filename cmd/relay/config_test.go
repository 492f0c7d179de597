package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/relay"
	"github.com/nats-io/nats-server/v2/server"
	"gopkg.in/yaml.v3"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigDefaults(t *testing.T) {
	c, err := loadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	if c.Store.Path != "./data/outbox.db" || c.NATS.URL != "" || c.NATS.StoreDir != "./data/nats" ||
		c.HTTP.Addr != "127.0.0.1:7070" || c.Stream.DuplicateWindow != 2*time.Minute ||
		c.Retry.InitialInterval != time.Second || c.Retry.MaxInterval != 10*time.Minute ||
		c.Retry.MaxAttempts != 5 || !*c.Stream.Manage || c.Store.MaxPayload != 1<<20 {
		t.Errorf("defaults: %+v", c)
	}
	if c.Store.StaleAfter != 5*time.Minute || *c.Retention.Completed != 24*time.Hour || c.Retention.Interval != time.Minute ||
		c.Store.MaxPending != 0 || c.Store.MaxBytes != 0 || c.Store.MaxPendingAge != 0 || c.HTTP.Token != "" || len(c.EventTypes) != 0 {
		t.Errorf("defaults of issue 3's keys: store %+v retention %v/%v http %+v event_types %v",
			c.Store, *c.Retention.Completed, c.Retention.Interval, c.HTTP, c.EventTypes)
	}
	o := storeOptions(c)
	if o.RemoveOnAck || o.Retention != 24*time.Hour || o.StaleAfter != 5*time.Minute {
		t.Errorf("store options: %+v", o)
	}
}

func TestConfigRetentionZeroRemovesOnAck(t *testing.T) {
	c, err := loadConfig(writeFile(t, "retention:\n  completed: 0s\n"))
	if err != nil {
		t.Fatal(err)
	}
	if o := storeOptions(c); !o.RemoveOnAck || o.Retention != 0 {
		t.Errorf("retention.completed 0: store options %+v, want RemoveOnAck", o)
	}
}

// TestConfigExampleHasEveryKey checks that config.example.yaml mirrors the
// Config struct key for key.
func TestConfigExampleHasEveryKey(t *testing.T) {
	b, err := os.ReadFile("../../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := prefix + n.Content[i].Value
			have[k] = true
			walk(n.Content[i+1], k+".")
		}
	}
	walk(root.Content[0], "")
	var want func(t reflect.Type, prefix string)
	want = func(typ reflect.Type, prefix string) {
		for typ.Kind() == reflect.Pointer {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct {
			return
		}
		for i := 0; i < typ.NumField(); i++ {
			if !typ.Field(i).IsExported() {
				continue // not a key (Config.schemas)
			}
			name, _, _ := strings.Cut(typ.Field(i).Tag.Get("yaml"), ",")
			key := prefix + name
			if !have[key] {
				t.Errorf("config.example.yaml lacks %s", key)
			}
			want(typ.Field(i).Type, key+".")
		}
	}
	want(reflect.TypeFor[Config](), "")
}

func TestConfigExampleIsValidAndComplete(t *testing.T) {
	c, err := loadConfig("../../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	def, _ := loadConfig("")
	// The example documents the defaults: loading it changes nothing.
	if *c.Retention.Completed != *def.Retention.Completed || c.Retention.Interval != def.Retention.Interval || len(c.EventTypes) != 0 {
		t.Errorf("config.example.yaml: retention %v/%v, event_types %v differ from the defaults", *c.Retention.Completed, c.Retention.Interval, c.EventTypes)
	}
	// EntityHorizon is a pointer (0s differs from unset): compare its value.
	cs, ds := c.Store, def.Store
	if *cs.EntityHorizon != *ds.EntityHorizon {
		t.Errorf("config.example.yaml: store.entity_horizon %s, default %s", *cs.EntityHorizon, *ds.EntityHorizon)
	}
	cs.EntityHorizon, ds.EntityHorizon = nil, nil
	if cs != ds || c.HTTP != def.HTTP || c.NATS.EmbeddedAuth != def.NATS.EmbeddedAuth || c.Stream.Source != def.Stream.Source ||
		c.Retry.MaxInterval != def.Retry.MaxInterval || c.Retry.Multiplier != def.Retry.Multiplier || *c.Retry.Jitter != *def.Retry.Jitter || c.Relay.BatchSize != def.Relay.BatchSize || c.Relay.MaxInFlight != def.Relay.MaxInFlight || c.Relay.DrainTimeout != def.Relay.DrainTimeout || *c.Relay.Reconcile != *def.Relay.Reconcile || c.Log != def.Log ||
		c.Stream.Name != def.Stream.Name || c.Stream.DuplicateWindow != def.Stream.DuplicateWindow ||
		c.Retry.InitialInterval != def.Retry.InitialInterval || c.Retry.MaxAttempts != def.Retry.MaxAttempts ||
		c.NATS.EmbeddedAddr != def.NATS.EmbeddedAddr || c.NATS.PublishTimeout != def.NATS.PublishTimeout {
		t.Errorf("config.example.yaml differs from the defaults:\n%+v\n%+v", c, def)
	}
}

func TestConfigFile(t *testing.T) {
	c, err := loadConfig(writeFile(t, `
store:
  path: /tmp/x.db
nats:
  url: nats://127.0.0.1:4333
stream:
  name: EVENTS
  subject_prefix: app.events
  duplicate_window: 5m
http:
  addr: 127.0.0.1:9000
retry:
  initial_interval: 2s
  max_interval: 1h
  multiplier: 3
  max_attempts: 9
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Store.Path != "/tmp/x.db" || c.NATS.URL != "nats://127.0.0.1:4333" || c.Stream.Name != "EVENTS" ||
		c.Stream.SubjectPrefix != "app.events" || c.Stream.DuplicateWindow != 5*time.Minute ||
		c.HTTP.Addr != "127.0.0.1:9000" || c.Retry.InitialInterval != 2*time.Second ||
		c.Retry.MaxInterval != time.Hour || c.Retry.Multiplier != 3 || c.Retry.MaxAttempts != 9 {
		t.Errorf("decoded: %+v", c)
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	tests := []struct {
		name, body, key string
	}{
		{"unknown top-level key", "stoer:\n  path: x\n", "stoer"},
		{"fairness", "relay:\n  fairness: round-robin\n", "relay.fairness: must be fifo or user"},
		{"otlp endpoint not a URL", "tracing:\n  otlp_endpoint: collector:4318\n", "tracing.otlp_endpoint"},
		{"otlp endpoint with a query", "tracing:\n  otlp_endpoint: 'http://c:4318/v1/traces?x=1'\n", "tracing.otlp_endpoint"},
		{"tracing unknown", "tracing:\n  endpoint: x\n", "tracing.endpoint"},
		{"unknown nested key", "store:\n  pth: x\n", "store.pth"},
		{"unknown deep key", "nats:\n  tls:\n    ca: x\n", "nats.tls.ca"},
		{"bad duration", "retry:\n  initial_interval: soon\n", "initial_interval"},
		{"negative interval", "retry:\n  initial_interval: -1s\n", "retry.initial_interval"},
		{"max below initial", "retry:\n  initial_interval: 10s\n  max_interval: 1s\n", "retry.max_interval"},
		{"multiplier", "retry:\n  multiplier: 0.5\n", "retry.multiplier"},
		{"max attempts", "retry:\n  max_attempts: -2\n", "retry.max_attempts"},
		{"window", "stream:\n  duplicate_window: 1ms\n", "stream.duplicate_window"},
		{"prefix wildcard", "stream:\n  subject_prefix: 'a.*'\n", "stream.subject_prefix"},
		{"stream name", "stream:\n  name: 'a.b'\n", "stream.name"},
		{"storage", "stream:\n  storage: disk\n", "stream.storage"},
		{"replicas", "stream:\n  replicas: 7\n", "stream.replicas"},
		{"http addr", "http:\n  addr: nowhere\n", "http.addr"},
		{"payload", "store:\n  max_payload: -1\n", "store.max_payload"},
		{"log format", "log:\n  format: xml\n", "log.format"},
		{"max pending", "store:\n  max_pending: -1\n", "store.max_pending"},
		{"max bytes", "store:\n  max_bytes: -1\n", "store.max_bytes"},
		{"max pending age", "store:\n  max_pending_age: -1m\n", "store.max_pending_age"},
		{"max pending age not a duration", "store:\n  max_pending_age: old\n", "store.max_pending_age"},
		{"stale after", "store:\n  stale_after: -1m\n", "store.stale_after"},
		{"retention completed", "retention:\n  completed: -1h\n", "retention.completed"},
		{"retention completed without a unit", "retention:\n  completed: 0\n", "retention.completed: bad value \"0\" (line 2): want a duration with a unit, such as 0s"},
		{"retention interval", "retention:\n  interval: -1s\n", "retention.interval"},
		{"retention unknown", "retention:\n  completd: 1h\n", "retention.completd"},
		{"http token space", "http:\n  token: 'a b'\n", "http.token"},
		{"http unknown", "http:\n  tokn: x\n", "http.tokn"},
		{"event type", "event_types:\n  - mood.created\n  - 'mood.*'\n", "event_types[1]"},
		{"event types not a list", "event_types: mood.created\n", "event_types"},
		{"not a mapping", "store: 3\n", "store"},
		{"yaml syntax", "store: [\n", "yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadConfig(writeFile(t, tt.body))
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, errConfig) {
				t.Errorf("error %v does not wrap errConfig", err)
			}
			if !strings.Contains(err.Error(), tt.key) {
				t.Errorf("error %q does not name %q", err, tt.key)
			}
		})
	}
}

func TestConfigMissingFile(t *testing.T) {
	if _, err := loadConfig(filepath.Join(t.TempDir(), "nope.yaml")); err == nil {
		t.Fatal("no error for a missing file")
	}
}

// TestConfigBounds (issue 9, rows 1, 6, 7, 15 on the config side): every
// duration and size has a bound, and the error names the key with the rule
// it broke. Each row was accepted, or refused only as an unknown key, before.
func TestConfigBounds(t *testing.T) {
	const ext = "nats:\n  url: nats://127.0.0.1:4222\n"
	tests := []struct{ name, body, want string }{
		{"retry interval past year 2262", "retry:\n  initial_interval: 2200000h\n  max_interval: 2200000h\n", "retry.initial_interval: must be positive and at most 168h"},
		{"retry max interval", "retry:\n  max_interval: 200h\n", "retry.max_interval: must be from initial_interval (1s) to 168h"},
		{"retry multiplier", "retry:\n  multiplier: 1000\n", "retry.multiplier: must be from 1 to 100"},
		{"retry multiplier NaN", "retry:\n  multiplier: .nan\n", "retry.multiplier: must be from 1 to 100"},
		{"retry max attempts", "retry:\n  max_attempts: 1001\n", "retry.max_attempts: must be 1..1000"},
		{"retry jitter NaN", "retry:\n  jitter: .nan\n", "retry.jitter: must be in [0,1)"},
		{"retention interval 1ns", "retention:\n  interval: 1ns\n", "retention.interval: must be from 1s to 24h"},
		{"retention interval 48h", "retention:\n  interval: 48h\n", "retention.interval: must be from 1s to 24h"},
		{"retention completed", "retention:\n  completed: 9000h\n", "retention.completed: must be 0s (remove on ack) or from 0s to 8784h"},
		{"stale after 1ns", "store:\n  stale_after: 1ns\n", "store.stale_after: must be from 1s to 8784h"},
		{"stale after 9000h", "store:\n  stale_after: 9000h\n", "store.stale_after: must be from 1s to 8784h"},
		{"max pending age 1ns", "store:\n  max_pending_age: 1ns\n", "store.max_pending_age: must be 0s (no limit) or from 1s to 8784h"},
		{"max pending age 9000h", "store:\n  max_pending_age: 9000h\n", "store.max_pending_age: must be 0s (no limit) or from 1s to 8784h"},
		{"max pending", "store:\n  max_pending: 2000000000\n", "store.max_pending: must be 0 (no limit) up to 1000000000"},
		{"max bytes", "store:\n  max_bytes: 2199023255552\n", "store.max_bytes: must be 0 (no limit) up to 1099511627776"},
		{"drain timeout", "relay:\n  drain_timeout: 2h\n", "relay.drain_timeout: must be from 100ms to 1h"},
		{"publish timeout 1ns", "nats:\n  publish_timeout: 1ns\n", "nats.publish_timeout: must be from 100ms to 10m0s"},
		{"publish timeout 1h", "nats:\n  publish_timeout: 1h\n", "nats.publish_timeout: must be from 100ms to 10m0s"},
		{"duplicate window", "stream:\n  duplicate_window: 200h\nstore:\n  idempotency_window: 300h\n", "stream.duplicate_window: must be from 100ms to 168h"},
		{"stream source", "stream:\n  source: 'urn:a b'\n", "stream.source: byte 0x20 not allowed"},
		{"payload over the embedded server's ceiling", "store:\n  max_payload: 8388608\n", fmt.Sprintf("store.max_payload: must be 1..%d bytes with the embedded NATS server", embeddedPayloadLimit())},
		{"payload with nats.url", ext + "store:\n  max_payload: 67108865\nhttp:\n  max_body_bytes: 1073741824\n  max_inflight_body_bytes: 1073741824\n", "store.max_payload: must be 1..67108864 bytes"},
		{"idempotency window under the duplicate window", "store:\n  idempotency_window: 1m\n", "store.idempotency_window: must be from 2m0s to 8784h"},
		{"idempotency window over a year", "store:\n  idempotency_window: 9000h\n", "store.idempotency_window: must be from 2m0s to 8784h"},
		{"entity horizon under the idempotency window", "store:\n  entity_horizon: 1h\n", "store.entity_horizon: must be 0s (never forget) or from 24h to 8784h"},
		{"entity horizon over a year", "store:\n  entity_horizon: 9000h\n", "store.entity_horizon: must be 0s (never forget) or from 24h to 8784h"},
		{"entity horizon negative", "store:\n  entity_horizon: -1s\n", "store.entity_horizon: must be 0s (never forget) or from 24h"},
		{"read header timeout", "http:\n  read_header_timeout: 1ms\n", "http.read_header_timeout: must be from 100ms to 1h"},
		{"read timeout", "http:\n  read_timeout: 2h\n", "http.read_timeout: must be from 100ms to 1h"},
		{"write timeout", "http:\n  write_timeout: 50ms\n", "http.write_timeout: must be from 100ms to 1h"},
		{"idle timeout", "http:\n  idle_timeout: -1s\n", "http.idle_timeout: must be from 100ms to 1h"},
		{"header timeout over read timeout", "http:\n  read_header_timeout: 10s\n  read_timeout: 5s\n", "http.read_header_timeout: must be at most http.read_timeout (5s)"},
		{"max concurrent requests", "http:\n  max_concurrent_requests: -1\n", "http.max_concurrent_requests: must be 1..100000"},
		{"max concurrent requests over", "http:\n  max_concurrent_requests: 200000\n", "http.max_concurrent_requests: must be 1..100000"},
		{"max body bytes under one event", "http:\n  max_body_bytes: 1000\n", fmt.Sprintf("http.max_body_bytes: must be %d..1073741824 bytes", minBodyBytes(1<<20))},
		{"max body bytes over", "http:\n  max_body_bytes: 2147483648\n  max_inflight_body_bytes: 4294967296\n", fmt.Sprintf("http.max_body_bytes: must be %d..1073741824 bytes", minBodyBytes(1<<20))},
		{"max inflight under max body", "http:\n  max_inflight_body_bytes: 1048576\n", "http.max_inflight_body_bytes: must be from http.max_body_bytes (16777216)"},
		{"tls cert without key", "http:\n  tls:\n    cert_file: c.pem\n", "http.tls.key_file: required with http.tls.cert_file"},
		{"tls key without cert", "http:\n  tls:\n    key_file: k.pem\n", "http.tls.cert_file: required with http.tls.key_file"},
		{"embedded auth token and user", "nats:\n  embedded_auth:\n    token: t\n    user: u\n    password: p\n", "nats.embedded_auth: set either token or user and password"},
		{"embedded auth user without password", "nats:\n  embedded_auth:\n    user: u\n", "nats.embedded_auth.password: required with nats.embedded_auth.user"},
		{"embedded auth password without user", "nats:\n  embedded_auth:\n    password: p\n", "nats.embedded_auth.user: required with nats.embedded_auth.password"},
		{"embedded auth token with a space", "nats:\n  embedded_auth:\n    token: 'a b'\n", "nats.embedded_auth.token: must not contain white space"},
		{"embedded auth with nats.url", "nats:\n  url: nats://127.0.0.1:4222\n  embedded_auth:\n    token: t\n", "nats.embedded_auth: applies to the embedded server only"},
		{"client token for the embedded server", "nats:\n  token: t\n", "nats.token: applies to the server of nats.url, which is not set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadConfig(writeFile(t, tt.body))
			if err == nil {
				t.Fatalf("accepted, want %q", tt.want)
			}
			if !errors.Is(err, errConfig) {
				t.Errorf("error %v does not wrap errConfig", err)
			}
			if !strings.Contains(err.Error(), "config: "+tt.want) {
				t.Errorf("error %q\nlacks %q", err, tt.want)
			}
		})
	}
}

// TestConfigBoundsAccepted: the edges of each bound are accepted, and the
// defaults of the windows follow the windows they must cover.
func TestConfigBoundsAccepted(t *testing.T) {
	tests := []struct {
		name, body string
		check      func(t *testing.T, c *Config)
	}{
		{"retention interval 1s", "retention:\n  interval: 1s\n", nil},
		{"embedded payload at the ceiling", fmt.Sprintf("store:\n  max_payload: %d\n", embeddedPayloadLimit()), nil},
		{"payload of 64 MiB with nats.url", "nats:\n  url: nats://127.0.0.1:4222\nstore:\n  max_payload: 67108864\nhttp:\n  max_body_bytes: 100000000\n  max_inflight_body_bytes: 200000000\n", nil},
		{"idempotency window equal to the duplicate window", "stream:\n  duplicate_window: 2m\nstore:\n  idempotency_window: 2m\n  entity_horizon: 2m\n", nil},
		{"entity horizon 0s never forgets", "store:\n  entity_horizon: 0s\n", func(t *testing.T, c *Config) {
			if o := storeOptions(c); o.EntityHorizon >= 0 {
				t.Errorf("store.entity_horizon 0s: boltstore EntityHorizon %s, want negative (never forget)", o.EntityHorizon)
			}
		}},
		{"idempotency default follows a long duplicate window", "stream:\n  duplicate_window: 48h\n", func(t *testing.T, c *Config) {
			if c.Store.IdempotencyWindow != 48*time.Hour || *c.Store.EntityHorizon != 168*time.Hour {
				t.Errorf("idempotency window %s, entity horizon %s; want 48h, 168h", c.Store.IdempotencyWindow, *c.Store.EntityHorizon)
			}
		}},
		{"entity horizon default follows a long idempotency window", "store:\n  idempotency_window: 200h\n", func(t *testing.T, c *Config) {
			if *c.Store.EntityHorizon != 200*time.Hour {
				t.Errorf("entity horizon %s, want 200h", *c.Store.EntityHorizon)
			}
		}},
		{"embedded auth token", "nats:\n  embedded_addr: 0.0.0.0:4222\n  embedded_auth:\n    token: s3cret\n", nil},
		{"embedded auth user", "nats:\n  embedded_auth:\n    user: relay\n    password: s3cret\n", nil},
		{"tls both files", "http:\n  tls:\n    cert_file: c.pem\n    key_file: k.pem\n", nil},
		{"timeouts at the edges", "http:\n  read_header_timeout: 100ms\n  read_timeout: 1h\n  write_timeout: 1h\n  idle_timeout: 100ms\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadConfig(writeFile(t, tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

// TestConfigNewKeysDefaultsAndWiring: the defaults of the keys issue 9
// added, and what the store and the HTTP server get from them.
func TestConfigNewKeysDefaultsAndWiring(t *testing.T) {
	c, err := loadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	h := c.HTTP
	if h.ReadHeaderTimeout != 5*time.Second || h.ReadTimeout != 30*time.Second || h.WriteTimeout != 30*time.Second ||
		h.IdleTimeout != 2*time.Minute || h.MaxConcurrentRequests != 256 || h.MaxBodyBytes != 16<<20 ||
		h.MaxInflightBodyBytes != 128<<20 || h.TLS != (HTTPTLSConfig{}) {
		t.Errorf("http defaults: %+v", h)
	}
	if c.Store.IdempotencyWindow != 24*time.Hour || *c.Store.EntityHorizon != 168*time.Hour || c.NATS.EmbeddedAuth.set() {
		t.Errorf("store/nats defaults: idempotency %s, horizon %s, embedded auth %+v", c.Store.IdempotencyWindow, *c.Store.EntityHorizon, c.NATS.EmbeddedAuth)
	}
	o := storeOptions(c)
	if o.IdempotencyWindow != 24*time.Hour || o.EntityHorizon != 168*time.Hour {
		t.Errorf("store options: idempotency %s, horizon %s", o.IdempotencyWindow, o.EntityHorizon)
	}
	srv := httpServer(h, nil, nil, slog.New(slog.DiscardHandler))
	if srv.ReadHeaderTimeout != h.ReadHeaderTimeout || srv.ReadTimeout != h.ReadTimeout || srv.WriteTimeout != h.WriteTimeout || srv.IdleTimeout != h.IdleTimeout {
		t.Errorf("http.Server timeouts %v %v %v %v", srv.ReadHeaderTimeout, srv.ReadTimeout, srv.WriteTimeout, srv.IdleTimeout)
	}
}

// TestEmbeddedMaxPayload: the embedded server's max_payload is the inverse
// of outbox.MessageLimit for the largest event store.max_payload allows, so
// that every event the store accepts can be published and dead-lettered; and
// it stays within nats-server's ceiling.
func TestEmbeddedMaxPayload(t *testing.T) {
	long := func(n int) string { return strings.Repeat("x", n) }
	for _, p := range []int{1, 1 << 20, embeddedPayloadLimit()} {
		e := &outbox.Event{
			ID: "0190d8a4-0000-7000-8000-000000000000", Type: long(outbox.MaxTypeLen),
			EntityID: long(outbox.MaxIDFieldLen), UserID: long(outbox.MaxIDFieldLen),
			Metadata:    []byte(`{"a":"` + long(outbox.MaxMetadataLen-8) + `"}`),
			ContentType: long(outbox.MaxContentTypeLen), Payload: make([]byte, p), MaxAttempts: 1,
		}
		max := embeddedMaxPayload(p)
		if err := e.Validate(outbox.Options{MaxPayload: p, MaxMessage: outbox.MessageLimit(max)}); err != nil {
			t.Errorf("payload %d: the largest event is refused under the embedded server's limit %d: %v", p, max, err)
		}
		if max-int64(e.WireSize()) < outbox.DeadLetterReserve {
			t.Errorf("payload %d: %d bytes left for a dead letter, want at least %d", p, max-int64(e.WireSize()), outbox.DeadLetterReserve)
		}
	}
	if got := embeddedMaxPayload(embeddedPayloadLimit()); got != server.MAX_PAYLOAD_MAX_SIZE {
		t.Errorf("the largest store.max_payload gives the server %d, want nats-server's MAX_PAYLOAD_MAX_SIZE %d", got, server.MAX_PAYLOAD_MAX_SIZE)
	}
	// The docs state the figures: they follow the limits they come from.
	for _, doc := range []string{"../../config.example.yaml", "../../README.md"} {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, figure := range []string{
			fmt.Sprintf("at most %d bytes", embeddedPayloadLimit()),
			fmt.Sprintf("plus %d bytes", embeddedMaxPayload(0)),
		} {
			if !strings.Contains(string(b), figure) {
				t.Errorf("%s does not say %q", doc, figure)
			}
		}
	}
}

// TestConfigLibraryRules: a rule on a library's setting is the library's
// own. The daemon reports the error of the library's Validate (on what serve
// builds for it) in the library's words, under the yaml key of the Go field
// it names (libraryKeys), and has no check of its own in front of it. Every
// field of libraryKeys has a row, and every key it names is a key of the file.
func TestConfigLibraryRules(t *testing.T) {
	const ext = "nats:\n  url: nats://127.0.0.1:4222\n"
	store := func(c *Config) error { return storeOptions(c).Validate() }
	pub := func(c *Config) error { pc := c.publisherConfig(c.natsURL()); return pc.Validate() }
	api := func(c *Config) error { o := c.httpOptions(); return o.Validate() }
	rel := func(c *Config) error { rc := c.relayConfig(); return rc.Validate() }
	tests := []struct {
		name, body string
		lib        func(*Config) error // the library's Validate
		field      string              // of libraryKeys: "<package>.<Go field>"
		key        string              // the yaml key the error is reported under
	}{
		{"payload negative", ext + "store:\n  max_payload: -1\n", store, "boltstore.Event.MaxPayload", "store.max_payload"},
		{"payload over 64 MiB", ext + "store:\n  max_payload: 67108865\nhttp:\n  max_body_bytes: 1073741824\n  max_inflight_body_bytes: 1073741824\n", store, "boltstore.Event.MaxPayload", "store.max_payload"},
		{"max attempts", "retry:\n  max_attempts: 1001\n", store, "boltstore.Event.MaxAttempts", "retry.max_attempts"},
		{"max pending", "store:\n  max_pending: -1\n", store, "boltstore.MaxPending", "store.max_pending"},
		{"max bytes", "store:\n  max_bytes: 2199023255552\n", store, "boltstore.MaxBytes", "store.max_bytes"},
		{"max pending age", "store:\n  max_pending_age: 1ns\n", store, "boltstore.MaxPendingAge", "store.max_pending_age"},
		{"fairness", "relay:\n  fairness: lottery\n", store, "boltstore.Fairness", "relay.fairness"},
		{"subject prefix", "stream:\n  subject_prefix: 'a.*'\n", pub, "publisher.SubjectPrefix", "stream.subject_prefix"},
		{"source", "stream:\n  source: 'urn:a b'\n", pub, "publisher.Source", "stream.source"},
		{"stream name with a dot", "stream:\n  name: 'a.b'\n", pub, "publisher.Stream.Name", "stream.name"},
		{"stream name too long", "stream:\n  name: " + strings.Repeat("S", outbox.MaxNameLen+1) + "\n", pub, "publisher.Stream.Name", "stream.name"},
		{"replicas", "stream:\n  replicas: 7\n", pub, "publisher.Stream.Replicas", "stream.replicas"},
		{"storage", "stream:\n  storage: disk\n", pub, "publisher.Stream.Storage", "stream.storage"},
		{"duplicate window short", "stream:\n  duplicate_window: 1ms\n", pub, "publisher.Stream.DuplicateWindow", "stream.duplicate_window"},
		{"duplicate window long", "stream:\n  duplicate_window: 200h\nstore:\n  idempotency_window: 300h\n", pub, "publisher.Stream.DuplicateWindow", "stream.duplicate_window"},
		{"retry initial interval", "retry:\n  initial_interval: -1s\n", pub, "publisher.Retry", "retry.initial_interval"},
		{"retry max interval", "retry:\n  initial_interval: 10s\n  max_interval: 1s\n", pub, "publisher.Retry", "retry.max_interval"},
		{"retry multiplier", "retry:\n  multiplier: 0.5\n", pub, "publisher.Retry", "retry.multiplier"},
		{"publish timeout", "nats:\n  publish_timeout: 1ns\n", pub, "publisher.PublishTimeout", "nats.publish_timeout"},
		{"max in flight negative", "relay:\n  max_in_flight: -1\n", pub, "publisher.MaxPending", "relay.max_in_flight"},
		{"max in flight over", "relay:\n  max_in_flight: 2000000\n", pub, "publisher.MaxPending", "relay.max_in_flight"},
		{"http token", "http:\n  token: 'a b'\n", api, "httpapi.Token", "http.token"},
		{"jitter", "retry:\n  jitter: .nan\n", rel, "relay.Jitter", "retry.jitter"},
		{"event type", "event_types:\n  - mood.created\n  - 'mood.*'\n", api, "httpapi.AllowedTypes[]", "event_types[1]"},
	}
	keys := map[string]bool{}
	var walk func(typ reflect.Type, prefix string)
	walk = func(typ reflect.Type, prefix string) {
		for typ.Kind() == reflect.Pointer {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct {
			return
		}
		for i := 0; i < typ.NumField(); i++ {
			if !typ.Field(i).IsExported() {
				continue // not a key (Config.schemas)
			}
			name, _, _ := strings.Cut(typ.Field(i).Tag.Get("yaml"), ",")
			keys[prefix+name] = true
			walk(typ.Field(i).Type, prefix+name+".")
		}
	}
	walk(reflect.TypeFor[Config](), "")
	covered := map[string]bool{}
	for _, tt := range tests {
		covered[tt.field] = true
		t.Run(tt.name, func(t *testing.T) {
			// The library's own answer, on the file with the daemon's
			// defaults and none of its checks.
			var c Config
			if err := decodeConfig([]byte(tt.body), &c); err != nil {
				t.Fatal(err)
			}
			c.setDefaults()
			libErr := tt.lib(&c)
			if libErr == nil {
				t.Fatalf("%s accepts it: the rule is not the library's", tt.field)
			}
			pkg, field, _ := strings.Cut(tt.field, ".")
			if !strings.HasPrefix(libErr.Error(), pkg+": ") {
				t.Errorf("library error %q does not start with %q", libErr, pkg+": ")
			}
			var reason string
			if ve, ok := errors.AsType[*outbox.ValidationError](libErr); ok {
				// A retry policy, held to outbox.RetryPolicy.Validate, which
				// names the fields of an event's retry as the file does.
				reason = ve.Reason
				if ve.Field != tt.key {
					t.Errorf("outbox names %q, want the key %q", ve.Field, tt.key)
				}
			} else {
				name := strings.TrimSuffix(field, "[]")
				if strings.HasSuffix(field, "[]") {
					name += tt.key[strings.Index(tt.key, "["):]
				}
				_, after, ok := strings.Cut(libErr.Error(), ": "+name+": ")
				if !ok {
					t.Fatalf("library error %q does not name the Go field %s", libErr, name)
				}
				reason = after
			}
			for k := range keys { // outbox's retry fields excepted (above)
				if strings.Contains(k, ".") && strings.Contains(libErr.Error(), k) && !strings.HasPrefix(k, "retry.") {
					t.Errorf("library error %q names the daemon's key %s", libErr, k)
				}
			}
			// The daemon's answer: that reason, under the yaml key.
			path := writeFile(t, tt.body)
			_, err := loadConfig(path)
			want := path + ": config: " + tt.key + ": " + reason
			if err == nil || err.Error() != want || !errors.Is(err, errConfig) {
				t.Errorf("loadConfig: %v\nwant        %s", err, want)
			}
		})
	}
	// The relay's rules that the publisher's, checked first, shadow: were
	// they ever to differ, the relay's error names its key too.
	for _, tt := range []struct {
		field, key string
		edit       func(*relay.Config)
	}{
		{"relay.Retry", "retry.multiplier", func(rc *relay.Config) { rc.Retry.Multiplier = 0.5 }},
		{"relay.DuplicateWindow", "stream.duplicate_window", func(rc *relay.Config) { rc.DuplicateWindow = time.Millisecond }},
	} {
		covered[tt.field] = true
		c, _ := loadConfig("")
		rc := c.relayConfig()
		tt.edit(&rc)
		if err := libraryError("relay", rc.Validate()); err == nil || !strings.HasPrefix(err.Error(), "config: "+tt.key+": ") {
			t.Errorf("%s: %v, want it under %s", tt.field, err, tt.key)
		}
	}
	for field, key := range libraryKeys {
		if !keys[strings.TrimSuffix(key, "[]")] {
			t.Errorf("libraryKeys: %s maps onto %q, which is no key of the file", field, key)
		}
		if !covered[field] {
			t.Errorf("libraryKeys: no row for %s", field)
		}
	}
}
