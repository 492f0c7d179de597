package boltstore_test

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
	bolt "go.etcd.io/bbolt"
)

var benchPayload = make([]byte, 256)

func benchEvent(prio int) *outbox.Event {
	return &outbox.Event{Type: "bench.event", Priority: prio, Payload: benchPayload}
}

func reportRate(b *testing.B, events int) {
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
}

// cpuMeter adds up the process's CPU time (user and system) around the
// measured calls: on a shared machine it varies less than the wall time. It
// leaves out fsync waits, and includes GC and bbolt's goroutines.
type cpuMeter struct {
	total, start time.Duration
	n            int
}

func (m *cpuMeter) begin() { m.start = cpuTime() }
func (m *cpuMeter) end()   { m.total += cpuTime() - m.start; m.n++ }

func (m *cpuMeter) report(b *testing.B) {
	if m.n > 0 && m.total > 0 {
		b.ReportMetric(float64(m.total)/float64(m.n)/1e3, "cpu-µs/op")
	}
}

// BenchmarkEnqueueSingle: one goroutine, one event per EnqueueTx transaction.
func BenchmarkEnqueueSingle(b *testing.B) {
	s := mustOpen(b, nil)
	var cpu cpuMeter
	for b.Loop() {
		e := benchEvent(0)
		cpu.begin()
		if err := s.DB().Update(func(tx *bolt.Tx) error {
			_, err := s.EnqueueTx(tx, e)
			return err
		}); err != nil {
			b.Fatal(err)
		}
		cpu.end()
	}
	reportRate(b, b.N)
	cpu.report(b)
}

