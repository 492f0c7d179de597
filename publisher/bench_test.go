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
// per event, as the relay sends them. "own" is the publisher's async path
// (PublishAsync), "nats.go" jetstream's PublishMsgAsync on the same messages,
// its futures awaited as they are (no adapter in between). The server runs
// in the benchmark's
// process: allocs/op and cpu-ns/msg (the process's CPU time per message)
// count its work too, the same for both.
func BenchmarkPublishAsync(b *testing.B) {
	type wait func() error // waits for the answer to one publish
	for _, path := range []struct {
		name    string
		publish func(p *publisher.Publisher, e *outbox.Event) (wait, error)
	}{
		{"own", func(p *publisher.Publisher, e *outbox.Event) (wait, error) {
			answer, err := p.PublishAsync(e, 1)
			return func() error { return (<-answer).Err }, err
		}},
		{"nats.go", func(p *publisher.Publisher, e *outbox.Event) (wait, error) {
			f, err := publisher.PublishMsgAsync(p, e, 1)
			if err != nil {
				return nil, err
			}
			return func() error {
				select {
				case <-f.Ok():
					return nil
				case err := <-f.Err():
					return err
				}
			}, nil
		}},
	} {
		b.Run(path.name, func(b *testing.B) {
			ns := natstest.Start(b)
			p, err := publisher.Connect(publisher.Config{URL: ns.URL(), SubjectPrefix: "bench", Stream: publisher.StreamConfig{Manage: true, Name: "BENCH"}})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
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
			waits := make([]wait, 0, b.N)
			b.ReportAllocs()
			cpu := cpuTime(b)
			b.ResetTimer()
			for _, e := range events {
				for {
					w, err := path.publish(p, e)
					if err == nil {
						waits = append(waits, w)
						break
					}
					if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
						b.Fatal(err)
					}
				}
			}
			// Every publish is answered within PublishTimeout (5s): an ack
			// or an error, ErrAsyncPublishTimeout at the latest.
			for _, w := range waits {
				if err := w(); err != nil {
					b.Fatal(err)
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
