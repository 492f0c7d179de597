package boltstore_test

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
	bolt "go.etcd.io/bbolt"
)

// TestMigrateLayout1 rewrites a store file into layout version 1 (the
// by_user and by_status indexes and four counters of the first release)
// and opens it: Open rebuilds the indexes and counters of version 2 from
// the records, and the store works on.
func TestMigrateLayout1(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	path := t.TempDir() + "/outbox.db"
	opts := &boltstore.Options{Now: clk.Now, StaleAfter: time.Minute}
	s, err := boltstore.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	var all []*outbox.Event
	for i := range 40 {
		e := userEv([]string{"", "u1", "u2"}[i%3], []string{"", "A", "B"}[i%3], i%10)
		mustEnqueue(t, s, e)
		all = append(all, e)
	}
	heads, _ := due(t, s, t0, 100)
	complete(t, s, t0, heads[:4]...)
	fail(t, s, boltstore.Failure{Seq: heads[4].Seq, At: t0, Err: "x", Permanent: true})
	clk.Advance(2 * time.Minute)
	want := mustStats(t, s)
	for i, e := range all {
		all[i] = mustGet(t, s, e.ID)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

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
		for _, e := range all {
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

	s = mustOpenPath(t, path, opts)
	assertInvariants(t, s)
	got := mustStats(t, s)
	if tallyOf(got) != tallyOf(want) || got.Bytes != want.Bytes || got.PendingByPriority != want.PendingByPriority || got.Stale != want.Stale {
		t.Errorf("after migration: %s, before %s", fmtStats(got), fmtStats(want))
	}
	for _, e := range all {
		assertEventEqual(t, e, mustGet(t, s, e.ID))
	}
	if p, err := s.List(ctx, boltstore.Query{UserID: "u1", Status: outbox.StatusPending}); err != nil || len(p.Events) == 0 {
		t.Errorf("list after migration: %d, %v", len(p.Events), err)
	}
	mustEnqueue(t, s, userEv("u1", "A", 0))
}
