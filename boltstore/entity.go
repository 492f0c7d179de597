package boltstore

import (
	"encoding/binary"
	"time"
)

// entityState is an entity's entry in the entities bucket, under
// len(2)|entity_id: the last entity_seq given out (so that entity_seq never
// repeats while the entity is remembered), how many of its events are
// unfinished, and, once none of its events is stored any more, since when
// (idleSince, unix nanoseconds; 0 while it has events). An idle entity is
// also filed in idle_entities under idle_since(8)|len(2)|entity_id, where the
// sweep finds those idle for longer than Options.EntityHorizon and forgets
// them: the entity's next event, if one ever comes, is entity_seq 1 again.
type entityState struct {
	last, open uint64
	idleSince  int64
}

// entity reads an entity's state; the zero state for an entity never seen
// (or forgotten).
func (w *writer) entity(key []byte) entityState {
	v := w.entities.Get(key)
	switch len(v) {
	case 0:
		return entityState{}
	case 16, 24:
	default:
		w.corrupt("entities entry %x holds %d bytes, want 16 or 24", key, len(v))
		return entityState{}
	}
	st := entityState{last: binary.BigEndian.Uint64(v), open: binary.BigEndian.Uint64(v[8:])}
	if len(v) == 24 {
		st.idleSince = int64(binary.BigEndian.Uint64(v[16:]))
	}
	return st
}

func (w *writer) putEntity(key []byte, st entityState) error {
	v := binary.BigEndian.AppendUint64(u64(st.last), st.open)
	if st.idleSince != 0 {
		v = binary.BigEndian.AppendUint64(v, uint64(st.idleSince))
	}
	return w.entities.Put(key, v)
}

func idleKey(since int64, entityKey []byte) []byte {
	return append(binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(entityKey)), uint64(since)), entityKey...)
}

// busy marks an entity that gets a new event as no longer idle.
func (w *writer) busy(key []byte, st *entityState) error {
	if st.idleSince == 0 {
		return nil
	}
	if err := w.idleEntities.Delete(idleKey(st.idleSince, key)); err != nil {
		return err
	}
	st.idleSince = 0
	return nil
}

// hasEvents reports whether any event of the entity is stored (by_entity).
func (w *writer) hasEvents(key []byte) bool {
	k, _ := w.byEntity.Cursor().Seek(key)
	return k != nil && len(k) == len(key)+8 && hasPrefix(k, key)
}

// settle writes the entity's state after one of its events was removed
// (changed: its unfinished count moved) and marks it idle since now when none
// of its events is stored any more.
func (w *writer) settle(key []byte, st entityState, changed bool, now time.Time) error {
	if st.idleSince == 0 && st.open == 0 && !w.hasEvents(key) {
		st.idleSince = max(now.UnixNano(), 1)
		if err := w.idleEntities.Put(idleKey(st.idleSince, key), present); err != nil {
			return err
		}
		changed = true
	}
	if !changed {
		return nil
	}
	return w.putEntity(key, st)
}

// forgetIdle forgets up to max entities idle since before the time before
// and reports how many it forgot.
func (w *writer) forgetIdle(before time.Time, max int) (int, error) {
	var keys [][]byte
	c := w.idleEntities.Cursor()
	lim := uint64(before.UnixNano())
	for k, _ := c.First(); k != nil && len(keys) < max; k, _ = c.Next() {
		if len(k) < 8+2 {
			return 0, w.corrupt("idle_entities key %x", k)
		}
		if binary.BigEndian.Uint64(k) >= lim {
			break
		}
		keys = append(keys, append([]byte(nil), k...))
	}
	for _, k := range keys {
		ekey := k[8:]
		if st := w.entity(ekey); st.idleSince == int64(binary.BigEndian.Uint64(k)) && st.open == 0 {
			if err := w.entities.Delete(ekey); err != nil {
				return 0, err
			}
		}
		if err := w.idleEntities.Delete(k); err != nil {
			return 0, err
		}
	}
	return len(keys), w.err
}

// indexIdleEntities files the entities of a file written before
// idle_entities existed that have no events left, idle since now. It runs
// once, when Open first sees such a file: O(entities).
func (w *writer) indexIdleEntities(now time.Time) error {
	var idle [][]byte
	c := w.entities.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if st := w.entity(k); st.open == 0 && st.idleSince == 0 && !w.hasEvents(k) {
			idle = append(idle, append([]byte(nil), k...))
		}
	}
	for _, k := range idle {
		if err := w.settle(k, w.entity(k), false, now); err != nil {
			return err
		}
	}
	return w.err
}
