package publisher

import (
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/nats-io/nats.go/jetstream"
)

// SetFetchWait sets how long the i-th fetch of a read-back waits for
// messages, so that a test can let fetches expire while messages remain, as
// on a slow server.
func SetFetchWait(p *Publisher, wait func(i int) time.Duration) { p.fetchWait = wait }

// ViaJetStream makes PublishAsync use nats.go's PublishMsgAsync, as before
// the publisher had an async path of its own, so that the two can be compared.
func ViaJetStream(p *Publisher) { p.viaJetStream = true }

// PublishMsgAsync publishes e as PublishAsync does, through nats.go's
// PublishMsgAsync, and returns its future as it is, so that a benchmark can
// compare the two paths without an adapter in between.
func PublishMsgAsync(p *Publisher, e *outbox.Event, attempt int) (jetstream.PubAckFuture, error) {
	return p.js.PublishMsgAsync(p.enc.Message(e, attempt))
}
