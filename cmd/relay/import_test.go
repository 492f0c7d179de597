package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
	"github.com/fitiqcore/outbox/httpapi"
	"github.com/google/uuid"
)

// coreDataSeconds is t as Core Data stores a date.
func coreDataSeconds(t time.Time) float64 { return t.Sub(coreDataEpoch).Seconds() }

// writeCoreData makes a SQLite file with Core Data's table and columns, as
// SwiftData writes SDOutboxEvent: Z_PK, Z_ENT, Z_OPT, then the attributes.
func writeCoreData(t *testing.T, columns string, rows [][]any) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "Outbox.sqlite")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE TABLE ZSDOUTBOXEVENT (Z_PK INTEGER PRIMARY KEY, Z_ENT INTEGER, Z_OPT INTEGER, " + columns + ")"); err != nil {
		t.Fatal(err)
	}
	n := strings.Count(columns, ",") + 1
	q := "INSERT INTO ZSDOUTBOXEVENT VALUES (NULL, 1, 1" + strings.Repeat(", ?", n) + ")"
	for _, r := range rows {
		if _, err := db.Exec(q, r...); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

const fitiqColumns = "ZID BLOB, ZEVENTTYPE VARCHAR, ZENTITYID BLOB, ZUSERID VARCHAR, ZSTATUS VARCHAR, ZCREATEDAT TIMESTAMP, " +
	"ZLASTATTEMPTAT TIMESTAMP, ZATTEMPTCOUNT INTEGER, ZMAXATTEMPTS INTEGER, ZERRORMESSAGE VARCHAR, ZCOMPLETEDAT TIMESTAMP, " +
	"ZMETADATA VARCHAR, ZPRIORITY INTEGER, ZISNEWRECORD INTEGER"

const lumeColumns = "ZID BLOB, ZCREATEDAT TIMESTAMP, ZEVENTTYPE VARCHAR, ZPAYLOAD BLOB, ZSTATUS VARCHAR, ZRETRYCOUNT INTEGER, " +
	"ZLASTATTEMPTAT TIMESTAMP, ZCOMPLETEDAT TIMESTAMP, ZERRORMESSAGE VARCHAR"

func blob(u uuid.UUID) []byte { return u[:] }

// FitIQ's schema: pending, processing and failed rows become pending events
// with their ids, entity, user, created_at and, in metadata, the old
// attempts and error; a completed row is skipped; bad rows are reported by
// number without stopping; a second run imports nothing; a dry run stores
// nothing.
func TestImportCoreDataFitIQ(t *testing.T) {
	created := time.Date(2026, 11, 30, 8, 15, 30, 500_000_000, time.UTC)
	ids := []uuid.UUID{uuid.New(), uuid.New(), uuid.New(), uuid.New(), uuid.New(), uuid.New()}
	entity := uuid.New()
	at := coreDataSeconds(created)
	path := writeCoreData(t, fitiqColumns, [][]any{
		{blob(ids[0]), "mood.created", blob(entity), "user-7", "pending", at, nil, 0, 5, nil, nil, `{"source":"ios"}`, 3, 1},
		{blob(ids[1]), "mood.updated", blob(entity), "user-7", "failed", at + 1, at + 2, 5, 5, "HTTP 503", nil, nil, 0, 0},
		{blob(ids[2]), "sleep.synced", "sleep-1", "user-7", "processing", at + 3, at + 4, 1, 5, nil, nil, nil, 0, 0},
		{blob(ids[3]), "mood.created", blob(uuid.New()), "user-7", "completed", at, at, 1, 5, nil, at + 5, nil, 0, 1},
		{ids[4][:15], "mood.created", blob(uuid.New()), "user-7", "pending", at, nil, 0, 5, nil, nil, nil, 0, 1},
		{blob(ids[5]), "mood.created", blob(uuid.New()), "user-7", "archived", at, nil, 0, 5, nil, nil, nil, 0, 1},
	})

	// A dry run reads and checks every row and stores nothing.
	r := startRelay(t, relayOpts{})
	res := cli(t, "", "import", "--addr", r.addr, "--coredata", path, "--dry-run").wantCode(t, 1)
	contains(t, "dry run", res.stdout, "6 rows", "3 to import (dry run: nothing posted)", "1 completed skipped", "2 bad")
	var st struct{ Total int64 }
	r.api(http.MethodGet, "/v1/stats", "", &st)
	if st.Total != 0 {
		t.Fatalf("a dry run stored %d events", st.Total)
	}

	res = cli(t, "", "import", "--addr", r.addr, "--coredata", path).wantCode(t, 1)
	contains(t, "import", res.stdout, "6 rows", "3 imported", "0 already stored", "1 completed skipped", "2 bad")
	contains(t, "bad rows", res.stderr, "row 5: ZID: a 15-byte blob, want a 16-byte UUID", `row 6: ZSTATUS "archived"`)

	var e outbox.Event
	if r.api(http.MethodGet, "/v1/events/"+ids[0].String(), "", &e) != http.StatusOK {
		t.Fatalf("event %s not imported", ids[0])
	}
	if e.Type != "mood.created" || e.EntityID != entity.String() || e.UserID != "user-7" || e.Priority != 3 || !e.IsNewRecord ||
		!e.CreatedAt.Equal(created) {
		t.Errorf("imported %+v", e)
	}
	var meta map[string]any
	json.Unmarshal(e.Metadata, &meta)
	if meta["source"] != "ios" || meta["import_attempts"] != float64(0) {
		t.Errorf("metadata %s", e.Metadata)
	}
	r.api(http.MethodGet, "/v1/events/"+ids[1].String(), "", &e)
	json.Unmarshal(e.Metadata, &meta)
	if meta["import_attempts"] != float64(5) || meta["import_error"] != "HTTP 503" || e.EntitySeq != 2 {
		t.Errorf("the failed row imported as %+v, metadata %s", e, e.Metadata)
	}
	if r.api(http.MethodGet, "/v1/events/"+ids[3].String(), "", nil) != http.StatusNotFound {
		t.Error("the completed row was imported")
	}

	// Again: nothing new.
	res = cli(t, "", "import", "--addr", r.addr, "--coredata", path, "--json").wantCode(t, 1)
	var sum importSummary
	if err := json.Unmarshal([]byte(res.stdout), &sum); err != nil {
		t.Fatalf("--json: %v: %s", err, res.stdout)
	}
	if sum.Imported != 0 || sum.AlreadyStored != 3 || sum.Bad != 2 || sum.Rows != 6 {
		t.Errorf("second run %+v, want nothing imported, 3 already stored", sum)
	}
	r.api(http.MethodGet, "/v1/stats", "", &st)
	if st.Total != 3 {
		t.Errorf("the store holds %d events after two runs, want 3", st.Total)
	}
	// --include-completed takes the completed row too.
	res = cli(t, "", "import", "--addr", r.addr, "--coredata", path, "--include-completed").wantCode(t, 1)
	contains(t, "include completed", res.stdout, "1 imported", "3 already stored", "0 completed skipped")
}

// Lume's schema: no user or entity (--user sets the user), a payload that is
// JSON stays JSON, any other travels as bytes.
func TestImportCoreDataLume(t *testing.T) {
	at := coreDataSeconds(time.Date(2026, 10, 1, 12, 0, 0, 0, time.UTC))
	jsonID, binID := uuid.New(), uuid.New()
	path := writeCoreData(t, lumeColumns, [][]any{
		{blob(jsonID), at, "journal.created", []byte(`{"text":"hi"}`), "pending", 2, at + 1, nil, "offline"},
		{blob(binID), at, "photo.uploaded", []byte{0xff, 0x00, 0x01}, "failed", 5, at + 1, nil, nil},
	})
	r := startRelay(t, relayOpts{})
	cli(t, "", "import", "--addr", r.addr, "--coredata", path, "--user", "user-9").wantCode(t, 0)
	var e outbox.Event
	r.api(http.MethodGet, "/v1/events/"+jsonID.String(), "", &e)
	if e.UserID != "user-9" || e.EntityID != "" || e.ContentType != outbox.ContentTypeJSON || string(e.Payload) != `{"text":"hi"}` {
		t.Errorf("JSON row imported as %+v", e)
	}
	var meta map[string]any
	json.Unmarshal(e.Metadata, &meta)
	if meta["import_attempts"] != float64(2) || meta["import_error"] != "offline" {
		t.Errorf("metadata %s", e.Metadata)
	}
	r.api(http.MethodGet, "/v1/events/"+binID.String(), "", &e)
	if e.ContentType != outbox.ContentTypeBinary || string(e.Payload) != "\xff\x00\x01" {
		t.Errorf("binary row imported as %+v", e)
	}
}

// NDJSON: what export writes, import reads; lines without an id or not JSON
// are bad rows; a relay's store moves to another.
func TestExportImportNDJSON(t *testing.T) {
	a := startRelay(t, relayOpts{})
	for i := range 3 {
		a.post(`{"type":"mood.logged","entity_id":"m-1","user_id":"u","payload":{"n":` + string(rune('0'+i)) + `}}`)
	}
	file := filepath.Join(t.TempDir(), "events.ndjson")
	res := cli(t, "", "export", "--addr", a.addr, "--ndjson", file).wantCode(t, 0)
	contains(t, "export", res.stderr, "3 events written")
	b, err := os.ReadFile(file)
	if err != nil || strings.Count(string(b), "\n") != 3 {
		t.Fatalf("export wrote %q (%v)", b, err)
	}
	// The exported events are completed by now or soon: import them all.
	b = append(b, []byte("\n{\"type\":\"no.id\"}\nnot json\n")...)
	os.WriteFile(file, b, 0o600)
	dst := startRelay(t, relayOpts{})
	res = cli(t, "", "import", "--addr", dst.addr, "--ndjson", file, "--include-completed").wantCode(t, 1)
	contains(t, "import", res.stdout, "3 imported", "2 bad")
	contains(t, "bad rows", res.stderr, "row 5: id \"\"", "row 6: not a JSON object")
	res = cli(t, "", "import", "--addr", dst.addr, "--ndjson", file, "--include-completed").wantCode(t, 1)
	contains(t, "second import", res.stdout, "0 imported", "3 already stored")
}

// export --status lists in acceptance order, so that an import sees each
// entity's events in their order (a listing by status is by priority
// first: found in review, the paid order came before its creation).
func TestExportStatusKeepsEntityOrder(t *testing.T) {
	store, err := boltstore.Open(filepath.Join(t.TempDir(), "o.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	srv := httptest.NewServer(httpapi.New(store, httpapi.Options{})) // no relay: the events stay pending
	defer srv.Close()
	created := &outbox.Event{Type: "order.created", EntityID: "order-1", Priority: 0}
	paid := &outbox.Event{Type: "order.paid", EntityID: "order-1", Priority: 5}
	if _, err := store.Enqueue(context.Background(), created, paid); err != nil {
		t.Fatal(err)
	}
	c, err := newClient(srv.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if n, err := exportEvents(context.Background(), c, outbox.StatusPending, &buf); err != nil || n != 2 {
		t.Fatalf("export: %d, %v", n, err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], created.ID) || !strings.Contains(lines[1], paid.ID) {
		t.Errorf("exported in the order:\n%s", buf.String())
	}
}

// A row whose metadata is JSON null imports as one without metadata
// (it crashed the import: found in review).
func TestImportCoreDataNullMetadata(t *testing.T) {
	id := uuid.New()
	at := coreDataSeconds(time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC))
	path := writeCoreData(t, fitiqColumns, [][]any{
		{blob(id), "mood.created", "mood-1", "user-7", "pending", at, nil, 1, 5, "timeout", nil, "null", 0, 1},
	})
	var rows []importRow
	if err := readCoreData(context.Background(), path, importOptions{}, func(r importRow) error { rows = append(rows, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].err != nil {
		t.Fatalf("rows %+v", rows)
	}
	meta := rows[0].event["metadata"].(map[string]any)
	if meta["import_attempts"] != int64(1) || meta["import_error"] != "timeout" {
		t.Errorf("metadata %v", meta)
	}
}
