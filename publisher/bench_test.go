package publisher_test

import (
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/internal/natstest"
	"github.com/fitiqcore/outbox/publisher"
	"github.com/nats-io/nats.go/jetstream"
)

// BenchmarkPublishAsync: the relay's publish path, one event after the
// other through PublishAsync (CloudEvents headers, Nats-Msg-Id) with the
// default 4096 publishes in flight, into a file-backed R1 stream; timed from
// the first publish to the last ack. 256-byte payloads, an entity and a user
// per event, as the relay sends them. "own" is the publisher's async path,
// "nats.go" jetstream's PublishMsgAsync. The server runs in the benchmark's
// process: allocs/op and cpu-ns/msg (the process's CPU time per message)
// count its work too, the same for both.
func BenchmarkPublishAsync(b *testing.B) {
	for _, path := range []struct {
		name string
		set  func(*publisher.Publisher)
	}{
		{"own", func(*publisher.Publisher) {}},
		{"nats.go", publisher.ViaJetStream},
	} {
		b.Run(path.name, func(b *testing.B) {
			ns := natstest.Start(b)
			p, err := publisher.Connect(publisher.Config{URL: ns.URL(), SubjectPrefix: "bench", Stream: publisher.StreamConfig{Manage: true, Name: "BENCH"}})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			path.set(p)
			if err := p.Ready(b.Context()); err != nil {
				b.Fatal(err)
			}
			payload := make([]byte, 256)
			events := make([]*outbox.Event, b.N) // ids made before the clock starts, as the relay's are
			for i := range events {
				e := &outbox.Event{Type: "bench.publish", EntityID: "entity", UserID: "user", Payload: payload, CreatedAt: time.Now()}
				if err := e.Prepare(outbox.Options{}); err != nil {
					b.Fatal(err)
				}
				events[i] = e
			}
			futures := make([]jetstream.PubAckFuture, 0, b.N)
			b.ReportAllocs()
			cpu := cpuTime(b)
			b.ResetTimer()
			for _, e := range events {
				for {
					f, err := p.PublishAsync(e, 1)
					if err == nil {
						futures = append(futures, f)
						break
					}
					if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
						b.Fatal(err)
					}
				}
			}
			timeout := time.After(time.Minute)
			for _, f := range futures {
				select {
				case <-f.Ok():
				case err := <-f.Err():
					b.Fatal(err)
				case <-timeout:
					b.Fatal("acks still pending after 1m")
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			b.ReportMetric(float64((cpuTime(b)-cpu).Nanoseconds())/float64(b.N), "cpu-ns/msg")
		})
	}
}

// cpuTime is the CPU time (user and system) the process has used: with the
// server in the same process, a benchmark's CPU per message is the client's
// and the server's together, steadier than a rate on a shared machine.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
