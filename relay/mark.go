package relay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
	"github.com/fitiqcore/outbox/publisher"
)

// The read-back mark
//
// A publish whose outcome is unknown (no answer came: a timeout, a lost
// connection, a crash) may be in the stream. The relay keeps, for each such
// publish and each one in flight, low: a lower bound of the stream's last
// sequence that it had seen before sending, so that the message is stored,
// if at all, at low+1 or later. The mark recorded with every batch is the
// least such low+1 (or the current low+1 when nothing is unknown): a
// restarted relay reads the stream back from it and completes what the
// stream holds instead of publishing it again. A stream sequence, unlike the
// send time it replaced, does not depend on the clocks of this host and the
// servers agreeing.

// unknownSend is the first publish of an event whose outcome is unknown.
type unknownSend struct {
	id  string
	low uint64
	at  time.Time
}

// The sweep drops unknown outcomes whose event is no longer pending (an
// operator deleted, completed or failed it): checked every sweepEvery for
// entries older than sweepAge, so that such an entry does not pin the mark
// forever.
const (
	sweepEvery = 5 * time.Second
	sweepAge   = 5 * time.Second
)

// raise lifts low to n when n is higher.
func (r *Relay) raise(n uint64) {
	for {
		cur := r.low.Load()
		if n <= cur || r.low.CompareAndSwap(cur, n) {
			return
		}
	}
}

// noteUnknown records s as a publish of unknown outcome when classified says
// so, and reports whether the stream may hold its event: this attempt got no
// answer, or an earlier one did not. Called under r.mu.
func (r *Relay) noteUnknown(s sent, classified error) bool {
	if _, earlier := r.unknown[s.e.Seq]; earlier {
		return true
	}
	// A publish that PublishAsync refused never reached the broker.
	if s.unsent || !errors.Is(classified, publisher.ErrUnknownOutcome) {
		return false
	}
	r.unknown[s.e.Seq] = unknownSend{id: s.e.ID, low: s.low, at: s.at}
	return true
}

// nextUnknown is when to publish again an event whose attempt s has an
// unknown outcome: after the usual backoff, but no later than half the
// duplicate window after the send, so that JetStream still knows the id and
// answers the re-send with a duplicate ack when it stored the first.
func (r *Relay) nextUnknown(s sent, now time.Time) time.Time {
	next := now.Add(r.Backoff(s.e, s.attempt))
	if by := s.at.Add(r.cfg.DuplicateWindow / 2); next.After(by) {
		next = by
	}
	if next.Before(now) {
		next = now
	}
	return next
}

// markLocked is the read-back mark: the least low+1 of the publishes in
// flight (except those of batch, whose outcomes are being recorded) and of
// those of unknown outcome, or the current low+1. Called under r.mu.
func (r *Relay) markLocked(batch []result) uint64 {
	m := r.low.Load() + 1
	var skip map[uint64]bool
	if len(batch) > 0 {
		skip = make(map[uint64]bool, len(batch))
		for _, res := range batch {
			skip[res.e.Seq] = true
		}
	}
	for seq, low := range r.inflight {
		if low+1 < m && !skip[seq] {
			m = low + 1
		}
	}
	for _, u := range r.unknown {
		if u.low+1 < m {
			m = u.low + 1
		}
	}
	return m
}

// staleFrom returns where to read the stream back from before publishing
// events again (0: no need): when one of them has an unknown outcome sent so
// long ago that JetStream may have forgotten its id by the time the re-send
// lands (past three quarters of the duplicate window), only the stream can
// tell whether it holds it. Called under r.mu.
func (r *Relay) staleFrom(events []*outbox.Event, now time.Time) uint64 {
	if r.cfg.DisableReconcile || len(r.unknown) == 0 {
		return 0
	}
	var from uint64
	for _, e := range events {
		u, ok := r.unknown[e.Seq]
		if !ok || now.Sub(u.at) < r.cfg.DuplicateWindow*3/4 {
			continue
		}
		if from == 0 || u.low+1 < from {
			from = u.low + 1
		}
	}
	return from
}

// checkStale reads the stream back from from, completing every pending event
// it holds, and returns the events still to publish.
func (r *Relay) checkStale(ctx context.Context, events []*outbox.Event, from uint64) ([]*outbox.Event, error) {
	started := time.Now()
	found, read, err := r.readBack(ctx, func(fn func(publisher.Stored) error) error {
		return r.pub.StoredFrom(ctx, from, fn)
	})
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

// readBack runs read and completes every pending event it finds; it returns
// their seqs and the number of messages read.
func (r *Relay) readBack(ctx context.Context, read func(fn func(publisher.Stored) error) error) (found map[uint64]bool, n int, err error) {
	found = make(map[uint64]bool)
	var acks []boltstore.Ack
	flush := func() error {
		if len(acks) == 0 {
			return nil
		}
		err := r.store.Record(ctx, acks, nil, 0)
		acks = acks[:0]
		return err
	}
	err = read(func(s publisher.Stored) error {
		n++
		e, err := r.store.Get(ctx, s.ID)
		if errors.Is(err, boltstore.ErrNotFound) {
			return nil // not ours, or deleted
		}
		if err != nil {
			return err
		}
		if e.Status != outbox.StatusPending {
			return nil
		}
		acks = append(acks, boltstore.Ack{Seq: e.Seq, At: s.Time})
		found[e.Seq] = true
		r.log.Info("event found in the stream; completed without publishing again",
			"event_id", e.ID, "type", e.Type, "attempt", e.AttemptCount+1, "stream_seq", s.StreamSeq)
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
	var read func(fn func(publisher.Stored) error) error
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
		read = func(fn func(publisher.Stored) error) error { return r.pub.StoredFrom(ctx, from, fn) }
	case !since.IsZero(): // a file of an older build: a time mark
		read = func(fn func(publisher.Stored) error) error {
			return r.pub.StoredSince(ctx, since.Add(-r.cfg.ClockSkew), fn)
		}
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
		case errors.Is(err, boltstore.ErrNotFound):
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
