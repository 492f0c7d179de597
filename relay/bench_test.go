package relay_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
	"github.com/fitiqcore/outbox/internal/natstest"
	"github.com/fitiqcore/outbox/publisher"
	"github.com/fitiqcore/outbox/relay"
	bolt "go.etcd.io/bbolt"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// BenchmarkDrain relays a preloaded backlog of b.N events (256-byte payloads,
// 1000 entities) end to end: read, publish, ack, completion written. The
// figure is events/s from the relay's start to the last completion.
func BenchmarkDrain(b *testing.B) { benchDrain(b, nil) }

// BenchmarkDrainTraced is BenchmarkDrain with tracing on: every event
// carries a trace context and every publish makes a span, sampled and
// exported in batches (to an exporter that drops them: the relay's cost,
// not a collector's).
func BenchmarkDrainTraced(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	defer tp.Shutdown(context.Background())
	benchDrain(b, tp)
}

func benchDrain(b *testing.B, tp trace.TracerProvider) {
	ns := natstest.Start(b)
	store, err := boltstore.Open(filepath.Join(b.TempDir(), "outbox.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	payload := make([]byte, 256)
	const chunk = 1000
	for i := 0; i < b.N; i += chunk {
		var evs []*outbox.Event
		for j := i; j < min(i+chunk, b.N); j++ {
			e := &outbox.Event{Type: "bench.drain", EntityID: fmt.Sprintf("e%d", j), Payload: payload}
			if tp != nil {
				e.TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
			}
			evs = append(evs, e)
		}
		if _, err := store.Enqueue(context.Background(), evs...); err != nil {
			b.Fatal(err)
		}
	}
	pub, err := publisher.Connect(publisher.Config{URL: ns.URL(), SubjectPrefix: "bench", Stream: publisher.StreamConfig{Manage: true, Name: "BENCH"}})
	if err != nil {
		b.Fatal(err)
	}
	defer pub.Close()
	if err := pub.Ready(context.Background()); err != nil {
		b.Fatal(err)
	}
	var mu sync.Mutex
	completed := 0
	done := make(chan struct{})
	r, err := relay.New(store, pub, relay.Config{TracerProvider: tp, Observer: func(o relay.Outcome) {
		mu.Lock()
		if o.Kind == relay.Published {
			completed++
			if completed == b.N {
				close(done)
			}
		}
		mu.Unlock()
	}})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.ResetTimer()
	runErr := make(chan error, 1)
	go func() { runErr <- r.Run(ctx) }()
	<-done
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	cancel()
	if err := <-runErr; err != nil {
		b.Fatal(err)
	}
}

// BenchmarkCommitToAck measures the latency the relay adds on a quiet day:
// one event committed at a time, timed from its commit to the completion of
// its JetStream ack. The relay is woken by the commit, never by a timer.
func BenchmarkCommitToAck(b *testing.B) {
	ns := natstest.Start(b)
	store, err := boltstore.Open(filepath.Join(b.TempDir(), "outbox.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	pub, err := publisher.Connect(publisher.Config{URL: ns.URL(), SubjectPrefix: "bench", Stream: publisher.StreamConfig{Manage: true, Name: "BENCH"}})
	if err != nil {
		b.Fatal(err)
	}
	defer pub.Close()
	acked := make(chan time.Time, 1)
	r, err := relay.New(store, pub, relay.Config{Observer: func(o relay.Outcome) {
		if o.Kind == relay.Published {
			acked <- o.Done
		}
	}})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- r.Run(ctx) }()
	if err := pub.Ready(ctx); err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 256)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		var committed time.Time
		err := store.DB().Update(func(tx *bolt.Tx) error {
			_, err := store.EnqueueTx(tx, &outbox.Event{Type: "bench.latency", Payload: payload})
			return err
		})
		committed = time.Now()
		if err != nil {
			b.Fatal(err)
		}
		done := <-acked
		lat = append(lat, done.Sub(committed))
	}
	b.StopTimer()
	cancel()
	if err := <-runErr; err != nil {
		b.Fatal(err)
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(pct(0.5), "p50_ms")
	b.ReportMetric(pct(0.99), "p99_ms")
	b.ReportMetric(pct(0.999), "p999_ms")
}