// BenchmarkEnqueueGroupCommit: 64 producers through Enqueue, sharing commits.
func BenchmarkEnqueueGroupCommit(b *testing.B) {
	s := mustOpen(b, nil)
	ctx := context.Background()
	b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
	var mu sync.Mutex
	var lat []time.Duration
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		for pb.Next() {
			start := time.Now()
			if _, err := s.Enqueue(ctx, benchEvent(0)); err != nil {
				b.Error(err)
				return
			}
			mine = append(mine, time.Since(start))
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	b.StopTimer()
	reportRate(b, b.N)
	if len(lat) > 0 {
		slices.Sort(lat)
		pct := func(p float64) float64 {
			return float64(lat[int(p*float64(len(lat)-1))]) / float64(time.Millisecond)
		}
		b.ReportMetric(pct(0.50), "p50_ms")
		b.ReportMetric(pct(0.99), "p99_ms")
	}
}

// preload enqueues n events of mixed priorities in large transactions and
// returns their seqs.
func preload(b *testing.B, s *boltstore.Store, n int) []uint64 {
	b.Helper()
	const perTx = 10000
	out := make([]uint64, 0, n)
	for done := 0; done < n; done += perTx {
		es := make([]*outbox.Event, min(perTx, n-done))
		for i := range es {
			es[i] = benchEvent((done + i) % 10)
		}
		if err := s.DB().Update(func(tx *bolt.Tx) error {
			_, err := s.EnqueueTx(tx, es...)
			return err
		}); err != nil {
			b.Fatal(err)
		}
		for _, e := range es {
			out = append(out, e.Seq)
		}
	}
	return out
}

// BenchmarkDue: read a batch of 1000 ready events from a store of 100k;
// the /users cases spread them over 100 users, FIFO and with
// FairnessUser (round-robin across users within a priority).
func BenchmarkDue(b *testing.B) {
	b.Run("fifo", func(b *testing.B) { benchDue(b, boltstore.FairnessFIFO, 0) })
	b.Run("fifo-users", func(b *testing.B) { benchDue(b, boltstore.FairnessFIFO, 100) })
	b.Run("fair-users", func(b *testing.B) { benchDue(b, boltstore.FairnessUser, 100) })
}

func benchDue(b *testing.B, fairness boltstore.Fairness, users int) {
	const batch = 1000
	s := mustOpen(b, &boltstore.Options{Fairness: fairness})
	if users == 0 {
		preload(b, s, 100_000)
	} else {
		for done := 0; done < 100_000; done += 10_000 {
			es := make([]*outbox.Event, 10_000)
			for i := range es {
				es[i] = benchEvent((done + i) % 10)
				es[i].UserID = fmt.Sprint("user-", (done+i)%users)
			}
			if err := s.DB().Update(func(tx *bolt.Tx) error {
				_, err := s.EnqueueTx(tx, es...)
				return err
			}); err != nil {
				b.Fatal(err)
			}
		}
	}
	ctx := context.Background()
	now := time.Now()
	var cpu cpuMeter
	for b.Loop() {
		cpu.begin()
		es, _, err := s.Due(ctx, now, batch, nil)
		cpu.end()
		if err != nil || len(es) != batch {
			b.Fatalf("due: %d events, %v", len(es), err)
		}
	}
	reportRate(b, b.N*batch)
	cpu.report(b)
}

// BenchmarkComplete: complete ready events in batches of 1000.
func BenchmarkComplete(b *testing.B) { benchComplete(b, "") }

// BenchmarkCompleteUsers is BenchmarkComplete with events of 100 users:
// each completion also moves the event in by_user_status and the user's
// counters.
func BenchmarkCompleteUsers(b *testing.B) { benchComplete(b, "user-") }

func benchComplete(b *testing.B, user string) {
	const batch = 1000
	s := mustOpen(b, nil)
	ctx := context.Background()
	load := func() []uint64 {
		if user == "" {
			return preload(b, s, 100_000)
		}
		var out []uint64
		for done := 0; done < 100_000; done += 10_000 {
			es := make([]*outbox.Event, 10_000)
			for i := range es {
				es[i] = benchEvent((done + i) % 10)
				es[i].UserID = fmt.Sprint(user, (done+i)%100)
			}
			if err := s.DB().Update(func(tx *bolt.Tx) error {
				_, err := s.EnqueueTx(tx, es...)
				return err
			}); err != nil {
				b.Fatal(err)
			}
			for _, e := range es {
				out = append(out, e.Seq)
			}
		}
		return out
	}
	queue := load()
	acks := make([]boltstore.Ack, batch)
	now := time.Now()
	var cpu cpuMeter
	for b.Loop() {
		if len(queue) < batch {
			b.StopTimer()
			queue = load()
			b.StartTimer()
		}
		for i := range acks {
			acks[i] = boltstore.Ack{Seq: queue[i], At: now}
		}
		queue = queue[batch:]
		cpu.begin()
		if err := s.Complete(ctx, acks); err != nil {
			b.Fatal(err)
		}
		cpu.end()
	}
	reportRate(b, b.N*batch)
	cpu.report(b)
}

// BenchmarkStats reads Stats and UserStats from stores of 1k and 1M events
// (1,000 users; pending, completed and failed ones): the cost must not
// depend on the size. Building the 1M store takes a while.
func BenchmarkStats(b *testing.B) {
	ctx := context.Background()
	for _, size := range []struct {
		name string
		n    int
	}{{"events=1k", 1_000}, {"events=1M", 1_000_000}} {
		s := statsStore(b, size.n)
		b.Run(size.name, func(b *testing.B) {
			b.Run("all", func(b *testing.B) {
				for b.Loop() {
					if _, err := s.Stats(ctx); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("user", func(b *testing.B) {
				i := 0
				for b.Loop() {
					i++
					if _, err := s.UserStats(ctx, fmt.Sprint("user-", i%1000)); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// statsStore builds a store of n events quickly: transactions of 10,000
// events without fsync. A tenth are completed, a hundredth failed, and the
// stale sweep has run.
func statsStore(b *testing.B, n int) *boltstore.Store {
	b.Helper()
	ctx := context.Background()
	s, err := boltstore.Open(filepath.Join(b.TempDir(), "outbox.db"), &boltstore.Options{StaleAfter: time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	s.DB().NoSync = true
	payload := make([]byte, 32)
	const perTx = 10_000
	for done := 0; done < n; done += perTx {
		es := make([]*outbox.Event, min(perTx, n-done))
		for i := range es {
			es[i] = &outbox.Event{Type: "bench.stats", UserID: fmt.Sprint("user-", (done+i)%1000), Priority: (done + i) % 10, Payload: payload}
		}
		if err := s.DB().Update(func(tx *bolt.Tx) error {
			_, err := s.EnqueueTx(tx, es...)
			return err
		}); err != nil {
			b.Fatal(err)
		}
		acks := make([]boltstore.Ack, 0, len(es)/10)
		var fails []boltstore.Failure
		for i, e := range es {
			switch {
			case i%10 == 0:
				acks = append(acks, boltstore.Ack{Seq: e.Seq, At: time.Now()})
			case i%100 == 1:
				fails = append(fails, boltstore.Failure{Seq: e.Seq, At: time.Now(), Err: "x", Permanent: true})
			}
		}
		if err := s.Complete(ctx, acks); err != nil {
			b.Fatal(err)
		}
		if err := s.Fail(ctx, fails); err != nil {
			b.Fatal(err)
		}
	}
	time.Sleep(2 * time.Millisecond)
	if _, err := s.SweepOnce(ctx); err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkEnqueueFeatures: the CPU cost per event of issue 12's features
// at enqueue, in transactions of 1000 (no fsync: the features' own work,
// not the disk's): none; a deliver_at (the head filed as delayed); a trace
// context (two more strings in the record); FairnessUser with 100 users
// (one more index key per ready head).
func BenchmarkEnqueueFeatures(b *testing.B) {
	const perTx = 1000
	later := time.Now().Add(time.Hour)
	for _, bc := range []struct {
		name string
		opts *boltstore.Options
		edit func(e *outbox.Event, i int)
	}{
		{"none", nil, func(e *outbox.Event, i int) { e.UserID = fmt.Sprint("user-", i%100) }},
		{"deliver_at", nil, func(e *outbox.Event, i int) { e.UserID, e.DeliverAt = fmt.Sprint("user-", i%100), later }},
		{"trace", nil, func(e *outbox.Event, i int) {
			e.UserID = fmt.Sprint("user-", i%100)
			e.TraceParent, e.TraceState = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "rojo=00f067aa0ba902b7"
		}},
		{"fair_user", &boltstore.Options{Fairness: boltstore.FairnessUser}, func(e *outbox.Event, i int) { e.UserID = fmt.Sprint("user-", i%100) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := mustOpen(b, bc.opts)
			s.DB().NoSync = true
			var cpu cpuMeter
			n := 0
			for b.Loop() {
				es := make([]*outbox.Event, perTx)
				for i := range es {
					es[i] = benchEvent(0)
					es[i].EntityID = fmt.Sprint("e-", n+i)
					bc.edit(es[i], n+i)
				}
				n += perTx
				cpu.begin()
				if err := s.DB().Update(func(tx *bolt.Tx) error {
					_, err := s.EnqueueTx(tx, es...)
					return err
				}); err != nil {
					b.Fatal(err)
				}
				cpu.end()
			}
			reportRate(b, b.N*perTx)
			cpu.report(b)
		})
	}
}
