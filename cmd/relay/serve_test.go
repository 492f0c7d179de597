package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/fitiqcore/outbox/internal/natstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestServeEmbeddedDefault runs `relay serve` in-process on the embedded
// NATS server (the one-command default, on free ports in a temp dir), posts
// an event and reads it back from the embedded stream.
func TestServeEmbeddedDefault(t *testing.T) {
	dir := t.TempDir()
	natsAddr := fmt.Sprintf("127.0.0.1:%d", natstest.FreePort(t))
	httpAddr := fmt.Sprintf("127.0.0.1:%d", natstest.FreePort(t))
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, fmt.Appendf(nil, "store:\n  path: %s/outbox.db\nnats:\n  embedded_addr: %s\n  store_dir: %s/nats\nhttp:\n  addr: %s\nlog:\n  format: json\n", dir, natsAddr, dir, httpAddr), 0o600)

	ctx, cancel := context.WithCancel(context.Background())
	var stderr bytes.Buffer
	logw := &lockedWriter{w: &stderr}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve", "--config", cfg}, io.Discard, logw) }()
	defer func() {
		if t.Failed() {
			logw.mu.Lock()
			t.Logf("relay log:\n%s", stderr.String())
			logw.mu.Unlock()
		}
	}()
	natstest.Eventually(t, 15*time.Second, "healthz", func() bool {
		r, err := http.Get("http://" + httpAddr + "/readyz")
		if err != nil {
			return false
		}
		r.Body.Close()
		return r.StatusCode == 200
	})
	resp, err := http.Post("http://"+httpAddr+"/v1/events", "application/json",
		bytes.NewReader([]byte(`{"type":"mood.created","entity_id":"m1","payload":{"score":4}}`)))
	if err != nil {
		t.Fatal(err)
	}
	var ev struct{ ID, Status string }
	json.NewDecoder(resp.Body).Decode(&ev)
	resp.Body.Close()
	if resp.StatusCode != 201 || ev.Status != "pending" {
		t.Fatalf("POST: %d %+v", resp.StatusCode, ev)
	}
	natstest.Eventually(t, 10*time.Second, "event completed", func() bool {
		r, err := http.Get("http://" + httpAddr + "/v1/events/" + ev.ID)
		if err != nil {
			return false
		}
		defer r.Body.Close()
		var got struct{ Status string }
		json.NewDecoder(r.Body).Decode(&got)
		return got.Status == "completed"
	})
	nc, err := nats.Connect("nats://" + natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	got := natstest.Read(t, js, "OUTBOX")
	nc.Close()
	if len(got) != 1 || got[0].ID != ev.ID || string(got[0].Payload) != `{"score":4}` {
		t.Fatalf("embedded stream holds %+v", got)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve returned %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop")
	}
}

func TestRunUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(context.Background(), nil, &out, &errOut); err == nil || !bytes.Contains(errOut.Bytes(), []byte("usage")) {
		t.Errorf("no args: %v %q", err, errOut.String())
	}
	if err := run(context.Background(), []string{"bogus"}, &out, &errOut); err == nil {
		t.Error("unknown command accepted")
	}
	if err := run(context.Background(), []string{"serve", "--config", "/nonexistent.yaml"}, &out, &errOut); err == nil {
		t.Error("missing config accepted")
	}
}

// lockedWriter lets the test read the log the server goroutine writes.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
