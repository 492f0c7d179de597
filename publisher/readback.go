package publisher

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// LastSeq is the stream's last sequence now (its state's LastSeq; a purge
// keeps it). Every message published after the call is stored, if at all, at
// a higher sequence: the relay's read-back mark is built on that.
func (p *Publisher) LastSeq(ctx context.Context) (uint64, error) {
	info, err := p.streamInfo(ctx)
	if err != nil {
		return 0, fmt.Errorf("publisher: last sequence: %w", err)
	}
	return info.State.LastSeq, nil
}

// StoredFrom reads back, headers only, every message the stream holds on the
// publisher's subjects from stream sequence from on, up to the stream's last
// message at the time of the call, and calls fn for each in stream order with
// its Nats-Msg-Id (the event id), its stream sequence and the time the server
// stored it; an error from fn ends the read-back and is returned. It
// is how a restarted relay learns which of the events it had in flight when
// it died are already in the stream, however long ago: JetStream's
// de-duplication forgets ids after the duplicate window, the stream does not.
// from 0 reads from the start.
func (p *Publisher) StoredFrom(ctx context.Context, from uint64, fn func(id string, streamSeq uint64, stored time.Time) error) error {
	info, err := p.streamInfo(ctx)
	if err != nil {
		return fmt.Errorf("publisher: read back: %w", err)
	}
	last := info.State.LastSeq
	if info.State.Msgs == 0 || last < from {
		return nil
	}
	return p.readBack(ctx, last, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   max(from, 1),
	}, fn)
}

// StoredSince is StoredFrom from the first message stored at or after time
// since by the server's clock. It serves the time-based mark of a store
// file written by an older relay; the relay's own mark is a sequence, which
// does not depend on clocks agreeing.
func (p *Publisher) StoredSince(ctx context.Context, since time.Time, fn func(id string, streamSeq uint64, stored time.Time) error) error {
	info, err := p.streamInfo(ctx)
	if err != nil {
		return fmt.Errorf("publisher: read back: %w", err)
	}
	if info.State.Msgs == 0 || info.State.LastTime.Before(since) {
		return nil
	}
	return p.readBack(ctx, info.State.LastSeq, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartTimePolicy,
		OptStartTime:  &since,
	}, fn)
}

func (p *Publisher) streamInfo(ctx context.Context) (*jetstream.StreamInfo, error) {
	st, err := p.js.Stream(ctx, p.cfg.Stream.Name)
	if err != nil {
		return nil, err
	}
	return st.Info(ctx)
}

// readBack delivers the messages of an ordered consumer configured by cc (the
// start) until it has seen stream sequence last or the server says nothing on
// the publisher's subjects is left to deliver. An empty fetch alone does not
// end it: a slow or busy server can let a fetch expire with messages still
// to come. ctx bounds it.
func (p *Publisher) readBack(ctx context.Context, last uint64, cc jetstream.OrderedConsumerConfig, fn func(id string, streamSeq uint64, stored time.Time) error) error {
	st, err := p.js.Stream(ctx, p.cfg.Stream.Name)
	if err != nil {
		return fmt.Errorf("publisher: read back: %w", err)
	}
	cc.FilterSubjects = []string{p.cfg.SubjectPrefix + ".>"}
	cc.HeadersOnly = true
	c, err := st.OrderedConsumer(ctx, cc)
	if err != nil {
		return fmt.Errorf("publisher: read back: %w", err)
	}
	for i := 0; ; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, done, err := p.readBatch(ctx, c, p.fetchWait(i), last, fn)
		if err != nil || done {
			return err
		}
		if n > 0 {
			continue
		}
		// An empty fetch: done only when the consumer has nothing left on
		// our subjects (the last message may be on another subject, or
		// gone by the stream's limits).
		ci, err := c.Info(ctx)
		if err != nil {
			return fmt.Errorf("publisher: read back: %w", err)
		}
		if ci.NumPending == 0 {
			return nil
		}
	}
}

// readBatch hands fn the messages of one fetch that waits at most wait, and
// reports whether stream sequence last was among them. Returning early ends
// the fetch (its ctx), so that no goroutine of nats.go outlives the read-back
// waiting for the rest of a batch.
func (p *Publisher) readBatch(ctx context.Context, c jetstream.Consumer, wait time.Duration, last uint64, fn func(id string, streamSeq uint64, stored time.Time) error) (n int, done bool, err error) {
	fctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	batch, err := c.Fetch(1000, jetstream.FetchContext(fctx))
	if err != nil {
		if fctx.Err() != nil && ctx.Err() == nil {
			return 0, false, nil // the wait ran out before the fetch was sent: an empty fetch
		}
		return 0, false, fmt.Errorf("publisher: read back: %w", err)
	}
	for m := range batch.Messages() {
		n++
		md, err := m.Metadata()
		if err != nil {
			return n, false, fmt.Errorf("publisher: read back: %w", err)
		}
		if id := m.Headers().Get(nats.MsgIdHdr); id != "" {
			if err := fn(id, md.Sequence.Stream, md.Timestamp); err != nil {
				return n, false, err
			}
		}
		if md.Sequence.Stream >= last {
			return n, true, nil
		}
	}
	if err := batch.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return n, false, fmt.Errorf("publisher: read back: %w", err)
	}
	return n, false, nil
}
