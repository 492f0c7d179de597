package boltstore_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/fitiqcore/outbox/internal/poll"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
	bolt "go.etcd.io/bbolt"
)

func TestSweepOnceRetention(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	s := mustOpen(t, &boltstore.Options{Now: clk.Now, Retention: time.Hour})
	s.DB().NoSync = true
	old := enqueueMany(t, s, 2500, func(i int) *outbox.Event { return userEv([]string{"a", "b"}[i%2], "", 0) })
	completeAll(t, s, old, clk.Now())
	clk.Advance(30 * time.Minute)
	young := enqueueMany(t, s, 10, func(int) *outbox.Event { return ev("r", "", 0) })
	completeAll(t, s, young[:5], clk.Now())
	if n, err := s.SweepOnce(ctx); err != nil || n != 0 {
		t.Fatalf("nothing old enough yet: %d, %v", n, err)
	}
	clk.Advance(31 * time.Minute) // old: 61m, young: 31m
	n, err := s.SweepOnce(ctx)
	if err != nil || n != 2500 {
		t.Fatalf("sweep: %d deleted, %v; want 2500 (in three transactions)", n, err)
	}
	if st := mustStats(t, s); tallyOf(st) != (tally{Total: 10, Pending: 5, Completed: 5}) {
		t.Errorf("after the sweep: %s", fmtStats(st))
	}
	if st := mustUserStats(t, s, "a"); st.Total != 0 {
		t.Errorf("user a: %s", fmtStats(st))
	}
	assertInvariants(t, s)
}

func TestRetentionNegativeKeeps(t *testing.T) {
	clk := newClock()
	s := mustOpen(t, &boltstore.Options{Now: clk.Now, Retention: -1})
	e := ev("r", "", 0)
	mustEnqueue(t, s, e)
	complete(t, s, t0, e)
	clk.Advance(1000 * time.Hour)
	if n, err := s.SweepOnce(context.Background()); err != nil || n != 0 {
		t.Fatalf("sweep: %d, %v", n, err)
	}
	mustGet(t, s, e.ID)
}

// TestRunRetention runs the background sweep in a goroutine with a fake
// clock: completed events go once they are older than the retention, the
// stale counters follow the clock, and the sweep ends with its context.
func TestRunRetention(t *testing.T) {
	clk := newClock()
	s := mustOpen(t, &boltstore.Options{Now: clk.Now, Retention: time.Hour, StaleAfter: time.Minute})
	done, pending := ev("r", "", 0), ev("r", "", 0)
	mustEnqueue(t, s, done, pending)
	complete(t, s, clk.Now(), done)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.RunRetention(ctx, 10*time.Millisecond) }()
	clk.Advance(2 * time.Hour)
	poll.Until(t, 5*time.Second, "the completed event deleted", func() bool {
		_, err := s.Get(context.Background(), done.ID)
		return errors.Is(err, boltstore.ErrNotFound)
	})
	poll.Until(t, 5*time.Second, "the stale sweep", func() bool {
		raw, err := readRaw(s.DB())
		return err == nil && raw.counts.stale == 1
	})
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("RunRetention: %v, want nil when ctx ends", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("RunRetention did not return after cancel")
	}
	mustGet(t, s, pending.ID)
}

func completeAll(t testing.TB, s *boltstore.Store, es []*outbox.Event, at time.Time) {
	t.Helper()
	acks := make([]boltstore.Ack, len(es))
	for i, e := range es {
		acks[i] = boltstore.Ack{Seq: e.Seq, At: at}
	}
	if err := s.Complete(context.Background(), acks); err != nil {
		t.Fatal(err)
	}
}

