package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/fitiqcore/outbox"
	bolt "go.etcd.io/bbolt"
)

// These operations give the library parity with FitIQ's outbox repository:
// marking events by hand, updating them, retrying and deleting in bulk.

// Update rewrites the fields an application chooses (priority, metadata,
// payload, content_type, max_attempts, is_new_record, retry) of the stored
// event with e.ID, validated as on enqueue, and fills e from the store. The
// event must be pending or failed (else ErrWrongStatus); type, entity_id
// and user_id cannot change (a validation error naming the field, wrapping
// outbox.ErrInvalidEvent). A pending event changing priority moves to its
// new priority's ready bucket. The relay may be publishing a pending event
// at that moment: that attempt carries the old content.
func (s *Store) Update(ctx context.Context, e *outbox.Event) error {
	if e.ID == "" {
		return fmt.Errorf("boltstore: update: %w", &outbox.ValidationError{Field: "id", Reason: "required"})
	}
	upd := *e
	upd.CreatedAt = time.Time{} // not the application's to change
	if err := s.prepare(&upd); err != nil {
		return fmt.Errorf("boltstore: update %s: %w", e.ID, err)
	}
	stored, err := s.updateByID(ctx, upd.ID, func(w *writer, cur *outbox.Event) error {
		if cur.Status != outbox.StatusPending && cur.Status != outbox.StatusFailed {
			return fmt.Errorf("%w: %s is %s, only pending and failed events can be updated", ErrWrongStatus, cur.ID, cur.Status)
		}
		for _, f := range []struct{ field, old, new string }{
			{"type", cur.Type, upd.Type}, {"entity_id", cur.EntityID, upd.EntityID}, {"user_id", cur.UserID, upd.UserID},
		} {
			if f.old != f.new {
				return &outbox.ValidationError{Field: f.field, Reason: fmt.Sprintf("cannot change (stored %q, got %q)", f.old, f.new)}
			}
		}
		old := *cur
		cur.Priority, cur.Metadata, cur.Payload, cur.ContentType = upd.Priority, upd.Metadata, upd.Payload, upd.ContentType
		cur.MaxAttempts, cur.IsNewRecord, cur.Retry = upd.MaxAttempts, upd.IsNewRecord, upd.Retry
		if cur.Priority != old.Priority {
			if cur.Status == outbox.StatusPending && old.NextAttemptAt.IsZero() && w.isReady(&old) {
				if err := w.unready(&old); err != nil {
					return err
				}
				if err := w.ready(cur); err != nil {
					return err
				}
			}
			if err := w.dropState(&old); err != nil {
				return err
			}
			if err := w.addState(cur); err != nil {
				return err
			}
		}
		return w.put(cur)
	})
	if err != nil {
		return fmt.Errorf("boltstore: update %s: %w", e.ID, err)
	}
	*e = *stored
	return nil
}

// MarkProcessing claims a pending event for processing outside the relay
// (FitIQ's markAsProcessing): it leaves the ready set, so the relay does not
// publish it, and records the attempt's start in last_attempt_at. Only the
// head of its entity (or an event without entity) can be claimed: else
// ErrNotHead; an event that is not pending gives ErrWrongStatus. A store
// reopened after a crash turns processing events back into pending ones.
func (s *Store) MarkProcessing(ctx context.Context, id string) error {
	now := s.opts.Now().UTC()
	_, err := s.updateByID(ctx, id, func(w *writer, e *outbox.Event) error {
		if e.Status != outbox.StatusPending {
			return fmt.Errorf("%w: %s is %s", ErrWrongStatus, id, e.Status)
		}
		if !w.isReady(e) {
			return fmt.Errorf("%w: %s waits behind an earlier event of entity %q", ErrNotHead, id, e.EntityID)
		}
		if err := w.unready(e); err != nil {
			return err
		}
		e.NextAttemptAt = time.Time{}
		e.LastAttemptAt = now
		return w.setStatus(e, outbox.StatusProcessing)
	})
	if err != nil {
		return fmt.Errorf("boltstore: mark processing: %w", err)
	}
	return nil
}

