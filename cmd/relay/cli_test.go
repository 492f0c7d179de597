package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
	"github.com/fitiqcore/outbox/httpapi"
	"github.com/fitiqcore/outbox/internal/natstest"
	"github.com/fitiqcore/outbox/internal/poll"
	"github.com/nats-io/nats.go/jetstream"
)

// stuckRelay runs a relay on a stream it does not manage and that does not
// cover its subjects, with max_attempts 1: every event fails at once. It
// returns the relay and the stream, to fix.
func stuckRelay(t *testing.T) (*testRelay, jetstream.JetStream) {
	t.Helper()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "OUT", Subjects: []string{"other.>"}}); err != nil {
		t.Fatal(err)
	}
	r := startRelay(t, relayOpts{natsURL: ns.URL(), streamName: "OUT", manageStream: boolPtr(false), maxAttempts: 1})
	return r, js
}

// TestCLIStatus walks the README's story: a relay on a stream that does not
// cover its subjects (relay status says so), an event that fails because of
// it, relay status showing it with its error (exit 1), the fix (the stream
// covers the subjects, relay events retry), and relay status healthy again
// (exit 0).
func TestCLIStatus(t *testing.T) {
	r, js := stuckRelay(t)
	early := cli(t, "", "status", "--addr", r.addr).wantCode(t, 1)
	contains(t, "status of a misconfigured stream", early.stdout, "0 total", "connected to nats://",
		"stream  OUT: does not cover outbox.>", "status: ISSUES")

	e := r.post(`{"type":"mood.created","entity_id":"mood-42","user_id":"u1","payload":{"score":4}}`)
	behind := r.post(`{"type":"mood.updated","entity_id":"mood-42","user_id":"u1","payload":{"score":5}}`)
	failed := r.waitStatus(e.ID, outbox.StatusFailed)
	if failed.LastError == "" {
		t.Fatalf("failed event without last_error: %+v", failed)
	}

	bad := cli(t, "", "status", "--addr", r.addr).wantCode(t, 1)
	contains(t, "status with a failed event", bad.stdout,
		"failed events (1)", e.ID, "mood.created", "mood-42", "1/1", oneLine(failed.LastError, 100),
		"status: ISSUES", "1 failed event", "relay events retry <id>")
	asJSON := cli(t, "", "status", "--addr", "http://"+r.addr, "--json").wantCode(t, 1)
	var rep httpapi.Report
	if err := json.Unmarshal([]byte(asJSON.stdout), &rep); err != nil {
		t.Fatalf("status --json: %v\n%s", err, asJSON.stdout)
	}
	if !rep.HasIssues || rep.Stats.Failed != 1 || len(rep.Failed) != 1 || rep.Failed[0].LastError == "" ||
		rep.NATS == nil || !rep.NATS.Connected || rep.Stream == nil || rep.Stream.Name != "OUT" {
		t.Errorf("status --json report: %s", asJSON.stdout)
	}

	// The fix: the stream covers the subjects, then the event is retried.
	ctx := context.Background()
	if _, err := js.UpdateStream(ctx, jetstream.StreamConfig{Name: "OUT", Subjects: []string{"other.>", "outbox.>"}}); err != nil {
		t.Fatal(err)
	}
	retried := cli(t, "", "events", "retry", e.ID, "--addr", r.addr).wantCode(t, 0)
	contains(t, "events retry", retried.stdout, "retried "+e.ID, "pending again")
	r.waitStatus(e.ID, outbox.StatusCompleted)
	r.waitStatus(behind.ID, outbox.StatusCompleted) // the entity goes on
	healthy := cli(t, "", "status", "--addr", r.addr).wantCode(t, 0)
	contains(t, "status after the fix", healthy.stdout, "status: OK", "2 total", "2 completed", "0 failed",
		"stream  OUT [other.> outbox.>]: 2 messages")
}

func TestCLIStatusUnreachable(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", natstest.FreePort(t)) // nothing listens
	res := cli(t, "", "status", "--addr", addr).wantCode(t, 1)
	contains(t, "status of nothing", res.stderr, "relay unreachable at http://"+addr)
	cli(t, "", "status", "--addr", "ftp://x").wantCode(t, 1)
}

