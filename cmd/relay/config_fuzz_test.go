package main

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoadConfig: any config file is loaded or refused with a config error
// (errConfig) naming what is wrong, never a panic; what loads is valid, and
// loads the same again. Seeds: testdata/fuzz/FuzzLoadConfig and
// config.example.yaml.
func FuzzLoadConfig(f *testing.F) {
	if b, err := os.ReadFile("../../config.example.yaml"); err == nil {
		f.Add(b)
	}
	for _, s := range []string{
		"", "store:\n  path: x.db\n", "retry:\n  initial_interval: 2200000h\n", "http:\n  addr: 0.0.0.0:1\n",
		"nats:\n  embedded_addr: 0.0.0.0:4222\n  embedded_auth:\n    token: t\n", "store: [1, 2]\n", "a: &a [*a]\n",
		"retention:\n  interval: 1ns\n", "event_types:\n  - a.b\n  - '*'\n", "store:\n  max_payload: 99999999999999999999\n",
		"event_types:\n  - {name: a.b, payload_schema: c.yaml}\n  - name: c.d\n    metadata_schema: nope.json\n  - [1]\n",
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := loadConfig(path)
		if err != nil {
			if !errors.Is(err, errConfig) {
				t.Fatalf("error %v does not wrap errConfig", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("a loaded config does not validate: %v", err)
		}
		again, err := loadConfig(path)
		if err != nil || again.Store.Path != c.Store.Path || again.HTTP.Addr != c.HTTP.Addr {
			t.Fatalf("loaded twice, differs: %v", err)
		}
	})
}
