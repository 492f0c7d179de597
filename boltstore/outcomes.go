package boltstore

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
)

// Record is the relay's one transaction per batch of publish outcomes: it
// completes the acked events (as Complete), records the failed attempts (as
// Fail) and, when mark is not zero, stores the read-back mark: the relay's
// promise that every publish whose outcome is still unknown was stored, if
// at all, at stream sequence mark or later. A restarted relay reads the stream
// back from ReadBackMark. A stream sequence, unlike a time, does not depend on the
// clocks of this host and the servers agreeing.
func (s *Store) Record(ctx context.Context, acks []Ack, fails []Failure, mark uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.submit(ctx, &op{record: true, acks: acks, fails: fails, mark: mark})
}

// record applies one Record call in w's transaction.
func (w *writer) record(acks []Ack, fails []Failure, mark uint64, now time.Time) error {
	for _, a := range acks {
		if err := w.ack(a, now); err != nil {
			return err
		}
	}
	for _, f := range fails {
		if err := w.fail(f); err != nil {
			return err
		}
	}
	if mark != 0 {
		if err := w.meta.Put(kReadBack, u64(mark)); err != nil {
			return err
		}
		return w.meta.Delete(kInFlightMark)
	}
	return nil
}

// ReadBackMark returns the read-back mark last stored by Record: the stream sequence
// to read back from (0 when none). A file last written by an older build
// holds a time instead (since; zero when none): the send time of the oldest
// publish whose outcome was unknown, by this host's clock.
func (s *Store) ReadBackMark(ctx context.Context) (from uint64, since time.Time, err error) {
	if err := ctx.Err(); err != nil {
		return 0, time.Time{}, err
	}
	err = s.view(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bMeta)
		if v := meta.Get(kReadBack); v != nil {
			if len(v) != 8 {
				return fmt.Errorf("%w: meta/%s is %d bytes, want 8", ErrCorrupt, kReadBack, len(v))
			}
			from = binary.BigEndian.Uint64(v)
			return nil
		}
		if v := meta.Get(kInFlightMark); v != nil {
			if len(v) != 8 {
				return fmt.Errorf("%w: meta/%s is %d bytes, want 8", ErrCorrupt, kInFlightMark, len(v))
			}
			since = fromNanos(int64(binary.BigEndian.Uint64(v)))
		}
		return nil
	})
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("boltstore: read-back mark: %w", err)
	}
	return from, since, nil
}

// headRecord reads the record of seq when it is a pending head (filed as
// ready or delayed): only such an event can have been handed out by Due, and
// a stale or stray seq must not complete or fail an event out of its
// entity's order. It returns the stored bytes (valid in the transaction) and
// the event's index fields only (head), without decoding the rest, and takes
// the head out of the ready set.
func (w *writer) headRecord(seq uint64) (r record, head *outbox.Event, err error) {
	r = record(w.events.Get(u64(seq)))
	if r == nil {
		return nil, nil, nil
	}
	if err := r.check(); err != nil {
		return nil, nil, w.corrupt("event seq %d: %v", seq, err)
	}
	if r.status() != outbox.StatusPending {
		return nil, nil, nil
	}
	head = &outbox.Event{Seq: seq, Status: outbox.StatusPending, Priority: r.priority(),
		NextAttemptAt: r.time(offNextTry), AcceptedAt: r.time(offAccepted), EntitySeq: r.entitySeq()}
	// Is it filed as ready (or delayed)? Take it out with the same seek.
	b, k := w.readyB, readyKey(head.Priority, seq)
	if !head.NextAttemptAt.IsZero() {
		b, k = w.delayed, delayedKey(head.NextAttemptAt, seq)
	}
	c := b.Cursor()
	if got, _ := c.Seek(k); !bytes.Equal(got, k) {
		return nil, nil, nil
	}
	if err := c.Delete(); err != nil {
		return nil, nil, err
	}
	entity, user, err := r.keys()
	if err != nil {
		return nil, nil, w.corrupt("event seq %d: %v", seq, err)
	}
	head.EntityID, head.UserID = string(entity), string(user)
	if w.readyUser != nil && head.NextAttemptAt.IsZero() {
		if err := w.readyUser.Delete(fairKey(head.Priority, head.UserID, seq)); err != nil {
			return nil, nil, err
		}
	}
	head.ID = uuid.UUID(r.id()).String()
	if head.DeliverAt, err = r.deliverAt(); err != nil { // part of its by_status key
		return nil, nil, w.corrupt("event seq %d: %v", seq, err)
	}
	head.AttemptCount = int(binary.BigEndian.Uint32(r[offAttempts:]))
	head.MaxAttempts = int(binary.BigEndian.Uint32(r[offMax:]))
	return r, head, nil
}