// TestFileStopsGrowing runs a steady load on a store file: each cycle
// enqueues 300 events of 1 KiB, completes them, moves the clock 30s on and
// sweeps with a retention of 1m (and an idempotency window of 1m), so that
// about three cycles of events (and four of tombstones) are stored at any time. bbolt reuses the pages retention frees. What it
// asserts: after a warm-up, the database's high-water mark (Tx.Size: the
// pages in use up to the last allocated one, which the file size, grown in
// 16 MiB steps, would hide) grows by at most 1% over ten times as many
// cycles, and the file size not at all; a control run without the sweep
// grows by the data it keeps.
func TestFileStopsGrowing(t *testing.T) {
	if testing.Short() {
		t.Skip("a few seconds of load")
	}
	payload := make([]byte, 1024)
	run := func(t *testing.T, warmup, cycles int, sweep bool) (warmHWM, hwm, warmFile, file int64) {
		ctx := context.Background()
		clk := newClock()
		// The ids of removed events are kept for the idempotency window:
		// a minute here, so that the steady state is reached in the test.
		s := mustOpen(t, &boltstore.Options{Now: clk.Now, Retention: time.Minute, IdempotencyWindow: time.Minute})
		s.DB().NoSync = true // page reuse does not depend on fsync
		cycle := func() {
			es := enqueueMany(t, s, 300, func(i int) *outbox.Event {
				e := userEv([]string{"a", "b", "c"}[i%3], "", i%10)
				e.Payload = payload
				return e
			})
			completeAll(t, s, es, clk.Now())
			clk.Advance(30 * time.Second)
			if sweep {
				if _, err := s.SweepOnce(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
		size := func() int64 {
			var n int64
			if err := s.DB().View(func(tx *bolt.Tx) error { n = tx.Size(); return nil }); err != nil {
				t.Fatal(err)
			}
			return n
		}
		for range warmup {
			cycle()
		}
		warmHWM, warmFile = size(), fileSize(t, s.Path())
		for range cycles {
			cycle()
		}
		return warmHWM, size(), warmFile, fileSize(t, s.Path())
	}
	warmHWM, hwm, warmFile, file := run(t, 10, 100, true)
	t.Logf("with retention: high-water mark %d bytes after the warm-up, %d after 100 more cycles (30,000 events); file %d, %d",
		warmHWM, hwm, warmFile, file)
	if hwm > warmHWM+warmHWM/100 || file != warmFile {
		t.Errorf("under steady load the store grew from %d to %d bytes (file %d to %d)", warmHWM, hwm, warmFile, file)
	}
	cWarm, cHWM, _, _ := run(t, 10, 10, false)
	t.Logf("control, without retention: high-water mark %d after the warm-up, %d after 10 more cycles", cWarm, cHWM)
	if cHWM < cWarm+3000*1024 {
		t.Errorf("the control grew only from %d to %d bytes: the measure is blind", cWarm, cHWM)
	}
}

// TestBackup takes a hot copy while producers write, opens it as a store,
// and finds it consistent and holding every event committed before it.
func TestBackup(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t, nil)
	s.DB().NoSync = true
	before := enqueueMany(t, s, 3000, func(i int) *outbox.Event { return userEv("u", "", i%10) })
	completeAll(t, s, before[:1000], time.Now())
	want := mustStats(t, s)
	stop := make(chan struct{})
	writerDone := make(chan struct{})
	go func() { // concurrent writes must not disturb the copy
		defer close(writerDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := s.Enqueue(ctx, ev("b", "", 0)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	path := t.TempDir() + "/backup.db"
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := s.Backup(ctx, f)
	close(stop)
	<-writerDone
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Size() != n {
		t.Errorf("Backup returned %d bytes, the file has %d", n, fi.Size())
	}
	b := mustOpenPath(t, path, nil)
	got := mustStats(t, b)
	if got.Total < want.Total || got.Completed != want.Completed {
		t.Errorf("backup stats %s, before it %s", fmtStats(got), fmtStats(want))
	}
	for _, e := range before {
		assertEventEqual(t, mustGet(t, s, e.ID), mustGet(t, b, e.ID))
	}
	assertInvariants(t, b)

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Backup(cctx, &discard{}); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled backup: %v", err)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func TestCompact(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	src, dst := dir+"/outbox.db", dir+"/compact.db"
	s, err := boltstore.Open(src, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.DB().NoSync = true
	es := enqueueMany(t, s, 20_000, func(int) *outbox.Event {
		e := ev("c", "", 0)
		e.Payload = make([]byte, 512)
		return e
	})
	if _, err := s.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	keep := ev("c", "K", 0)
	mustEnqueue(t, s, keep)
	if err := boltstore.Compact(ctx, src, dst); !errors.Is(err, boltstore.ErrLocked) {
		t.Errorf("compact of an open store: %v, want ErrLocked", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := boltstore.Compact(ctx, src, dst); err != nil {
		t.Fatal(err)
	}
	if err := boltstore.Compact(ctx, src, dst); !errors.Is(err, os.ErrExist) {
		t.Errorf("compact onto an existing file: %v, want ErrExist", err)
	}
	srcSize, dstSize := fileSize(t, src), fileSize(t, dst)
	t.Logf("%d events deleted: %d bytes compacted to %d", len(es), srcSize, dstSize)
	if dstSize*4 > srcSize {
		t.Errorf("compacted %d bytes to %d", srcSize, dstSize)
	}
	c := mustOpenPath(t, dst, nil)
	assertEventEqual(t, keep, mustGet(t, c, keep.ID))
	if st := mustStats(t, c); st.Total != 1 {
		t.Errorf("compacted store: %s", fmtStats(st))
	}
	next := ev("c", "K", 0)
	mustEnqueue(t, c, next)
	if next.EntitySeq != 2 {
		t.Errorf("entity sequence after compaction: %d", next.EntitySeq)
	}
}

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}
