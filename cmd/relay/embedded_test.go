package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/internal/natstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestServeRefusesExposedEmbeddedServer (issue 9, row 7): an embedded NATS
// server on a non-loopback address without nats.embedded_auth is refused
// before anything starts, with an error naming the key and saying why.
func TestServeRefusesExposedEmbeddedServer(t *testing.T) {
	for _, addr := range []string{"0.0.0.0", "", "::", "192.168.1.20", "nats.example.com"} {
		t.Run(orDefault(addr, "every interface"), func(t *testing.T) {
			dir := t.TempDir()
			cfg := filepath.Join(dir, "relay.yaml")
			os.WriteFile(cfg, fmt.Appendf(nil, "store:\n  path: %s\nnats:\n  embedded_addr: '%s'\n  store_dir: %s\nhttp:\n  addr: 127.0.0.1:%d\n",
				filepath.Join(dir, "outbox.db"), joinHostPort(addr, natstest.FreePort(t)), filepath.Join(dir, "nats"), natstest.FreePort(t)), 0o600)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := run(ctx, []string{"serve", "--config", cfg}, io.Discard, io.Discard)
			if err == nil {
				t.Fatal("serve started an embedded server open to the network without auth")
			}
			for _, want := range []string{"config: nats.embedded_auth: required when nats.embedded_addr", "is not a loopback address", "read every payload and publish forged events"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "outbox.db")); !os.IsNotExist(err) {
				t.Errorf("serve opened the store before refusing: %v", err)
			}
		})
	}
}

func joinHostPort(host string, port int) string {
	if strings.Contains(host, ":") {
		return fmt.Sprintf("[%s]:%d", host, port)
	}
	return fmt.Sprintf("%s:%d", host, port)
}

// TestServeEmbeddedAuth (issue 9, row 7): with nats.embedded_auth the
// embedded server listens on 0.0.0.0, refuses a client without the
// credentials, and the relay publishes with them; a subscriber with them
// reads the events. The server's max_payload is embeddedMaxPayload.
func TestServeEmbeddedAuth(t *testing.T) {
	for _, tc := range []struct {
		name, auth string
		opt        nats.Option
	}{
		{"token", "    token: s3cret-token\n", nats.Token("s3cret-token")},
		{"user and password", "    user: subscriber\n    password: s3cret-pass\n", nats.UserInfo("subscriber", "s3cret-pass")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startRelay(t, relayOpts{
				natsAddr:  fmt.Sprintf("0.0.0.0:%d", natstest.FreePort(t)),
				natsExtra: "  embedded_auth:\n" + tc.auth,
			})
			if nc, err := nats.Connect(r.natsURL, nats.MaxReconnects(0)); err == nil {
				nc.Close()
				t.Fatal("a client without credentials connected to the embedded server")
			} else if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
				t.Errorf("a client without credentials: %v, want an authorization error", err)
			}
			wrong := nats.Token("wrong")
			if tc.name != "token" {
				wrong = nats.UserInfo("subscriber", "wrong")
			}
			if nc, err := nats.Connect(r.natsURL, nats.MaxReconnects(0), wrong); err == nil {
				nc.Close()
				t.Fatal("a client with wrong credentials connected to the embedded server")
			}

			// The relay publishes with its credentials.
			e := r.post(`{"type":"auth.test","entity_id":"e1","payload":{"n":1}}`)
			r.waitStatus(e.ID, outbox.StatusCompleted)

			nc, err := nats.Connect(r.natsURL, tc.opt)
			if err != nil {
				t.Fatalf("a subscriber with the credentials: %v", err)
			}
			defer nc.Close()
			if got, want := nc.MaxPayload(), embeddedMaxPayload(outbox.DefaultPayload); got != want {
				t.Errorf("embedded server max_payload %d, want %d (store.max_payload + headers + dead-letter room)", got, want)
			}
			js, err := jetstream.New(nc)
			if err != nil {
				t.Fatal(err)
			}
			got := natstest.Read(t, js, "OUTBOX")
			if len(got) != 1 || got[0].ID != e.ID {
				t.Errorf("the stream holds %d events, want the one posted (%s)", len(got), e.ID)
			}
			// relay verify reads the stream back with the same credentials.
			res := cli(t, "", "verify", "--config", r.config).wantCode(t, 0)
			contains(t, "relay verify", res.stdout, "checks passed")
		})
	}
}