// MarkCompleted records that an event was delivered (FitIQ's
// markAsCompleted), like Complete for an ack: the event becomes completed
// (or is deleted, with Options.RemoveOnAck) and the next event of its entity
// becomes ready. It accepts the head of an entity whether pending,
// processing or failed (an operator's "delivered by other means"); a pending
// event behind an earlier one gives ErrNotHead. A pending or processing
// event counts one attempt. Marking a completed event again does nothing.
func (s *Store) MarkCompleted(ctx context.Context, id string) error {
	now := s.opts.Now().UTC()
	_, err := s.updateByID(ctx, id, func(w *writer, e *outbox.Event) error {
		switch e.Status {
		case outbox.StatusCompleted:
			return nil
		case outbox.StatusPending:
			if !w.isReady(e) {
				return fmt.Errorf("%w: %s waits behind an earlier event of entity %q", ErrNotHead, id, e.EntityID)
			}
			if err := w.unready(e); err != nil {
				return err
			}
			e.AttemptCount++
			e.LastAttemptAt = now
		case outbox.StatusProcessing:
			e.AttemptCount++
		}
		return w.complete(e, now)
	})
	if err != nil {
		return fmt.Errorf("boltstore: mark completed: %w", err)
	}
	return nil
}

// MarkFailed records a permanent failure with errText (FitIQ's
// markAsFailed), like Fail with Permanent set: the event becomes failed and
// blocks its entity until it is retried or deleted. It accepts a pending
// head (ErrNotHead for one behind an earlier event) or a processing event,
// counting one attempt; for an event failed already it only replaces
// last_error; a completed event gives ErrWrongStatus.
func (s *Store) MarkFailed(ctx context.Context, id string, errText string) error {
	now := s.opts.Now().UTC()
	_, err := s.updateByID(ctx, id, func(w *writer, e *outbox.Event) error {
		switch e.Status {
		case outbox.StatusCompleted:
			return fmt.Errorf("%w: %s is completed", ErrWrongStatus, id)
		case outbox.StatusFailed:
			e.LastError = outbox.TruncateError(errText)
			return w.put(e)
		case outbox.StatusPending:
			if !w.isReady(e) {
				return fmt.Errorf("%w: %s waits behind an earlier event of entity %q", ErrNotHead, id, e.EntityID)
			}
			if err := w.unready(e); err != nil {
				return err
			}
			e.LastAttemptAt = now
		}
		e.AttemptCount++
		e.NextAttemptAt = time.Time{}
		e.LastError = outbox.TruncateError(errText)
		return w.setStatus(e, outbox.StatusFailed)
	})
	if err != nil {
		return fmt.Errorf("boltstore: mark failed: %w", err)
	}
	return nil
}

// retry makes the failed event e pending again, attempts reset, and ready:
// only an entity's head can fail, so it leads its entity.
func (w *writer) retry(e *outbox.Event) error {
	e.AttemptCount = 0
	e.NextAttemptAt = time.Time{}
	e.LastError = ""
	if err := w.setStatus(e, outbox.StatusPending); err != nil {
		return err
	}
	return w.ready(e)
}

// bulkBatch is how many events a bulk operation changes per transaction:
// between transactions the lock is released, so the relay's own
// transactions interleave.
const bulkBatch = 1000

// RetryWhere retries every failed event of a user ("" = all users), as Retry
// does one: st must be "" or failed (else ErrNotRetryable). It walks the
// by_status (or by_user_status) index in transactions of at most 1000
// events, so it is not atomic as a whole; it returns how many it retried.
func (s *Store) RetryWhere(ctx context.Context, st outbox.Status, userID string) (int, error) {
	if st != "" && st != outbox.StatusFailed {
		return 0, fmt.Errorf("boltstore: retry: %w: status %q", ErrNotRetryable, st)
	}
	n, err := s.bulk(ctx, func(w *writer) (int, bool, error) {
		var p plan
		if userID == "" {
			p = plan{bucket: w.byStatus, prefix: []byte{statusCode(outbox.StatusFailed)}, keyLen: stateKeyLen}
		} else {
			p = plan{bucket: w.byUserStatus, prefix: append(lenPrefixed(userID, 1), statusCode(outbox.StatusFailed))}
			p.keyLen = len(p.prefix) + stateKeyLen - 1
		}
		p.seqOf = seqFromKeyEnd
		seqs := collect(&p, bulkBatch, false)
		for _, seq := range seqs {
			e, err := w.get(seq)
			if err != nil {
				return 0, false, err
			}
			if e == nil || e.Status != outbox.StatusFailed {
				return 0, false, fmt.Errorf("%w: by_status lists seq %d as failed", errCorrupt, seq)
			}
			if err := w.retry(e); err != nil {
				return 0, false, err
			}
		}
		return len(seqs), len(seqs) == bulkBatch, nil
	})
	if err != nil {
		return n, fmt.Errorf("boltstore: retry: %w", err)
	}
	return n, nil
}

