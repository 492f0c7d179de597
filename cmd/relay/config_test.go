package main

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

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
	if c.Store != def.Store || c.HTTP != def.HTTP || c.Relay.BatchSize != def.Relay.BatchSize || c.Relay.MaxInFlight != def.Relay.MaxInFlight || c.Relay.DrainTimeout != def.Relay.DrainTimeout || *c.Relay.Reconcile != *def.Relay.Reconcile || c.Log != def.Log ||
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
