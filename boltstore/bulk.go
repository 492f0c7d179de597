package boltstore

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/fitiqcore/outbox"
	bolt "go.etcd.io/bbolt"
)

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
		p := plan{bucket: w.byStatus, prefix: []byte{statusCode(outbox.StatusFailed)}, keyLen: stateKeyLen, seqOf: seqFromKeyEnd}
		if userID != "" {
			p = userStatusPlan(w, userID, outbox.StatusFailed)
		}
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
		if p.validKey(k) && (p.value == nil || p.value(v)) {
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
			p := entityPlan(w, entityIDs[i])
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
		p := userPlan(w, userID)
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
// application: it walks the entities' states (one per entity) in read
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
			for n := 0; k != nil; k, _ = c.Next() {
				ent, ok := entityOfStateKey(k)
				if !ok {
					continue // a chain key
				}
				if n == bulkBatch {
					done = false
					break
				}
				n++
				after = append(after[:0], k...)
				if !r.hasEvents(ent) {
					continue // no events left
				}
				if id, _, ok := splitLenPrefixed(ent); ok {
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