// bulk runs step in transactions of its own until it reports no more work,
// and returns the total it reports. Between transactions the write lock is
// free for the relay.
func (s *Store) bulk(ctx context.Context, step func(w *writer) (n int, more bool, err error)) (total int, err error) {
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		var n int
		var more bool
		err := s.update(func(tx *bolt.Tx) error {
			w := s.writer(tx)
			var err error
			if n, more, err = step(w); err != nil {
				return err
			}
			return w.finish()
		})
		if err != nil {
			return total, err
		}
		total += n
		if !more {
			return total, nil
		}
	}
}

// collect returns the seqs of up to max keys of p's index with p's prefix,
// from the first key, or from the last backwards.
func collect(p *plan, max int, backwards bool) []uint64 {
	var seqs []uint64
	c := p.bucket.Cursor()
	var k, v []byte
	if backwards {
		k, v = lastWithPrefix(c, p.prefix)
	} else {
		k, v = c.Seek(p.prefix)
	}
	for ; k != nil && hasPrefix(k, p.prefix) && len(seqs) < max; k, v = step(c, backwards) {
		if p.validKey(k) {
			seqs = append(seqs, p.seqOf(k, v))
		}
	}
	return seqs
}

func step(c *bolt.Cursor, backwards bool) ([]byte, []byte) {
	if backwards {
		return c.Prev()
	}
	return c.Next()
}

// lastWithPrefix positions c on the last key with prefix pfx.
func lastWithPrefix(c *bolt.Cursor, pfx []byte) (k, v []byte) {
	end := append([]byte(nil), pfx...)
	for len(end) > 0 && end[len(end)-1] == 0xff {
		end = end[:len(end)-1]
	}
	if len(end) == 0 {
		k, v = c.Last()
	} else {
		end[len(end)-1]++
		if k, v = c.Seek(end); k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
	}
	if k != nil && !hasPrefix(k, pfx) {
		return nil, nil
	}
	return k, v
}

// DeleteCompletedBefore deletes up to max (default 1000 when max <= 0)
// completed events completed before the time before, oldest first, in one
// transaction, and returns how many. It walks the completed range of
// by_status, which is in completion order: O(max).
func (s *Store) DeleteCompletedBefore(ctx context.Context, before time.Time, max int) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if max <= 0 {
		max = bulkBatch
	}
	var n int
	err := s.update(func(tx *bolt.Tx) error {
		w := s.writer(tx)
		// Completed events are filed in completion order (stateKey).
		pfx := []byte{statusCode(outbox.StatusCompleted), 0}
		var seqs []uint64
		c := w.byStatus.Cursor()
		for k, _ := c.Seek(pfx); k != nil && hasPrefix(k, pfx) && len(seqs) < max; k, _ = c.Next() {
			if len(k) != stateKeyLen || !timeOfKey(k[2:]).Before(before) {
				break
			}
			seqs = append(seqs, seqFromKeyEnd(k, nil))
		}
		for _, seq := range seqs {
			e, err := w.get(seq)
			if err != nil {
				return err
			}
			if e == nil {
				continue
			}
			if err := w.delete(e); err != nil {
				return err
			}
			n++
		}
		return w.finish()
	})
	if err != nil {
		return 0, fmt.Errorf("boltstore: delete completed: %w", err)
	}
	return n, nil
}

// DeleteByEntityIDs deletes every event of the given entities, the latest
// first so that no event is promoted only to be deleted, in transactions of
// at most 1000 events: a large delete is not atomic as a whole. The entities
// keep their entity_seq counters. It returns how many events it deleted.
func (s *Store) DeleteByEntityIDs(ctx context.Context, entityIDs []string) (int, error) {
	n, err := s.deleteEntities(ctx, entityIDs)
	if err != nil {
		return n, fmt.Errorf("boltstore: delete by entity: %w", err)
	}
	return n, nil
}

func (s *Store) deleteEntities(ctx context.Context, entityIDs []string) (int, error) {
	i := 0 // the next entity to delete from; advanced as entities empty
	return s.bulk(ctx, func(w *writer) (int, bool, error) {
		deleted := 0
		for i < len(entityIDs) && deleted < bulkBatch {
			if entityIDs[i] == "" {
				i++
				continue
			}
			p := plan{bucket: w.byEntity, prefix: lenPrefixed(entityIDs[i], 0), seqOf: seqFromValue}
			p.keyLen = len(p.prefix) + 8
			room := bulkBatch - deleted
			seqs := collect(&p, room, true)
			for _, seq := range seqs {
				e, err := w.get(seq)
				if err != nil {
					return 0, false, err
				}
				if e == nil {
					continue
				}
				if err := w.delete(e); err != nil {
					return 0, false, err
				}
				deleted++
			}
			if len(seqs) == room {
				break // maybe more of this entity: the next transaction looks again
			}
			i++
		}
		return deleted, i < len(entityIDs), nil
	})
}