func TestCLIVerify(t *testing.T) {
	r := startRelay(t, relayOpts{eventTypes: []string{"mood.created"}})
	res := cli(t, "", "verify", "--addr", r.addr, "--nats-url", r.natsURL).wantCode(t, 0)
	lines := strings.Split(strings.TrimSpace(res.stdout), "\n")
	if len(lines) != 9 {
		t.Errorf("verify printed %d lines, want 8 checks and a summary:\n%s", len(lines), res.stdout)
	}
	for _, line := range lines[:len(lines)-1] {
		if !strings.HasPrefix(line, "ok   ") {
			t.Errorf("not an ok line: %q", line)
		}
	}
	contains(t, "verify", res.stdout, "ok   relay answers", "ok   relay is connected to NATS", "ok   NATS reachable",
		"ok   stream OUTBOX exists", "ok   stream OUTBOX covers outbox.>", "enqueued", "completed", "read back from stream OUTBOX",
		"all 8 checks passed")

	asJSON := cli(t, "", "verify", "--addr", r.addr, "--nats-url", r.natsURL, "--json").wantCode(t, 0)
	var v struct {
		OK     bool
		Checks []checkResult
	}
	if err := json.Unmarshal([]byte(asJSON.stdout), &v); err != nil || !v.OK || len(v.Checks) != 8 {
		t.Errorf("verify --json: %v %s", err, asJSON.stdout)
	}
}

func TestCLIVerifyFails(t *testing.T) {
	r, _ := stuckRelay(t)
	res := cli(t, "", "verify", "--addr", r.addr, "--nats-url", r.natsURL, "--timeout", "10s").wantCode(t, 1)
	contains(t, "verify on an uncovered stream", res.stdout,
		"ok   relay answers", "ok   stream OUT exists",
		"FAIL stream OUT covers outbox.>: its subjects [other.>] do not cover outbox.>",
		"FAIL probe event (type outbox.verify)", "failed after 1 attempts",
		"FAIL probe event (type outbox.verify) read back from stream OUT: skipped", "checks failed")

	// No NATS where the command looks: its own checks fail, the relay's pass.
	gone := fmt.Sprintf("nats://127.0.0.1:%d", natstest.FreePort(t))
	res = cli(t, "", "verify", "--addr", r.addr, "--nats-url", gone, "--timeout", "5s").wantCode(t, 1)
	contains(t, "verify without NATS", res.stdout, "FAIL NATS reachable at "+gone, "FAIL stream OUT exists: skipped")
}

func TestCLITestSync(t *testing.T) {
	r := startRelay(t, relayOpts{})
	res := cli(t, "", "test-sync", "--addr", r.addr, "--type", "load.test", "--count", "50", "--batch", "20", "--wait").wantCode(t, 0)
	contains(t, "test-sync", res.stdout, "enqueued 50 events of type load.test", "events/s",
		"completed 50 of 50", "latency created → completed over 50 events: p50 ", " p90 ", " p99 ", " max ")
	if res.stderr != "" {
		t.Errorf("test-sync wrote to a piped stderr (progress must stay quiet): %q", res.stderr)
	}
	asJSON := cli(t, "", "test-sync", "--addr", r.addr, "--type", "load.test", "--count", "10", "--wait", "--json").wantCode(t, 0)
	var got syncResult
	if err := json.Unmarshal([]byte(asJSON.stdout), &got); err != nil {
		t.Fatalf("test-sync --json: %v\n%s", err, asJSON.stdout)
	}
	if got.Completed != 10 || got.Latency == nil || got.Latency.N != 10 || got.Latency.P50 > got.Latency.P99 || got.Throughput <= 0 {
		t.Errorf("test-sync --json: %+v", got)
	}
	var st httpapi.Stats
	r.api(http.MethodGet, "/v1/stats", "", &st)
	if st.Completed != 60 {
		t.Errorf("relay completed %d events, want 60", st.Completed)
	}
	cli(t, "", "test-sync", "--addr", r.addr, "--count", "5").wantCode(t, 2) // --type missing
}

