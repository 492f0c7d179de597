package boltstore

import (
	"encoding/binary"
	"fmt"

	"time"

	"github.com/fitiqcore/outbox"
	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
)

// writer applies one transaction's changes to the records, indexes and
// counters together, so that they can never disagree.
type writer struct {
	s                                          *Store
	tx                                         *bolt.Tx
	events, ids, readyB, delayed               *bolt.Bucket
	byEntity, entities, byUser, byStatus, meta *bolt.Bucket
	c                                          counts
	wake                                       bool
	buf                                        []byte
}

func (s *Store) writer(tx *bolt.Tx) *writer {
	w := &writer{
		s: s, tx: tx,
		events: tx.Bucket(bEvents), ids: tx.Bucket(bIDs), readyB: tx.Bucket(bReady), delayed: tx.Bucket(bDelayed),
		byEntity: tx.Bucket(bByEntity), entities: tx.Bucket(bEntities), byUser: tx.Bucket(bByUser),
		byStatus: tx.Bucket(bByStatus), meta: tx.Bucket(bMeta),
	}
	w.c = loadCounts(w.meta)
	// Keys are appended in increasing order (sequences, times): fill pages.
	w.events.FillPercent = 0.9
	return w
}

// finish saves the counters and arranges the relay's wake-up on commit.
func (w *writer) finish() error {
	if w.wake {
		w.tx.OnCommit(w.s.signal)
	}
	return w.meta.Put(kCounts, w.c.bytes())
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func lenPrefixed(s string, extra int) []byte {
	k := make([]byte, 0, 2+len(s)+extra)
	k = binary.BigEndian.AppendUint16(k, uint16(len(s)))
	return append(k, s...)
}

func entityKey(entity string, entitySeq uint64) []byte {
	return binary.BigEndian.AppendUint64(lenPrefixed(entity, 8), entitySeq)
}

func userKey(user string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(lenPrefixed(user, 8), seq)
}

func statusKey(st outbox.Status, seq uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{statusCode(st)}, seq)
}

func delayedKey(e *outbox.Event) []byte {
	k := binary.BigEndian.AppendUint64(make([]byte, 0, 16), uint64(e.NextAttemptAt.UnixNano()))
	return binary.BigEndian.AppendUint64(k, e.Seq)
}

// get reads the record of seq; nil when there is none.
func (w *writer) get(seq uint64) (*outbox.Event, error) {
	v := w.events.Get(u64(seq))
	if v == nil {
		return nil, nil
	}
	e, err := decodeEvent(v)
	if err != nil {
		return nil, fmt.Errorf("event seq %d: %w", seq, err)
	}
	return e, nil
}

// put writes e's record. bbolt keeps the value slice until the commit, so
// every record gets a buffer of its own.
func (w *writer) put(e *outbox.Event) error {
	return w.events.Put(u64(e.Seq), encodeEvent(make([]byte, 0, 128+len(e.Payload)+len(e.Metadata)), e))
}

func (w *writer) enqueue(e *outbox.Event, now time.Time) (int, error) {
	u := uuid.MustParse(e.ID)
	if v := w.ids.Get(u[:]); v != nil {
		stored, err := w.get(binary.BigEndian.Uint64(v))
		if err != nil {
			return 0, err
		}
		if stored == nil || !stored.SameContent(e) {
			return 0, fmt.Errorf("%w: %s", ErrDuplicate, e.ID)
		}
		*e = *stored
		return 0, nil
	}
	seq, err := w.events.NextSequence()
	if err != nil {
		return 0, err
	}
	e.Seq = seq
	e.Status = outbox.StatusPending
	if e.CreatedAt.IsZero() {
		e.CreatedAt = now
	}
	e.CreatedAt = e.CreatedAt.UTC()
	e.AttemptCount, e.LastError = 0, ""
	e.LastAttemptAt, e.NextAttemptAt, e.CompletedAt = time.Time{}, time.Time{}, time.Time{}
	e.EntitySeq = 0
	head := true
	if e.EntityID != "" {
		key := lenPrefixed(e.EntityID, 0)
		last, open := entityMeta(w.entities.Get(key))
		e.EntitySeq = last + 1
		head = open == 0
		if err := w.entities.Put(key, entityMetaBytes(e.EntitySeq, open+1)); err != nil {
			return 0, err
		}
		if err := w.byEntity.Put(entityKey(e.EntityID, e.EntitySeq), u64(seq)); err != nil {
			return 0, err
		}
	}
	if err := w.put(e); err != nil {
		return 0, err
	}
	if err := w.ids.Put(u[:], u64(seq)); err != nil {
		return 0, err
	}
	if err := w.byUser.Put(userKey(e.UserID, seq), nil); err != nil {
		return 0, err
	}
	if err := w.byStatus.Put(statusKey(e.Status, seq), nil); err != nil {
		return 0, err
	}
	w.c[statusCode(e.Status)]++
	if head {
		return 1, w.ready(e)
	}
	return 1, nil
}

// ready files a pending head event where the relay looks for work: the
// delayed bucket while it waits out a backoff, its priority bucket otherwise.
func (w *writer) ready(e *outbox.Event) error {
	w.wake = true
	if !e.NextAttemptAt.IsZero() {
		return w.delayed.Put(delayedKey(e), nil)
	}
	return w.readyB.Bucket(prioNames[e.Priority]).Put(u64(e.Seq), nil)
}

