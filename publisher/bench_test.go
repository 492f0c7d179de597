package publisher_test

import (
	"errors"
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
// per event, as the relay sends them.
func BenchmarkPublishAsync(b *testing.B) {
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
	js := p.JetStream()
	futures := make([]jetstream.PubAckFuture, 0, b.N)
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
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("acks still pending after 1m")
	}
	b.StopTimer()
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