func TestCLIEvents(t *testing.T) {
	r, _ := stuckRelay(t)
	var ids []string
	for i := range 7 {
		e := r.post(fmt.Sprintf(`{"type":"note.added","entity_id":"n%d","user_id":"u%d"}`, i, i%2))
		ids = append(ids, e.ID)
	}
	for _, id := range ids {
		r.waitStatus(id, outbox.StatusFailed)
	}

	// list --json, one page and all pages.
	one := cli(t, "", "events", "list", "--addr", r.addr, "--limit", "3", "--json").wantCode(t, 0)
	var page httpapi.Page
	if err := json.Unmarshal([]byte(one.stdout), &page); err != nil {
		t.Fatalf("events list --json: %v\n%s", err, one.stdout)
	}
	if len(page.Events) != 3 || page.NextCursor == "" {
		t.Errorf("first page: %d events, next_cursor %q", len(page.Events), page.NextCursor)
	}
	all := cli(t, "", "events", "list", "--addr", r.addr, "--limit", "2", "--all", "--json").wantCode(t, 0)
	page = httpapi.Page{}
	if err := json.Unmarshal([]byte(all.stdout), &page); err != nil {
		t.Fatal(err)
	}
	if len(page.Events) != 7 || page.NextCursor != "" {
		t.Errorf("--all: %d events, next_cursor %q", len(page.Events), page.NextCursor)
	}
	if all.stderr != "" {
		t.Errorf("--all wrote progress to a pipe: %q", all.stderr)
	}
	// Filters, and the table.
	table := cli(t, "", "events", "list", "--addr", r.addr, "--user", "u1", "--status", "failed").wantCode(t, 0)
	contains(t, "events list table", table.stdout, "ID", "STATUS", "TYPE", "LAST ERROR", ids[1], ids[3], ids[5])
	if strings.Contains(table.stdout, ids[0]) || strings.Count(table.stdout, "note.added") != 3 {
		t.Errorf("--user u1 listed other events:\n%s", table.stdout)
	}
	cli(t, "", "events", "list", "--addr", r.addr, "--status", "bogus").wantCode(t, 1)

	// show
	show := cli(t, "", "events", "show", ids[0], "--addr", r.addr).wantCode(t, 0)
	contains(t, "events show", show.stdout, "id", ids[0], "status", "failed", "last_error", "attempts", "1 of 1")
	cli(t, "", "events", "show", "0190b5a8-7f3e-7c3a-9d2e-1a2b3c4d5e6f", "--addr", r.addr).wantCode(t, 1)

	// retry in bulk, by user.
	bulk := cli(t, "", "events", "retry", "--user", "u0", "--addr", r.addr, "--json").wantCode(t, 0)
	var n countAnswer
	if err := json.Unmarshal([]byte(bulk.stdout), &n); err != nil || n.Count != 4 {
		t.Errorf("retry --user u0: %v %s", err, bulk.stdout)
	}
	cli(t, "", "events", "retry", "--addr", r.addr).wantCode(t, 2) // no ids, no filter

	// delete by id, by entity, by user.
	del := cli(t, "", "events", "delete", ids[1], "--addr", r.addr).wantCode(t, 0)
	contains(t, "delete by id", del.stdout, "deleted 1 event")
	cli(t, "", "events", "delete", ids[1], "--addr", r.addr).wantCode(t, 1) // 404 now
	del = cli(t, "", "events", "delete", "--entity", "n3", "--entity", "n5", "--addr", r.addr).wantCode(t, 0)
	contains(t, "delete by entity", del.stdout, "deleted 2 events")
	del = cli(t, "", "events", "delete", "--user", "u0", "--addr", r.addr, "--json").wantCode(t, 0)
	if err := json.Unmarshal([]byte(del.stdout), &n); err != nil || n.Count != 4 {
		t.Errorf("delete --user u0: %v %s", err, del.stdout)
	}
	cli(t, "", "events", "delete", "--user", "u0", "--entity", "x", "--addr", r.addr).wantCode(t, 2)
	var st httpapi.Stats
	r.api(http.MethodGet, "/v1/stats", "", &st)
	if st.Total != 0 {
		t.Errorf("total = %d after deleting everything", st.Total)
	}
	cli(t, "", "events").wantCode(t, 2)
	cli(t, "", "events", "frobnicate").wantCode(t, 2)
}

func TestCLIPurge(t *testing.T) {
	r := startRelay(t, relayOpts{retention: "24h"})
	res := cli(t, "", "test-sync", "--addr", r.addr, "--type", "t", "--count", "30", "--wait").wantCode(t, 0)
	contains(t, "test-sync", res.stdout, "completed 30 of 30")
	kept := cli(t, "", "purge", "--completed-older-than", "1h", "--addr", r.addr).wantCode(t, 0)
	contains(t, "purge 1h", kept.stdout, "purged 0 completed events older than 1h0m0s")
	purged := cli(t, "", "purge", "--completed-older-than", "0s", "--addr", r.addr).wantCode(t, 0)
	contains(t, "purge 0s", purged.stdout, "purged 30 completed events")
	if purged.stderr != "" {
		t.Errorf("purge wrote progress to a pipe: %q", purged.stderr)
	}
	var st httpapi.Stats
	r.api(http.MethodGet, "/v1/stats", "", &st)
	if st.Total != 0 {
		t.Errorf("total = %d after the purge", st.Total)
	}
	cli(t, "", "purge", "--addr", r.addr).wantCode(t, 2)
}

