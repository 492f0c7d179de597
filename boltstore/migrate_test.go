package boltstore_test

import (
	"context"
	"encoding/binary"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
	bolt "go.etcd.io/bbolt"
)

// v2Snapshot is what a layout-2 file holds, read through the store before
// its migration is tested: every event, the statistics and the due events.
type v2Snapshot struct {
	events []*outbox.Event
	stats  boltstore.Stats
	due    []uint64
}

// checkMigrated compares a migrated store with what the events must be:
// every one, field for field, the statistics, and the due set; then the
// store goes on working.
func checkMigrated(t *testing.T, s *boltstore.Store, want []*outbox.Event, wantStats boltstore.Stats, wantDue []uint64) {
	t.Helper()
	ctx := context.Background()
	assertInvariants(t, s)
	got := mustStats(t, s)
	if tallyOf(got) != tallyOf(wantStats) || got.PendingByPriority != wantStats.PendingByPriority {
		t.Errorf("after migration: %s, before %s", fmtStats(got), fmtStats(wantStats))
	}
	for _, e := range want {
		assertEventEqual(t, e, mustGet(t, s, e.ID))
	}
	es, _ := due(t, s, snapshotTime, 1000)
	if !slices.Equal(seqs(es), wantDue) {
		t.Errorf("due after migration %v, before %v", seqs(es), wantDue)
	}
	if p, err := s.List(ctx, boltstore.Query{UserID: "alice", Status: outbox.StatusPending}); err != nil || len(p.Events) == 0 {
		t.Errorf("list after migration: %d, %v", len(p.Events), err)
	}
	// The store works on: the due events complete, their entities go on.
	acks := make([]boltstore.Ack, len(es))
	for i, e := range es {
		acks[i] = boltstore.Ack{Seq: e.Seq, At: time.Now()}
	}
	if err := s.Complete(ctx, acks); err != nil {
		t.Fatal(err)
	}
	next := ev("journal.updated", "entity-1", 0)
	mustEnqueue(t, s, next)
	assertInvariants(t, s)
}

// TestMigrateLayout2 opens a copy of a real layout-2 file (testdata: written
// by the code before layout 3) and finds it migrated in place: a backup of
// the file beside it, every event unchanged, the same statistics and due
// events, the ids of removed events, the read-back mark and the entities'
// sequences kept.
func TestMigrateLayout2(t *testing.T) {
	ctx := context.Background()
	opts := &boltstore.Options{Retention: -1, EntityHorizon: -1}
	want := snapshotOfRaw(t, "testdata/layout-v2.db")
	path := copyFile(t, "testdata/layout-v2.db")
	s := mustOpenPath(t, path, opts)
	if _, err := os.Stat(boltstore.BackupPath(path, 2)); err != nil {
		t.Fatalf("no backup beside the migrated file: %v", err)
	}
	if from, _, err := s.ReadBackMark(ctx); err != nil || from != 1003 {
		t.Errorf("read-back mark %d, %v; want 1003", from, err)
	}
	re := &outbox.Event{ID: "0193a000-0000-7000-8000-000000000006", Type: "journal.updated", EntityID: "solo-5",
		Priority: 5, MaxAttempts: 6, ContentType: outbox.ContentTypeJSON, Payload: []byte(`{"n":5,"s":"é"}`)}
	if n, err := s.Enqueue(ctx, re); err != nil || n != 0 || re.Status != outbox.StatusRemoved {
		t.Errorf("re-post of the event removed before the migration: %d, %s, %v", n, re.Status, err)
	}
	checkMigrated(t, s, want.events, want.stats, want.due)
	// entity-3's chain goes on after its last sequence of layout 2.
	last := uint64(0)
	for _, e := range want.events {
		if e.EntityID == "entity-3" {
			last = max(last, e.EntitySeq)
		}
	}
	e := ev("journal.updated", "entity-3", 0)
	mustEnqueue(t, s, e)
	if e.EntitySeq != last+1 {
		t.Errorf("entity-3 went on at entity_seq %d, want %d", e.EntitySeq, last+1)
	}
	// The backup is the untouched layout-2 file: it migrates again.
	again := mustOpenPath(t, copyFile(t, boltstore.BackupPath(path, 2)), opts)
	if st := mustStats(t, again); tallyOf(st) != tallyOf(want.stats) {
		t.Errorf("backup holds %s", fmtStats(st))
	}
}

