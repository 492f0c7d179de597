package boltstore

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/fitiqcore/outbox"
)

// Tombstones keep idempotency past an event's removal. When an event is
// removed (by retention, on ack with RemoveOnAck, or by an operator), its ids
// entry is not deleted but turned into a tombstone, removed_at(8)|
// content_hash(8)|seq(8)|entity_seq(8) (a live entry is the 8-byte seq), and
// filed in tombstones under removed_at(8)|uuid(16). Re-enqueueing that id with
// the same content stores nothing and reports outbox.StatusRemoved with the
// seq and entity_seq the event had, as the first answer did; with other
// content it is ErrDuplicate, as for a stored event. The sweep deletes
// tombstones older than Options.IdempotencyWindow. A tombstone costs about 80
// bytes of file.

type tombstone struct {
	removedAt      int64
	hash           uint64
	seq, entitySeq uint64
}

const tombstoneLen = 32

// idEntry is an ids entry: the seq of a stored event, or a tombstone.
type idEntry struct {
	seq  uint64 // 0 for a tombstone
	tomb tombstone
}

// lookup reads the ids entry of the 16-byte uuid u.
func (w *writer) lookup(u []byte) (idEntry, bool) {
	v := w.ids.Get(u)
	switch len(v) {
	case 0:
		return idEntry{}, false
	case 8:
		return idEntry{seq: binary.BigEndian.Uint64(v)}, true
	case tombstoneLen:
		return idEntry{tomb: tombstone{
			removedAt: int64(binary.BigEndian.Uint64(v)), hash: binary.BigEndian.Uint64(v[8:]),
			seq: binary.BigEndian.Uint64(v[16:]), entitySeq: binary.BigEndian.Uint64(v[24:]),
		}}, true
	}
	w.corrupt("ids entry %x holds %d bytes, want 8 or %d", u, len(v), tombstoneLen)
	return idEntry{}, false
}

// bury replaces the ids entry of the removed event e with a tombstone.
func (w *writer) bury(u []byte, e *outbox.Event, hash uint64, now time.Time) error {
	at := uint64(max(now.UnixNano(), 1))
	v := binary.BigEndian.AppendUint64(u64(at), hash)
	v = binary.BigEndian.AppendUint64(v, e.Seq)
	v = binary.BigEndian.AppendUint64(v, e.EntitySeq)
	if err := w.ids.Put(u, v); err != nil {
		return err
	}
	return w.tombstones.Put(append(u64(at), u...), present)
}

// expireTombstones deletes up to max tombstones of events removed before
// the time before, oldest first, and reports how many.
func (w *writer) expireTombstones(before time.Time, max int) (int, error) {
	var keys [][]byte
	lim := uint64(before.UnixNano())
	c := w.tombstones.Cursor()
	for k, _ := c.First(); k != nil && len(keys) < max; k, _ = c.Next() {
		if len(k) != 24 {
			return 0, w.corrupt("tombstones key %x", k)
		}
		if binary.BigEndian.Uint64(k) >= lim {
			break
		}
		keys = append(keys, append([]byte(nil), k...))
	}
	for _, k := range keys {
		u := k[8:]
		if ent, ok := w.lookup(u); ok && ent.seq == 0 && uint64(ent.tomb.removedAt) == binary.BigEndian.Uint64(k) {
			if err := w.ids.Delete(u); err != nil {
				return 0, err
			}
		}
		if err := w.tombstones.Delete(k); err != nil {
			return 0, err
		}
	}
	return len(keys), w.err
}

// forgetRemoved is the sweep's part for what removals leave behind: it
// deletes tombstones older than the idempotency window and forgets entities
// idle for longer than the entity horizon, in transactions of at most
// bulkBatch of each. It returns how many tombstones and entities it deleted.
func (s *Store) forgetRemoved(ctx context.Context) (tombs, entities int, err error) {
	now := s.opts.Now()
	tombsBefore := now.Add(-s.opts.IdempotencyWindow)
	forgetEntities := s.opts.EntityHorizon > 0
	entitiesBefore := now.Add(-s.opts.EntityHorizon)
	_, err = s.bulk(ctx, func(w *writer) (int, bool, error) {
		t, err := w.expireTombstones(tombsBefore, bulkBatch)
		if err != nil {
			return 0, false, err
		}
		n := 0
		if forgetEntities {
			if n, err = w.forgetIdle(entitiesBefore, bulkBatch); err != nil {
				return 0, false, err
			}
		}
		tombs += t
		entities += n
		return t + n, t == bulkBatch || n == bulkBatch, nil
	})
	if err != nil {
		return tombs, entities, fmt.Errorf("boltstore: sweep removed ids and idle entities: %w", err)
	}
	return tombs, entities, nil
}

// clearTombstones deletes every tombstone (Reset: a re-post after an
// emergency reset is stored again), in transactions of at most bulkBatch.
func (s *Store) clearTombstones(ctx context.Context) error {
	_, err := s.bulk(ctx, func(w *writer) (int, bool, error) {
		n, err := w.expireTombstones(time.Unix(0, 1<<62), bulkBatch)
		return n, n == bulkBatch, err
	})
	return err
}