func TestCLIResetEmergency(t *testing.T) {
	r, _ := stuckRelay(t)
	for i := range 5 {
		r.post(fmt.Sprintf(`{"type":"a","entity_id":"e%d"}`, i))
	}
	dir := t.TempDir()
	cli(t, "", "reset", "--addr", r.addr, "--yes").wantCode(t, 2) // --emergency missing

	// Not confirmed: a backup is taken, nothing is deleted.
	no := cli(t, "no\n", "reset", "--emergency", "--addr", r.addr, "--backup-dir", dir).wantCode(t, 1)
	contains(t, "unconfirmed reset", no.stderr, "backup: "+dir, "This deletes all 5 events", "Type yes", "aborted")
	var st httpapi.Stats
	r.api(http.MethodGet, "/v1/stats", "", &st)
	if st.Total != 5 {
		t.Fatalf("unconfirmed reset deleted events: total %d", st.Total)
	}

	yes := cli(t, "", "reset", "--emergency", "--yes", "--addr", r.addr, "--backup-dir", dir).wantCode(t, 0)
	contains(t, "reset", yes.stdout, "reset: deleted 5 events; backup at "+dir)
	r.api(http.MethodGet, "/v1/stats", "", &st)
	if st.Total != 0 {
		t.Errorf("total = %d after reset", st.Total)
	}
	backups, _ := filepath.Glob(filepath.Join(dir, "outbox-backup-*.db"))
	if len(backups) != 2 {
		t.Fatalf("backups: %v, want 2", backups)
	}
	for _, b := range backups {
		store, err := boltstore.Open(b, nil)
		if err != nil {
			t.Fatalf("open backup %s: %v", b, err)
		}
		st, err := store.Stats(context.Background())
		store.Close()
		if err != nil || st.Total != 5 {
			t.Errorf("backup %s holds %+v (%v), want the 5 events", b, st, err)
		}
	}
}

func TestCLIBackupAndCompact(t *testing.T) {
	r := startRelay(t, relayOpts{})
	res := cli(t, "", "test-sync", "--addr", r.addr, "--type", "t", "--count", "20", "--wait").wantCode(t, 0)
	contains(t, "test-sync", res.stdout, "completed 20 of 20")
	dir := t.TempDir()

	online := filepath.Join(dir, "online.db")
	got := cli(t, "", "backup", online, "--addr", r.addr).wantCode(t, 0)
	contains(t, "online backup", got.stdout, "backup: "+online, "20 events")
	cli(t, "", "backup", online, "--addr", r.addr).wantCode(t, 1) // exists already

	// While serve holds the file, the offline commands say so.
	held := cli(t, "", "backup", "--offline", "--config", r.config, filepath.Join(dir, "offline.db")).wantCode(t, 1)
	contains(t, "offline backup of a held file", held.stderr, "is held by a running relay: take the backup through its API instead (relay backup --addr")
	if !errors.Is(held.err, boltstore.ErrLocked) {
		t.Errorf("offline backup error %v does not wrap boltstore.ErrLocked", held.err)
	}
	if _, err := os.Stat(filepath.Join(dir, "offline.db")); !os.IsNotExist(err) {
		t.Errorf("a failed offline backup left a file: %v", err)
	}
	compactHeld := cli(t, "", "compact", "--config", r.config).wantCode(t, 1)
	contains(t, "compact of a held file", compactHeld.stderr, "is held by a running relay", "stop it first")

	r.stop()
	offline := filepath.Join(dir, "offline.db")
	got = cli(t, "", "backup", "--offline", "--config", r.config, offline).wantCode(t, 0)
	contains(t, "offline backup", got.stdout, "backup: "+offline, "20 events")
	compacted := cli(t, "", "compact", "--config", r.config).wantCode(t, 0)
	contains(t, "compact", compacted.stdout, "compacted "+filepath.Join(r.dir, "outbox.db"))
	store, err := boltstore.Open(filepath.Join(r.dir, "outbox.db"), nil)
	if err != nil {
		t.Fatalf("open compacted store: %v", err)
	}
	defer store.Close()
	if st, err := store.Stats(context.Background()); err != nil || st.Completed != 20 {
		t.Errorf("compacted store: %+v %v", st, err)
	}
}

