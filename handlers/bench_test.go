package handlers_test

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/handlers"
)

// BenchmarkRouter measures handled events per second for a no-op handler:
// fetch, decode, route, ack (DoubleAck), over a backlog of b.N events spread
// over 256 entities.
func BenchmarkRouter(b *testing.B) {
	for _, workers := range []int{1, 8} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			v := newEnv(b, false)
			ctx := context.Background()
			const window = 1000
			for i := 0; i < b.N; i += window {
				for j := i; j < min(i+window, b.N); j++ {
					e := event(b, "bench.noop", "entity-"+strconv.Itoa(j%256), uint64(j/256+1))
					if _, err := v.js.PublishMsgAsync(e.Message(prefix, "", 1, nil)); err != nil {
						b.Fatal(err)
					}
				}
				select {
				case <-v.js.PublishAsyncComplete():
				case <-time.After(30 * time.Second):
					b.Fatal("publishing the backlog timed out")
				}
			}

			var handled atomic.Int64
			all := make(chan struct{})
			r := v.router("bench", handlers.WithWorkers(workers))
			r.HandleFunc(handlers.MatchAll, func(context.Context, *outbox.Event) error {
				if handled.Add(1) == int64(b.N) {
					close(all)
				}
				return nil
			})
			runCtx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			b.ResetTimer()
			began := time.Now()
			go func() { done <- r.Run(runCtx) }()
			select {
			case <-all:
			case err := <-done:
				b.Fatalf("Run: %v", err)
			}
			elapsed := time.Since(began)
			b.StopTimer()
			cancel()
			if err := <-done; err != nil {
				b.Fatalf("Run: %v", err)
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
		})
	}
}