// isReady reports whether e is filed as ready or delayed.
func (w *writer) isReady(e *outbox.Event) bool {
	if !e.NextAttemptAt.IsZero() {
		return w.delayed.Get(delayedKey(e)) != nil
	}
	return w.readyB.Bucket(prioNames[e.Priority]).Get(u64(e.Seq)) != nil
}

func (w *writer) unready(e *outbox.Event) error {
	if !e.NextAttemptAt.IsZero() {
		if err := w.delayed.Delete(delayedKey(e)); err != nil {
			return err
		}
	}
	return w.readyB.Bucket(prioNames[e.Priority]).Delete(u64(e.Seq))
}

// setStatus writes e with a new status, moving its status index entry and
// counters.
func (w *writer) setStatus(e *outbox.Event, st outbox.Status) error {
	if e.Status != st {
		if err := w.byStatus.Delete(statusKey(e.Status, e.Seq)); err != nil {
			return err
		}
		if err := w.byStatus.Put(statusKey(st, e.Seq), nil); err != nil {
			return err
		}
		w.c[statusCode(e.Status)]--
		w.c[statusCode(st)]++
		e.Status = st
	}
	return w.put(e)
}

// finishEntity is called when e, the head of its entity, completed or was
// deleted: the entity has one unfinished event less and the next one leads.
func (w *writer) finishEntity(e *outbox.Event) error {
	key := lenPrefixed(e.EntityID, 0)
	last, open := entityMeta(w.entities.Get(key))
	if open > 0 {
		open--
	}
	if err := w.entities.Put(key, entityMetaBytes(last, open)); err != nil {
		return err
	}
	return w.promote(e.EntityID, e.EntitySeq+1)
}

// promote finds the entity's first unfinished event at or after entity_seq
// from and, when it is pending, makes it ready.
func (w *writer) promote(entity string, from uint64) error {
	pfx := lenPrefixed(entity, 0)
	c := w.byEntity.Cursor()
	for k, v := c.Seek(entityKey(entity, from)); k != nil && hasPrefix(k, pfx) && len(k) == len(pfx)+8; k, v = c.Next() {
		e, err := w.get(binary.BigEndian.Uint64(v))
		if err != nil {
			return err
		}
		if e == nil || e.Status == outbox.StatusCompleted {
			continue
		}
		if e.Status == outbox.StatusPending && !w.isReady(e) {
			return w.ready(e)
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

// delete removes e with its index entries; if it led its entity, the next
// event leads.
func (w *writer) delete(e *outbox.Event) error {
	wasHead := e.Status == outbox.StatusFailed || e.Status == outbox.StatusProcessing ||
		(e.Status == outbox.StatusPending && w.isReady(e))
	if err := w.unready(e); err != nil {
		return err
	}
	u := uuid.MustParse(e.ID)
	for _, del := range []func() error{
		func() error { return w.events.Delete(u64(e.Seq)) },
		func() error { return w.ids.Delete(u[:]) },
		func() error { return w.byUser.Delete(userKey(e.UserID, e.Seq)) },
		func() error { return w.byStatus.Delete(statusKey(e.Status, e.Seq)) },
	} {
		if err := del(); err != nil {
			return err
		}
	}
	w.c[statusCode(e.Status)]--
	if e.EntityID == "" {
		return nil
	}
	if err := w.byEntity.Delete(entityKey(e.EntityID, e.EntitySeq)); err != nil {
		return err
	}
	if e.Status == outbox.StatusCompleted {
		return nil
	}
	key := lenPrefixed(e.EntityID, 0)
	last, open := entityMeta(w.entities.Get(key))
	if open > 0 {
		open--
	}
	if err := w.entities.Put(key, entityMetaBytes(last, open)); err != nil {
		return err
	}
	if wasHead {
		return w.promote(e.EntityID, e.EntitySeq+1)
	}
	return nil
}

func hasPrefix(k, pfx []byte) bool {
	return len(k) >= len(pfx) && string(k[:len(pfx)]) == string(pfx)
}

func entityMeta(v []byte) (last, open uint64) {
	if len(v) != 16 {
		return 0, 0
	}
	return binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:])
}

func entityMetaBytes(last, open uint64) []byte {
	return binary.BigEndian.AppendUint64(u64(last), open)
}

// counts holds the number of events per status code.
type counts [len(statusCodes)]int64

func loadCounts(meta *bolt.Bucket) counts {
	var c counts
	if v := meta.Get(kCounts); len(v) == 8*len(c) {
		for i := range c {
			c[i] = int64(binary.BigEndian.Uint64(v[8*i:]))
		}
	}
	return c
}

func (c counts) bytes() []byte {
	b := make([]byte, 0, 8*len(c))
	for _, v := range c {
		b = binary.BigEndian.AppendUint64(b, uint64(v))
	}
	return b
}

func (c counts) stats() Stats {
	s := Stats{
		Pending:    c[statusCode(outbox.StatusPending)],
		Processing: c[statusCode(outbox.StatusProcessing)],
		Completed:  c[statusCode(outbox.StatusCompleted)],
		Failed:     c[statusCode(outbox.StatusFailed)],
	}
	s.Total = s.Pending + s.Processing + s.Completed + s.Failed
	return s
}
