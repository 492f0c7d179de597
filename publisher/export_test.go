package publisher

import "time"

// SetFetchWait sets how long the i-th fetch of a read-back waits for
// messages, so that a test can let fetches expire while messages remain, as
// on a slow server.
func SetFetchWait(p *Publisher, wait func(i int) time.Duration) { p.fetchWait = wait }

// ViaJetStream makes PublishAsync use nats.go's PublishMsgAsync, as before
// the publisher had an async path of its own, so that the two can be compared.
func ViaJetStream(p *Publisher) { p.viaJetStream = true }