// DeleteUser deletes every event of a user, the latest first, in
// transactions of at most 1000 events (not atomic as a whole), walking
// by_user. Deleting an
// entity's head makes the entity's next event (of any user) ready. It
// returns how many events it deleted. userID "" (which stands for all users
// elsewhere) fails with ErrInvalidQuery: Reset deletes everything.
func (s *Store) DeleteUser(ctx context.Context, userID string) (int, error) {
	if userID == "" {
		return 0, fmt.Errorf("boltstore: delete user: %w: user_id required", ErrInvalidQuery)
	}
	n, err := s.bulk(ctx, func(w *writer) (int, bool, error) {
		p := plan{bucket: w.byUser, prefix: lenPrefixed(userID, 0), seqOf: seqFromKeyEnd}
		p.keyLen = len(p.prefix) + 8
		seqs := collect(&p, bulkBatch, true)
		n, err := w.deleteSeqs(seqs)
		return n, len(seqs) == bulkBatch, err
	})
	if err != nil {
		return n, fmt.Errorf("boltstore: delete user %q: %w", userID, err)
	}
	return n, nil
}

// Reset deletes every event (the emergency reset), the latest first, in
// transactions of at most 1000 events: it is not atomic as a whole, and
// events enqueued meanwhile may survive it. It forgets the ids of removed
// events too, so that an application may enqueue them again. Entities keep
// their entity_seq counters, so that an entity's next event does not reuse a
// number. It returns how many events it deleted.
func (s *Store) Reset(ctx context.Context) (int, error) {
	n, err := s.bulk(ctx, func(w *writer) (int, bool, error) {
		p := plan{bucket: w.events, keyLen: 8, seqOf: seqFromKeyEnd}
		seqs := collect(&p, bulkBatch, true)
		n, err := w.deleteSeqs(seqs)
		return n, len(seqs) == bulkBatch, err
	})
	if err == nil {
		err = s.clearTombstones(ctx)
	}
	if err != nil {
		return n, fmt.Errorf("boltstore: reset: %w", err)
	}
	return n, nil
}

func (w *writer) deleteSeqs(seqs []uint64) (int, error) {
	n := 0
	for _, seq := range seqs {
		e, err := w.get(seq)
		if err != nil {
			return n, err
		}
		if e == nil {
			continue
		}
		if err := w.delete(e); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// CleanupOrphans deletes the events of entities that no longer exist in the
// application: it walks the entities bucket (one key per entity) in read
// transactions of 1000 entities, asks exists for each entity that has
// events, outside any transaction (exists may read the application's own
// buckets in DB()), and deletes the events of those it denies as
// DeleteByEntityIDs does. It returns how many events it deleted.
func (s *Store) CleanupOrphans(ctx context.Context, exists func(entityID string) bool) (int, error) {
	var after []byte
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		var ids []string
		done := true
		err := s.view(func(tx *bolt.Tx) error {
			r := s.reader(tx)
			c := r.entities.Cursor()
			var k []byte
			if after == nil {
				k, _ = c.First()
			} else if k, _ = c.Seek(after); k != nil && bytes.Equal(k, after) {
				k, _ = c.Next()
			}
			ec := r.byEntity.Cursor()
			for n := 0; k != nil; k, _ = c.Next() {
				if n == bulkBatch {
					done = false
					break
				}
				n++
				after = append(after[:0], k...)
				if ek, _ := ec.Seek(k); ek == nil || !hasPrefix(ek, k) {
					continue // no events left
				}
				if id, rest, ok := splitLenPrefixed(k); ok && len(rest) == 0 {
					ids = append(ids, id)
				}
			}
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("boltstore: cleanup orphans: %w", err)
		}
		var orphans []string
		for _, id := range ids {
			if !exists(id) {
				orphans = append(orphans, id)
			}
		}
		n, err := s.deleteEntities(ctx, orphans)
		total += n
		if err != nil {
			return total, fmt.Errorf("boltstore: cleanup orphans: %w", err)
		}
		if done {
			return total, nil
		}
	}
}

// splitLenPrefixed splits len(2)|s|rest.
func splitLenPrefixed(k []byte) (s string, rest []byte, ok bool) {
	if len(k) < 2 {
		return "", nil, false
	}
	n := int(binary.BigEndian.Uint16(k))
	if len(k) < 2+n {
		return "", nil, false
	}
	return string(k[2 : 2+n]), k[2+n:], true
}