// snapshotOfRaw reads a layout-2 file's events, statistics and ready set
// without the store: what the migration must reproduce.
func snapshotOfRaw(t *testing.T, path string) v2Snapshot {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var snap v2Snapshot
	err = db.View(func(tx *bolt.Tx) error {
		if err := tx.Bucket([]byte("events")).ForEach(func(k, v []byte) error {
			e, err := boltstore.DecodeV2ForTest(v)
			if err != nil {
				return err
			}
			snap.events = append(snap.events, e)
			return nil
		}); err != nil {
			return err
		}
		c, err := decodeRawCounts(tx.Bucket([]byte("meta")).Get([]byte("stats")), true)
		if err != nil {
			return err
		}
		snap.stats = boltstore.Stats{Pending: c.status[0], Processing: c.status[1], Completed: c.status[2], Failed: c.status[3],
			PendingByPriority: c.prio}
		snap.stats.Total = c.total()
		// Due at the snapshot's time: the ready heads, highest priority
		// first, then seq; and the delayed heads due by then.
		type due struct {
			prio int
			seq  uint64
		}
		var ds []due
		ready := tx.Bucket([]byte("ready"))
		for p := 9; p >= 0; p-- {
			ready.Bucket([]byte{byte('0' + p)}).ForEach(func(k, _ []byte) error {
				ds = append(ds, due{p, binary.BigEndian.Uint64(k)})
				return nil
			})
		}
		lim := uint64(snapshotTime.UnixNano())
		tx.Bucket([]byte("delayed")).ForEach(func(k, _ []byte) error {
			if binary.BigEndian.Uint64(k) <= lim {
				seq := binary.BigEndian.Uint64(k[8:])
				for _, e := range snap.events {
					if e.Seq == seq {
						ds = append(ds, due{e.Priority, seq})
					}
				}
			}
			return nil
		})
		slices.SortFunc(ds, func(a, b due) int {
			if a.prio != b.prio {
				return b.prio - a.prio
			}
			return int(a.seq) - int(b.seq)
		})
		for _, d := range ds {
			snap.due = append(snap.due, d.seq)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Open turns a processing event back into a pending one, ready when it
	// heads its entity, as every layout did.
	for _, e := range snap.events {
		if e.Status == outbox.StatusProcessing {
			e.Status = outbox.StatusPending
			snap.stats.Processing--
			snap.stats.Pending++
			snap.stats.PendingByPriority[e.Priority]++
			snap.due = append(snap.due, e.Seq)
		}
	}
	slices.SortFunc(snap.due, func(a, b uint64) int {
		if pa, pb := prioOf(snap, a), prioOf(snap, b); pa != pb {
			return pb - pa
		}
		return int(a) - int(b)
	})
	if len(snap.events) != 269 || len(snap.due) == 0 {
		t.Fatalf("snapshot of %s: %d events, %d due", path, len(snap.events), len(snap.due))
	}
	return snap
}

// TestMigrateLayout1 turns the layout-2 file into layout 1 (the by_user and
// by_status indexes and four counters of the first release, no user
// indexes by status, no by_type) and opens it: Open migrates it to layout 3,
// rebuilding the derived indexes and counters from the records.
func TestMigrateLayout1(t *testing.T) {
	want := snapshotOfRaw(t, "testdata/layout-v2.db")
	path := copyFile(t, "testdata/layout-v2.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range []string{"by_user_status", "by_user", "by_type", "user_counts", "by_status"} {
			if err := tx.DeleteBucket([]byte(name)); err != nil {
				return err
			}
		}
		byStatus, err := tx.CreateBucket([]byte("by_status"))
		if err != nil {
			return err
		}
		byUser, err := tx.CreateBucket([]byte("by_user"))
		if err != nil {
			return err
		}
		var counts [4]int64
		for _, e := range want.events {
			code := statusCode[e.Status]
			counts[code]++
			if err := byStatus.Put(binary.BigEndian.AppendUint64([]byte{code}, e.Seq), nil); err != nil {
				return err
			}
			k := binary.BigEndian.AppendUint16(nil, uint16(len(e.UserID)))
			k = binary.BigEndian.AppendUint64(append(k, e.UserID...), e.Seq)
			if err := byUser.Put(k, nil); err != nil {
				return err
			}
		}
		meta := tx.Bucket([]byte("meta"))
		var c []byte
		for _, n := range counts {
			c = binary.BigEndian.AppendUint64(c, uint64(n))
		}
		for _, kv := range [][2][]byte{{[]byte("counts"), c}, {[]byte("version"), binary.BigEndian.AppendUint64(nil, 1)}} {
			if err := meta.Put(kv[0], kv[1]); err != nil {
				return err
			}
		}
		for _, k := range []string{"stats", "stale_mark"} {
			if err := meta.Delete([]byte(k)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s := mustOpenPath(t, path, &boltstore.Options{Retention: -1, EntityHorizon: -1})
	if _, err := os.Stat(boltstore.BackupPath(path, 1)); err != nil {
		t.Errorf("no backup beside the migrated file: %v", err)
	}
	checkMigrated(t, s, want.events, want.stats, want.due)
}

// snapshotTime is when the due events are read: some delayed ones are due.
var snapshotTime = time.Date(2026, 11, 30, 12, 20, 0, 0, time.UTC)

func prioOf(snap v2Snapshot, seq uint64) int {
	for _, e := range snap.events {
		if e.Seq == seq {
			return e.Priority
		}
	}
	return -1
}
