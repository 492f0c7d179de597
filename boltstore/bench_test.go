package boltstore_test

import (
	"context"
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

// BenchmarkEnqueueSingle: one goroutine, one event per EnqueueTx transaction.
func BenchmarkEnqueueSingle(b *testing.B) {
	s := mustOpen(b, nil)
	for b.Loop() {
		e := benchEvent(0)
		if err := s.DB().Update(func(tx *bolt.Tx) error {
			_, err := s.EnqueueTx(tx, e)
			return err
		}); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b, b.N)
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

// BenchmarkDue: read a batch of 1000 ready events from a store of 100k.
func BenchmarkDue(b *testing.B) {
	const batch = 1000
	s := mustOpen(b, nil)
	preload(b, s, 100_000)
	ctx := context.Background()
	now := time.Now()
	for b.Loop() {
		es, _, err := s.Due(ctx, now, batch, nil)
		if err != nil || len(es) != batch {
			b.Fatalf("due: %d events, %v", len(es), err)
		}
	}
	reportRate(b, b.N*batch)
}

// BenchmarkComplete: complete ready events in batches of 1000.
func BenchmarkComplete(b *testing.B) {
	const batch = 1000
	s := mustOpen(b, nil)
	ctx := context.Background()
	queue := preload(b, s, 100_000)
	acks := make([]boltstore.Ack, batch)
	now := time.Now()
	for b.Loop() {
		if len(queue) < batch {
			b.StopTimer()
			queue = preload(b, s, 100_000)
			b.StartTimer()
		}
		for i := range acks {
			acks[i] = boltstore.Ack{Seq: queue[i], At: now}
		}
		queue = queue[batch:]
		if err := s.Complete(ctx, acks); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b, b.N*batch)
}