// putRecord writes patched bytes of e's record in place of old ones,
// accounting the change in stored bytes.
func (w *writer) putRecord(e *outbox.Event, v []byte, oldLen int) error {
	d := int64(len(v) - oldLen)
	w.c.bytes += d
	w.user(e.UserID).bytes += d
	w.lastSeq = 0
	return w.events.Put(u64(e.Seq), v)
}

// ack completes the head a acknowledges: the record is patched (status,
// attempts, times), not decoded and encoded again.
func (w *writer) ack(a Ack, now time.Time) error {
	r, e, err := w.headRecord(a.Seq)
	if err != nil || e == nil {
		return err
	}
	e.AttemptCount++
	e.LastAttemptAt = a.At.UTC()
	e.NextAttemptAt = time.Time{}
	e.CompletedAt = now
	if w.s.opts.RemoveOnAck {
		w.noteCompleted(e.UserID, now)
		return w.remove(e, true) // out of the ready set already
	}
	v := r.patched(outbox.StatusCompleted, e.AttemptCount, e.LastAttemptAt, time.Time{}, now, nil)
	if err := w.dropState(e); err != nil {
		return err
	}
	e.Status = outbox.StatusCompleted
	if err := w.addState(e); err != nil {
		return err
	}
	if err := w.putRecord(e, v, len(r)); err != nil {
		return err
	}
	if e.EntityID != "" {
		return w.finishEntity(e)
	}
	return nil
}

// fail records the failed attempt f of a head: backoff until
// f.NextAttemptAt, or failed for good. The record is patched.
func (w *writer) fail(f Failure) error {
	r, e, err := w.headRecord(f.Seq)
	if err != nil || e == nil {
		return err
	}
	e.AttemptCount++
	e.LastAttemptAt = f.At.UTC()
	lastErr := outbox.TruncateError(f.Err)
	if f.Permanent || (!f.Unknown && e.AttemptCount >= e.MaxAttempts) {
		v := r.patched(outbox.StatusFailed, e.AttemptCount, e.LastAttemptAt, time.Time{}, time.Time{}, &lastErr)
		if err := w.dropState(e); err != nil {
			return err
		}
		e.Status, e.NextAttemptAt = outbox.StatusFailed, time.Time{}
		if err := w.addState(e); err != nil {
			return err
		}
		return w.putRecord(e, v, len(r))
	}
	e.NextAttemptAt = f.NextAttemptAt.UTC()
	v := r.patched(outbox.StatusPending, e.AttemptCount, e.LastAttemptAt, e.NextAttemptAt, time.Time{}, &lastErr)
	if err := w.putRecord(e, v, len(r)); err != nil {
		return err
	}
	return w.ready(e)
}

