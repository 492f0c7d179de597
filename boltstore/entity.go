package boltstore

import (
	"encoding/binary"
	"time"

	"github.com/fitiqcore/outbox"
)

// entityState is an entity's state in the entity bucket, under
// len(2)|entity_id|0x00, next to its chain (len(2)|entity_id|0x01|
// entity_seq → seq: the events of it that are stored): the last entity_seq given out (so that entity_seq never
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
	v := w.entities.Get(entityStateKey(key))
	switch len(v) {
	case 0:
		return entityState{}
	case 16, 24:
	default:
		w.corrupt("entity state %x holds %d bytes, want 16 or 24", key, len(v))
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
	return w.entities.Put(entityStateKey(key), v)
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

// hasEvents reports whether any event of the entity is stored (its chain).
func (w *writer) hasEvents(key []byte) bool {
	pfx := chainPrefix(key)
	k, _ := w.entities.Cursor().Seek(pfx)
	return k != nil && len(k) == len(pfx)+8 && hasPrefix(k, pfx)
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
			if err := w.entities.Delete(entityStateKey(ekey)); err != nil {
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
		ent, ok := entityOfStateKey(k)
		if !ok {
			continue // a chain key
		}
		if st := w.entity(ent); st.open == 0 && st.idleSince == 0 && !w.hasEvents(ent) {
			idle = append(idle, append([]byte(nil), ent...))
		}
	}
	for _, k := range idle {
		if err := w.settle(k, w.entity(k), false, now); err != nil {
			return err
		}
	}
	return w.err
}

// entityOfStateKey returns len(2)|entity_id of an entity state key.
func entityOfStateKey(k []byte) ([]byte, bool) {
	_, rest, ok := splitLenPrefixed(k)
	if !ok || len(rest) != 1 || rest[0] != keyEntityState {
		return nil, false
	}
	return k[:len(k)-1], true
}

// ready files a pending head event where the relay looks for work: the
// delayed bucket while it waits out a backoff, its priority bucket otherwise.
func (w *writer) ready(e *outbox.Event) error {
	w.wake = true
	if !e.NextAttemptAt.IsZero() {
		return w.delayed.Put(delayedKey(e.NextAttemptAt, e.Seq), present)
	}
	if w.readyUser != nil {
		if err := w.readyUser.Put(fairKey(e.Priority, e.UserID, e.Seq), present); err != nil {
			return err
		}
	}
	return w.readyB.Put(readyKey(e.Priority, e.Seq), present)
}

// isReady reports whether e is filed as ready or delayed.
func (w *writer) isReady(e *outbox.Event) bool {
	if !e.NextAttemptAt.IsZero() {
		return w.delayed.Get(delayedKey(e.NextAttemptAt, e.Seq)) != nil
	}
	return w.readyB.Get(readyKey(e.Priority, e.Seq)) != nil
}

func (w *writer) unready(e *outbox.Event) error {
	if !e.NextAttemptAt.IsZero() {
		if err := w.delayed.Delete(delayedKey(e.NextAttemptAt, e.Seq)); err != nil {
			return err
		}
	}
	if w.readyUser != nil {
		if err := w.readyUser.Delete(fairKey(e.Priority, e.UserID, e.Seq)); err != nil {
			return err
		}
	}
	return w.readyB.Delete(readyKey(e.Priority, e.Seq))
}

// finishEntity is called when e, the head of its entity, completed: the
// entity has one unfinished event less and the next one leads.
func (w *writer) finishEntity(e *outbox.Event) error {
	key := lenPrefixed(e.EntityID, 9)
	st := w.entity(key)
	if st.open > 0 {
		st.open--
	}
	if err := w.putEntity(key, st); err != nil {
		return err
	}
	return w.promote(e.EntityID, e.EntitySeq+1)
}

// promote finds the entity's first unfinished event at or after entity_seq
// from and, when it is pending, makes it ready.
func (w *writer) promote(entity string, from uint64) error {
	pfx := chainPrefix(lenPrefixed(entity, 9))
	c := w.entities.Cursor()
	for k, v := c.Seek(binary.BigEndian.AppendUint64(pfx, from)); k != nil && hasPrefix(k, pfx) && len(k) == len(pfx)+8; k, v = c.Next() {
		seq := w.seqValue("entity chain", k, v)
		r := record(w.events.Get(u64(seq)))
		if r == nil {
			return w.corrupt("entity chain entry %x names seq %d, which has no record", k, seq)
		}
		if err := r.check(); err != nil {
			return w.corrupt("event seq %d: %v", seq, err)
		}
		switch r.status() {
		case outbox.StatusCompleted:
			continue
		case outbox.StatusPending: // the header is all ready needs
			e := &outbox.Event{Seq: seq, Priority: r.priority(), NextAttemptAt: r.time(offNextTry)}
			if w.readyUser != nil { // and its user, for ready_user
				_, user, err := r.keys()
				if err != nil {
					return w.corrupt("event seq %d: %v", seq, err)
				}
				e.UserID = string(user)
			}
			if !w.isReady(e) {
				return w.ready(e)
			}
		}
		return nil
	}
	return nil
}

// ensureHead makes the event e (which just became pending) ready when it
// leads its entity, or when it has none.
func (w *writer) ensureHead(entity string, e *outbox.Event) error {
	if entity == "" {
		if e.Status == outbox.StatusPending {
			return w.ready(e)
		}
		return nil
	}
	return w.promote(entity, 1)
}

// isHead reports whether e is its entity's head: its earliest unfinished
// event (an event without entity always is). For a pending event it is
// isReady; a processing or failed event is always a head.
func (w *writer) isHead(e *outbox.Event) bool {
	switch e.Status {
	case outbox.StatusPending:
		return w.isReady(e)
	case outbox.StatusProcessing, outbox.StatusFailed:
		return true
	}
	return false
}