func TestCLIAuth(t *testing.T) {
	const token = "t0ps3cret"
	r := startRelay(t, relayOpts{token: token})
	denied := cli(t, "", "status", "--addr", r.addr).wantCode(t, 1)
	contains(t, "status without a token", denied.stderr, "unauthorized", "401")
	cli(t, "", "status", "--addr", r.addr, "--token", "wrong").wantCode(t, 1)
	cli(t, "", "status", "--addr", r.addr, "--token", token).wantCode(t, 0)
	cli(t, "", "status", "--config", r.config).wantCode(t, 0) // http.addr and http.token from the file
	t.Setenv("RELAY_TOKEN", token)
	cli(t, "", "status", "--addr", r.addr).wantCode(t, 0)

	for _, path := range []string{"/healthz", "/readyz"} {
		if st := r.api(http.MethodGet, path, "", nil); st != 200 {
			t.Errorf("%s with a token set: %d, want 200 without a token", path, st)
		}
	}
	for _, path := range []string{"/v1/stats", "/metrics", "/v1/events"} {
		if st := r.api(http.MethodGet, path, "", nil); st != 401 {
			t.Errorf("%s without a token: %d, want 401", path, st)
		}
	}
}

func TestServeRefusesExposedAddrWithoutToken(t *testing.T) {
	tests := []struct {
		addr, token string
		refused     bool
	}{
		{"0.0.0.0:7070", "", true},
		{":7070", "", true},
		{"192.0.2.10:7070", "", true},
		{"relay.example.com:7070", "", true},
		{"[::]:7070", "", true},
		{"0.0.0.0:7070", "x", false},
		{"127.0.0.1:7070", "", false},
		{"127.0.0.2:7070", "", false},
		{"localhost:7070", "", false},
		{"[::1]:7070", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.addr+" "+tt.token, func(t *testing.T) {
			err := checkExposure(HTTPConfig{Addr: tt.addr, Token: tt.token})
			if (err != nil) != tt.refused {
				t.Fatalf("checkExposure = %v, refused want %v", err, tt.refused)
			}
			if err != nil && !strings.Contains(err.Error(), "http.token") {
				t.Errorf("error %q does not name http.token", err)
			}
		})
	}
	// serve itself refuses before it opens anything.
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, fmt.Appendf(nil, "store:\n  path: %s/outbox.db\nhttp:\n  addr: 0.0.0.0:%d\n", dir, natstest.FreePort(t)), 0o600)
	res := cli(t, "", "serve", "--config", cfg).wantCode(t, 1)
	contains(t, "serve on 0.0.0.0", res.stderr, "http.token", "not a loopback address")
	if _, err := os.Stat(filepath.Join(dir, "outbox.db")); !os.IsNotExist(err) {
		t.Errorf("refused serve created the store: %v", err)
	}
}