// Due returns up to n events that are due at now: ready events and those
// whose backoff has passed, highest priority first, FIFO (by seq) within a
// priority. Events for which skip returns true (the relay's in-flight ones)
// are passed over. next is the time the earliest event still in backoff is
// due (zero when none). The read transaction is closed before Due returns:
// the events are copies.
func (s *Store) Due(ctx context.Context, now time.Time, n int, skip func(seq uint64) bool) (events []*outbox.Event, next time.Time, err error) {
	if err := ctx.Err(); err != nil {
		return nil, time.Time{}, err
	}
	if skip == nil {
		skip = func(uint64) bool { return false }
	}
	err = s.view(func(tx *bolt.Tx) error {
		w := s.reader(tx)
		get := func(bucket string, k []byte, seq uint64) (*outbox.Event, error) {
			e, err := w.get(seq)
			if err == nil && e == nil {
				err = w.corrupt("%s entry %x names seq %d, which has no record", bucket, k, seq)
			}
			return e, err
		}
		nowN := uint64(now.UnixNano())
		c := tx.Bucket(bDelayed).Cursor()
		delayed := 0
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if len(k) != 16 {
				return w.corrupt("delayed key %x", k)
			}
			if t := binary.BigEndian.Uint64(k[:8]); t > nowN {
				next = fromNanos(int64(t))
				break
			}
			seq := binary.BigEndian.Uint64(k[8:])
			if skip(seq) {
				continue
			}
			if delayed == n {
				next = now
				break
			}
			e, err := get("delayed", k, seq)
			if err != nil {
				return err
			}
			events = append(events, e)
			delayed++
		}
		if s.opts.Fairness == FairnessUser {
			// Highest priority first, round-robin across users within one,
			// in the room the events out of a delay left: every pick is
			// returned, so the next batch's first round starts right after
			// the last user served.
			ready := len(events)
			for rank := byte(0); rank <= outbox.MaxPriority && ready < n; rank++ {
				before := len(events)
				var err error
				if events, err = s.fairReady(w, rank, n-ready, skip, events); err != nil {
					return err
				}
				ready += len(events) - before
			}
			return nil
		}
		// Highest priority first (rank 0), FIFO within a priority.
		got := 0
		c = tx.Bucket(bReady).Cursor()
		for k, _ := c.First(); k != nil && got < n; k, _ = c.Next() {
			if len(k) != 9 || k[0] > outbox.MaxPriority {
				return w.corrupt("ready key %x", k)
			}
			seq := binary.BigEndian.Uint64(k[1:])
			if skip(seq) {
				continue
			}
			e, err := get("ready", k, seq)
			if err != nil {
				return err
			}
			events = append(events, e)
			got++
		}
		return nil
	})
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("boltstore: due: %w", err)
	}
	// Events out of backoff come first from the loops above: sort always,
	// not only when cutting at n, so that the order is the one promised.
	if s.opts.Fairness == FairnessUser {
		// The round-robin order within a priority is the order of the
		// picks: keep it (a stable sort by priority alone).
		slices.SortStableFunc(events, func(a, b *outbox.Event) int { return b.Priority - a.Priority })
	} else {
		slices.SortFunc(events, func(a, b *outbox.Event) int {
			if a.Priority != b.Priority {
				return b.Priority - a.Priority
			}
			return cmp.Compare(a.Seq, b.Seq)
		})
	}
	if len(events) > n {
		events = events[:n]
	}
	return events, next, nil
}

// Ack records that JetStream acked the publish of event Seq: it is
// outbox.Ack, in which the relay records it (the relay does not import the
// store).
type Ack = outbox.Ack

// Complete marks acked events completed in one transaction (or deletes
// them, with Options.RemoveOnAck) and promotes the next event of each of
// their entities. Events no longer pending (deleted or
// changed by an operator meanwhile), and pending events that Due could not
// have returned (not their entity's head), are left alone.
func (s *Store) Complete(ctx context.Context, acks []Ack) error {
	return s.Record(ctx, acks, nil, 0)
}

// Failure records a failed publish attempt: it is outbox.Failure, in which
// the relay records it (the relay does not import the store). The event goes
// into backoff until NextAttemptAt, or becomes failed when Permanent is set or
// it has used its max_attempts; an attempt whose outcome is Unknown never
// fails the event for its attempts.
type Failure = outbox.Failure

// Fail records failed attempts in one transaction.
func (s *Store) Fail(ctx context.Context, fails []Failure) error {
	return s.Record(ctx, nil, fails, 0)
}
