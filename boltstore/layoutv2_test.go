package boltstore_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
)

// copyFile copies src into a fresh temporary directory.
func copyFile(t *testing.T, src string) string {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestLayoutV2File opens a real version 2 file (testdata/README.md) and
// finds every event, status and counter it was written with.
func TestLayoutV2File(t *testing.T) {
	ctx := context.Background()
	s := mustOpenPath(t, copyFile(t, "testdata/layout-v2.db"), nil)
	st := mustStats(t, s)
	// Open turns the processing event back into a pending one, as it always did.
	if got := (tally{269, 90, 0, 134, 45}); tallyOf(st) != got {
		t.Fatalf("stats %+v, want %+v", tallyOf(st), got)
	}
	p, err := s.List(ctx, boltstore.Query{Limit: 1000})
	if err != nil || len(p.Events) != 269 {
		t.Fatalf("list: %d events, %v", len(p.Events), err)
	}
	e := mustGet(t, s, "0193a000-0000-7000-8000-000000000001")
	if e.Type != "mood.created" || string(e.Metadata) != `{"k":0,"tag":"t0"}` || e.Retry == nil {
		t.Errorf("event 1: %+v", e)
	}
	if from, _, err := s.ReadBackMark(ctx); err != nil || from != 1003 {
		t.Errorf("read-back mark %d, %v; want 1003", from, err)
	}
	// The deleted event's tombstone answers a re-post.
	re := &outbox.Event{ID: "0193a000-0000-7000-8000-000000000006", Type: "journal.updated", EntityID: "solo-5",
		Priority: 5, MaxAttempts: 6, ContentType: outbox.ContentTypeJSON, Payload: []byte(`{"n":5,"s":"é"}`)}
	if n, err := s.Enqueue(ctx, re); err != nil || n != 0 || re.Status != outbox.StatusRemoved {
		t.Errorf("re-post of the deleted event: %d, %s, %v", n, re.Status, err)
	}
}