// TestServeAdmissionAndMetrics: a tiny store.max_pending turns ingest away
// with 503 and Retry-After; /metrics exposes the outbox's metrics after
// publishes; event_types refuses other types naming the allowed ones.
func TestServeAdmissionAndMetrics(t *testing.T) {
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "OUT", Subjects: []string{"other.>"}}); err != nil {
		t.Fatal(err)
	}
	// Nothing is published (the stream covers no subject of the relay's and
	// retries are slow), so pending events pile up to the mark.
	r := startRelay(t, relayOpts{natsURL: ns.URL(), streamName: "OUT", manageStream: boolPtr(false), maxPending: 2, initialRetry: "1m",
		eventTypes: []string{"mood.created", "journal.created"}})
	first := r.post(`{"type":"mood.created"}`)
	r.post(`{"type":"journal.created"}`)
	req, _ := http.NewRequest(http.MethodPost, "http://"+r.addr+"/v1/events", strings.NewReader(`{"type":"mood.created"}`))
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]string
	json.NewDecoder(res.Body).Decode(&body)
	res.Body.Close()
	if res.StatusCode != 503 || res.Header.Get("Retry-After") == "" || !strings.HasPrefix(body["error"], "outbox full: max_pending") {
		t.Errorf("over max_pending: %d Retry-After %q %v", res.StatusCode, res.Header.Get("Retry-After"), body)
	}
	var e map[string]string
	if st := r.api(http.MethodPost, "/v1/events", `{"type":"mood.craeted"}`, &e); st != 400 ||
		!strings.Contains(e["error"], `"mood.craeted" is not allowed (allowed: mood.created, journal.created, outbox.verify)`) {
		t.Errorf("type outside event_types: %d %v", st, e)
	}

	// The failed attempt is counted as retried.
	poll.Until(t, 10*time.Second, "first attempt", func() bool {
		var e outbox.Event
		r.api(http.MethodGet, "/v1/events/"+first.ID, "", &e)
		return e.AttemptCount == 1
	})
	poll.Until(t, 5*time.Second, "retried counted", func() bool {
		return strings.Contains(scrapeMetrics(t, r.addr), `outbox_events_retried_total{type="mood.created"} 1`)
	})
	contains(t, "/metrics of the stuck relay", scrapeMetrics(t, r.addr),
		`outbox_events{status="pending"} 2`, `outbox_events_pending{priority="0"} 2`, "outbox_nats_connected 1")

	// Metrics after publishes: a relay whose stream works.
	ok := startRelay(t, relayOpts{})
	cli(t, "", "test-sync", "--addr", ok.addr, "--type", "mood.created", "--count", "5", "--wait").wantCode(t, 0)
	contains(t, "/metrics", scrapeMetrics(t, ok.addr),
		`outbox_events_enqueued_total{type="mood.created"} 5`,
		`outbox_events_published_total{type="mood.created"} 5`,
		"outbox_publish_latency_seconds_bucket", "outbox_enqueue_to_ack_seconds_count 5",
		`outbox_events{status="completed"} 5`, `outbox_events_pending{priority="0"} 0`,
		"outbox_oldest_pending_age_seconds 0", "outbox_has_issues 0", "outbox_nats_connected 1", "outbox_store_bytes")
}

func scrapeMetrics(t *testing.T, addr string) string {
	t.Helper()
	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		t.Fatalf("/metrics: %d %s", res.StatusCode, b)
	}
	return string(b)
}

// TestServeRetention: retention.completed 0s removes events on ack; a short
// one lets the sweep that serve runs remove them soon after.
func TestServeRetention(t *testing.T) {
	onAck := startRelay(t, relayOpts{retention: "0s"})
	res := cli(t, "", "test-sync", "--addr", onAck.addr, "--type", "t", "--count", "20", "--wait").wantCode(t, 0)
	contains(t, "test-sync with removal on ack", res.stdout, "completed 20 of 20", "retention.completed: 0")
	var st httpapi.Stats
	onAck.api(http.MethodGet, "/v1/stats", "", &st)
	if st.Total != 0 {
		t.Errorf("retention 0s: %d events kept, want 0", st.Total)
	}

	swept := startRelay(t, relayOpts{retention: "300ms"})
	cli(t, "", "test-sync", "--addr", swept.addr, "--type", "t", "--count", "20", "--wait").wantCode(t, 0)
	poll.Until(t, 10*time.Second, "completed events swept", func() bool {
		swept.api(http.MethodGet, "/v1/stats", "", &st)
		return st.Total == 0
	})
}

// TestCLIDeleteEntityExact: --entity is one entity_id as given. The CLI split
// values on commas and trimmed them, so deleting entity "a,b" deleted "a" and
// "b" instead (issue 9 row 5).
func TestCLIDeleteEntityExact(t *testing.T) {
	r := startRelay(t, relayOpts{})
	for _, ent := range []string{"a,b", "a", "b", "c d"} {
		r.post(fmt.Sprintf(`{"type":"note.added","entity_id":%q}`, ent))
	}
	del := cli(t, "", "events", "delete", "--entity", "a,b", "--addr", r.addr).wantCode(t, 0)
	contains(t, "delete a,b", del.stdout, "deleted 1 event")
	del = cli(t, "", "events", "delete", "--entity", "c d", "--addr", r.addr).wantCode(t, 0)
	contains(t, "delete 'c d'", del.stdout, "deleted 1 event")
	var st httpapi.Stats
	r.api(http.MethodGet, "/v1/stats", "", &st)
	if st.Total != 2 {
		t.Errorf("total = %d, want 2 (entities a and b untouched)", st.Total)
	}
}
