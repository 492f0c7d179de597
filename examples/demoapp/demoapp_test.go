package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
)

func testConfig(t *testing.T, mode string) *config {
	t.Helper()
	cfg, err := parseFlags([]string{"--mode=" + mode, "--batch=3", "--entities=2",
		"--db=" + filepath.Join(t.TempDir(), "app.db"), "--nats-url=nats://127.0.0.1:1"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// A lost answer (the relay killed mid-request) is followed by a re-post of
// the same body; the relay's 200 for it makes the batch accepted once.
func TestHTTPWriterRepostsTheSameIDs(t *testing.T) {
	var mu sync.Mutex
	var bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		n := len(bodies)
		mu.Unlock()
		if n == 1 { // stored, then the connection dies before the answer
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
			return
		}
		var in struct{ Events []*outbox.Event }
		json.Unmarshal(b, &in)
		for i, e := range in.Events {
			e.EntitySeq = uint64(i + 1)
		}
		w.WriteHeader(http.StatusOK) // stored already: an idempotent re-post
		json.NewEncoder(w).Encode(map[string]any{"events": in.Events})
	}))
	defer srv.Close()
	cfg := testConfig(t, "http")
	cfg.relayURL = srv.URL
	w := newHTTPWriter(cfg, slog.New(slog.DiscardHandler))
	g := newGenerator(cfg, w, slog.New(slog.DiscardHandler))

	if err := w.Write(context.Background(), g.batch(), func() bool { return false }); err != nil {
		t.Fatal(err)
	}
	if len(bodies) != 2 || bodies[0] != bodies[1] {
		t.Fatalf("want the same body posted twice, got %d posts", len(bodies))
	}
	acc, _ := w.Accepted(context.Background())
	if len(acc) != cfg.batch || acc[0].EntitySeq != 1 {
		t.Errorf("accepted: %+v", acc)
	}
	st := w.Stats()
	if st["reposts_200"] != int64(1) || st["conn_errors"] != int64(1) {
		t.Errorf("stats: %v", st)
	}
}

// A 503 stores nothing: once the load is paused the batch is given up and
// nothing of it counts as accepted.
func TestHTTPWriterAbandonsARefusedBatchWhenPaused(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"error":"outbox full: max_bytes passed"}`)
	}))
	defer srv.Close()
	cfg := testConfig(t, "http")
	cfg.relayURL = srv.URL
	w := newHTTPWriter(cfg, slog.New(slog.DiscardHandler))
	g := newGenerator(cfg, w, slog.New(slog.DiscardHandler))

	time.AfterFunc(300*time.Millisecond, func() { g.SetPaused(true) })
	err := w.Write(context.Background(), g.batch(), g.Paused)
	if !errors.Is(err, errAbandoned) {
		t.Fatalf("Write: %v, want errAbandoned", err)
	}
	if acc, _ := w.Accepted(context.Background()); len(acc) != 0 {
		t.Errorf("accepted %d events of a refused batch", len(acc))
	}
	if r := w.Stats()["last_refusal"].(*refusal); r.RetryAfter != "1" || r.Error == "" {
		t.Errorf("last refusal: %+v", r)
	}
}

// The embedded app's record of an event commits with the event: what
// Accepted lists is what the outbox holds, with its entity_seq.
func TestEmbeddedWriterCommitsItsRecordWithTheEvent(t *testing.T) {
	cfg := testConfig(t, "embedded")
	w, err := openEmbedded(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	g := newGenerator(cfg, w, slog.New(slog.DiscardHandler))
	for range 2 {
		if err := w.Write(context.Background(), g.batch(), func() bool { return false }); err != nil {
			t.Fatal(err)
		}
	}
	acc, err := w.Accepted(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	st, err := w.OutboxStats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(acc) != 2*cfg.batch || st.Pending != int64(len(acc)) {
		t.Fatalf("%d accepted, %d pending in the outbox", len(acc), st.Pending)
	}
	seqs := map[string][]uint64{}
	for _, a := range acc {
		e, err := w.store.Get(context.Background(), a.ID)
		if err != nil {
			t.Fatalf("accepted %s is not in the outbox: %v", a.ID, err)
		}
		if e.EntitySeq != a.EntitySeq || e.EntityID != a.EntityID {
			t.Errorf("%s: recorded %s/%d, stored %s/%d", a.ID, a.EntityID, a.EntitySeq, e.EntityID, e.EntitySeq)
		}
		seqs[a.EntityID] = append(seqs[a.EntityID], a.EntitySeq)
	}
	for ent, ss := range seqs {
		have := map[uint64]bool{}
		for _, q := range ss {
			have[q] = true
		}
		for q := uint64(1); q <= uint64(len(ss)); q++ {
			if !have[q] {
				t.Errorf("entity %s: entity_seq %v is not 1..%d", ent, ss, len(ss))
			}
		}
	}
}

func TestParseFlagsRejectsBadValues(t *testing.T) {
	for _, args := range [][]string{{"--mode=grpc"}, {"--rate=0"}, {"--batch=0"}, {"--entities=0"}, {"extra"}} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q): no error", args)
		}
	}
}
