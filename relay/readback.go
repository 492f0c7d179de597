package relay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fitiqcore/outbox"
)

// The read-back: the relay asks the stream which of the events it may have
// published already are there (Publisher.StoredFrom), and completes those
// instead of publishing them again. It runs once at start from the recorded
// mark (reconcile), and before a re-send that would land past the duplicate
// window (checkStale); the sweep forgets the unknown outcomes whose event an
// operator took out of the relay's hands. The mark itself is mark.go's.

// checkStale reads the stream back from from, completing every pending event
// it holds, and returns the events still to publish.
func (r *Relay) checkStale(ctx context.Context, events []*outbox.Event, from uint64) ([]*outbox.Event, error) {
	started := time.Now()
	found, read, err := r.readBack(ctx, func(fn storedFunc) error { return r.pub.StoredFrom(ctx, from, fn) })
	if err != nil {
		return nil, fmt.Errorf("relay: read back from %d: %w", from, err)
	}
	r.log.Info("stream read back before publishing unknown outcomes again", "from", from, "messages", read, "completed", len(found), "took", time.Since(started))
	r.mu.Lock()
	for seq := range found {
		delete(r.unknown, seq)
	}
	r.mu.Unlock()
	rest, done := events[:0:0], events[:0:0]
	for _, e := range events {
		if found[e.Seq] {
			done = append(done, e)
		} else {
			rest = append(rest, e)
		}
	}
	r.releaseSeqs(done)
	return rest, nil
}

// storedFunc is the callback of Publisher.StoredFrom and StoredSince.
type storedFunc = func(id string, streamSeq uint64, stored time.Time) error

// readBack runs read and completes every pending event it finds; it returns
// their seqs and the number of messages read.
func (r *Relay) readBack(ctx context.Context, read func(fn storedFunc) error) (found map[uint64]bool, n int, err error) {
	found = make(map[uint64]bool)
	var acks []outbox.Ack
	flush := func() error {
		if len(acks) == 0 {
			return nil
		}
		err := r.store.Record(ctx, acks, nil, 0)
		acks = acks[:0]
		return err
	}
	err = read(func(id string, streamSeq uint64, stored time.Time) error {
		n++
		e, err := r.store.Get(ctx, id)
		if errors.Is(err, outbox.ErrNotFound) {
			return nil // not ours, or deleted
		}
		if err != nil {
			return err
		}
		if e.Status != outbox.StatusPending {
			return nil
		}
		acks = append(acks, outbox.Ack{Seq: e.Seq, At: stored})
		found[e.Seq] = true
		r.log.Info("event found in the stream; completed without publishing again",
			"event_id", e.ID, "type", e.Type, "attempt", e.AttemptCount+1, "stream_seq", streamSeq)
		if len(acks) >= maxCommit {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	return found, n, err
}

// reconcile runs once, before the first publish: it reads the stream back
// from the recorded mark and completes every pending event the stream
// already holds, so that an event whose ack was lost in a crash is not
// published again — even after the stream's duplicate window, when
// JetStream would no longer de-duplicate it. Then it records a fresh mark.
func (r *Relay) reconcile(ctx context.Context) error {
	from, since, err := r.store.ReadBackMark(ctx)
	if err != nil {
		return fmt.Errorf("relay: reconcile: %w", err)
	}
	var read func(fn storedFunc) error
	switch {
	case r.cfg.DisableReconcile:
	case from != 0:
		if last := r.low.Load(); from > last+1 {
			// The stream is behind the mark: it was deleted and created
			// again (or is another one). All it holds is newer than the mark.
			r.log.Warn("the stream's last sequence is below the read-back mark (stream recreated?); reading it back from its start",
				"mark", from, "last_seq", last)
			from = 1
		}
		read = func(fn storedFunc) error { return r.pub.StoredFrom(ctx, from, fn) }
	case !since.IsZero(): // a file of an older build: a time mark
		read = func(fn storedFunc) error { return r.pub.StoredSince(ctx, since.Add(-r.cfg.ClockSkew), fn) }
	}
	if read != nil {
		started := time.Now()
		found, n, err := r.readBack(ctx, read)
		if err != nil {
			return fmt.Errorf("relay: reconcile: %w", err)
		}
		r.log.Info("stream read back", "from", from, "since", since, "messages", n, "completed", len(found), "took", time.Since(started))
	}
	r.mu.Lock()
	mark := r.markLocked(nil)
	r.mu.Unlock()
	return r.store.Record(ctx, nil, nil, mark)
}

// sweep drops the unknown outcomes, older than sweepAge, whose event is no
// longer pending in the store (deleted, completed or failed by an operator,
// or found by a read-back), and records the mark they no longer hold back.
func (r *Relay) sweep(ctx context.Context) error {
	now := r.cfg.Now()
	type candidate struct {
		seq uint64
		unknownSend
	}
	var old []candidate
	r.mu.Lock()
	for seq, u := range r.unknown {
		if _, busy := r.inflight[seq]; !busy && now.Sub(u.at) >= r.sweepAge {
			old = append(old, candidate{seq, u})
		}
	}
	r.mu.Unlock()
	var gone []candidate
	for _, c := range old {
		e, err := r.store.Get(ctx, c.id)
		switch {
		case errors.Is(err, outbox.ErrNotFound):
		case err != nil:
			if ctx.Err() != nil {
				return nil
			}
			r.log.Warn("checking an event of unknown publish outcome failed", "event_id", c.id, "err", err)
			continue
		case e.Seq == c.seq && e.Status == outbox.StatusPending:
			continue
		}
		gone = append(gone, c)
	}
	if len(gone) == 0 {
		return nil
	}
	r.mu.Lock()
	for _, c := range gone {
		if u, ok := r.unknown[c.seq]; ok && u == c.unknownSend {
			delete(r.unknown, c.seq)
		}
	}
	mark := r.markLocked(nil)
	r.mu.Unlock()
	r.log.Info("forgot publishes of unknown outcome whose events are no longer pending", "events", len(gone), "mark", mark)
	return r.store.Record(ctx, nil, nil, mark)
}
