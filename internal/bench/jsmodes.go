package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"
)

// A jsMode is one way JetStream takes messages: js_ceiling measures each,
// messages with a unique Nats-Msg-Id and nothing else in their headers, from
// the first publish to the last ack.
type jsMode struct {
	name string
	// dedup: the mode keeps per-message de-duplication by Nats-Msg-Id: a
	// message whose id the stream has seen within its duplicate window is
	// not stored again, and the others of its publish are (see
	// TestPublishModesDeduplication). Only such a mode can stand for the
	// relay's ceiling: the relay re-publishes with the same id whatever it
	// is not sure the stream holds.
	dedup bool
	// how says how it publishes, duplicates what becomes of a duplicate, for
	// the notes.
	how, duplicates string
	// stream turns the mode on in the stream's config.
	stream func(*jetstream.StreamConfig)
	// publish sends msgs on nc and returns when every one is acked, adding
	// to sent as it goes.
	publish func(ctx context.Context, nc *nats.Conn, msgs []*nats.Msg, sent *atomic.Int64) error
}

const (
	atomicBatchSize     = 1000 // the server's limit per atomic batch (ADR-50)
	atomicBatchInFlight = 4    // concurrent atomic batches (the server takes 50 per stream)
)

// jsModes are the publish modes js_ceiling takes, the reference first.
var jsModes = []jsMode{
	{
		name: "js_async", dedup: true,
		how:        fmt.Sprintf("PublishMsgAsync with WithPublishAsyncMaxPending(%d) and no ack timeout", maxInFlight),
		duplicates: "a duplicate is acked as one, with the sequence it was stored at",
		stream:     func(*jetstream.StreamConfig) {},
		publish:    publishAsync,
	},
	{
		name: "js_atomic_batch", dedup: false,
		duplicates: "a duplicate fails the whole batch (10201), nothing stored, without saying which message it was",
		how: fmt.Sprintf("atomic batches (ADR-50, allow_atomic) of %d through jetstreamext.PublishMsgBatch, %d batches in flight, default flow control (ack of the first message and the commit)",
			atomicBatchSize, atomicBatchInFlight),
		stream:  func(c *jetstream.StreamConfig) { c.AllowAtomicPublish = true },
		publish: publishAtomicBatch,
	},
	{
		name: "js_fast_batch", dedup: true,
		duplicates: "a duplicate is skipped and the rest stored, but no ack says which message was one, nor any message's sequence but the last",
		how:        "one fast-ingest batch (ADR-50, allow_batched) through jetstreamext.FastPublisher, default flow control (flow 100, 2 outstanding acks), closed with an EOB commit",
		stream:     func(c *jetstream.StreamConfig) { c.AllowBatchPublish = true },
		publish:    publishFastBatch,
	},
}

func publishAsync(ctx context.Context, nc *nats.Conn, msgs []*nats.Msg, sent *atomic.Int64) error {
	var failed atomic.Int64
	var firstErr atomic.Value
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(maxInFlight),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, _ *nats.Msg, err error) {
			failed.Add(1)
			firstErr.CompareAndSwap(nil, err)
		}),
	)
	if err != nil {
		return err
	}
	for i, m := range msgs {
		for {
			_, err := js.PublishMsgAsync(m)
			if err == nil {
				break
			}
			if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) { // back-pressure: it waited already
				return err
			}
		}
		if i%1024 == 0 {
			sent.Store(int64(i))
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(stallTimeout):
		return fmt.Errorf("acks still pending after %s", stallTimeout)
	}
	if f := failed.Load(); f > 0 {
		return fmt.Errorf("%d publishes failed, first: %v", f, firstErr.Load())
	}
	return nil
}

func publishAtomicBatch(ctx context.Context, nc *nats.Conn, msgs []*nats.Msg, sent *atomic.Int64) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	var next atomic.Int64 // the next batch to take
	var wg sync.WaitGroup
	errs := make([]error, atomicBatchInFlight)
	for w := range atomicBatchInFlight {
		wg.Go(func() {
			for ctx.Err() == nil {
				start := int(next.Add(1)-1) * atomicBatchSize
				if start >= len(msgs) {
					return
				}
				batch := msgs[start:min(start+atomicBatchSize, len(msgs))]
				ack, err := jetstreamext.PublishMsgBatch(ctx, js, batch)
				if err != nil {
					errs[w] = fmt.Errorf("atomic batch at message %d: %w", start, err)
					return
				}
				if ack.BatchSize != uint64(len(batch)) {
					errs[w] = fmt.Errorf("atomic batch at message %d: %d stored of %d", start, ack.BatchSize, len(batch))
					return
				}
				sent.Add(int64(len(batch)))
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return ctx.Err()
}

func publishFastBatch(ctx context.Context, nc *nats.Conn, msgs []*nats.Msg, sent *atomic.Int64) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	var asyncErr atomic.Value
	fp, err := jetstreamext.NewFastPublisher(js, jetstreamext.WithFastPublisherErrorHandler(func(err error) {
		asyncErr.CompareAndSwap(nil, err)
	}))
	if err != nil {
		return err
	}
	for i, m := range msgs {
		if _, err := fp.AddMsg(m); err != nil {
			return fmt.Errorf("fast batch message %d: %w", i+1, err)
		}
		if i%1024 == 0 {
			sent.Store(int64(i))
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}
	ack, err := fp.Close(ctx)
	if err != nil {
		return fmt.Errorf("fast batch commit: %w", err)
	}
	if err, _ := asyncErr.Load().(error); err != nil {
		return fmt.Errorf("fast batch: %w", err)
	}
	if ack.BatchSize != uint64(len(msgs)) {
		return fmt.Errorf("fast batch: %d stored of %d", ack.BatchSize, len(msgs))
	}
	return nil
}
