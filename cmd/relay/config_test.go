package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
}

func TestConfigExampleIsValidAndComplete(t *testing.T) {
	c, err := loadConfig("../../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	def, _ := loadConfig("")
	// The example documents the defaults: loading it changes nothing.
	if c.Store != def.Store || c.HTTP != def.HTTP || c.Relay != def.Relay || c.Log != def.Log ||
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
