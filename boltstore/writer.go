package boltstore

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
)

// writer applies one transaction's changes to the records, indexes and
// counters together, so that they can never disagree. Every change to an
// event goes through it: a record is written by put, its status-dependent
// index entries and counters move in addState/dropState, and finish saves the
// counters.
type writer struct {
	s                                     *Store
	tx                                    *bolt.Tx
	events, ids, readyB, delayed          *bolt.Bucket
	byStatus, entities, users, tombstones *bolt.Bucket
	idleEntities, meta                    *bolt.Bucket
	readyUser                             *bolt.Bucket // FairnessUser only (fair.go)

	c              counts
	userC          map[string]*userCounts // loaded on first touch, saved by finish
	noUser         userCounts             // the sink of events without a user: not kept
	watermark      []byte                 // the stale watermark, loaded on first use
	watermarkDirty bool
	wake           bool
	// The size of the record get read last, which put usually rewrites:
	// it saves put a lookup of the old size.
	lastSeq  uint64
	lastSize int
	// err is the first damage found in stored bytes (ErrCorrupt): it
	// sticks, so that helpers without an error result can report it, and
	// finish returns it, rolling the transaction back.
	err error
}

// corrupt records damage found in the file (the first one sticks) and
// returns the sticky error.
func (w *writer) corrupt(format string, args ...any) error {
	if w.err == nil {
		w.err = fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
	}
	return w.err
}

// seqValue decodes an index value that holds a seq (entity chains, ids).
func (w *writer) seqValue(bucket string, k, v []byte) uint64 {
	if len(v) != 8 {
		w.corrupt("%s entry %x holds %d bytes, want a sequence of 8", bucket, k, len(v))
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func (s *Store) writer(tx *bolt.Tx) *writer {
	w := s.reader(tx)
	w.c = loadCounts(w.meta)
	// Keys are appended in increasing order (sequences): fill pages.
	w.events.FillPercent = 0.9
	return w
}

// reader is a writer for read-only use inside a View: get and the cursors.
func (s *Store) reader(tx *bolt.Tx) *writer {
	return &writer{
		s: s, tx: tx,
		events: tx.Bucket(bEvents), ids: tx.Bucket(bIDs), readyB: tx.Bucket(bReady), delayed: tx.Bucket(bDelayed),
		byStatus: tx.Bucket(bByStatus), entities: tx.Bucket(bEntity), users: tx.Bucket(bUser),
		tombstones: tx.Bucket(bTombstones), idleEntities: tx.Bucket(bIdleEntities), meta: tx.Bucket(bMeta),
		readyUser: tx.Bucket(bReadyUser),
	}
}

// finish saves the counters and the stale watermark, and arranges the
// relay's wake-up on commit.
func (w *writer) finish() error {
	if w.err != nil {
		return w.err
	}
	if w.wake {
		w.tx.OnCommit(w.s.signal)
	}
	for user, u := range w.userC {
		if u.advance {
			w.advanceFirstPending(user, u)
		}
		key := userCountsKey(user)
		if u.empty() {
			// No events left: drop the entry, so that users who come and
			// go do not bloat the bucket.
			if err := w.users.Delete(key); err != nil {
				return err
			}
			continue
		}
		if err := w.users.Put(key, u.encode()); err != nil {
			return err
		}
	}
	if w.watermarkDirty {
		if err := w.meta.Put(kStaleWatermark, append([]byte(nil), w.watermark...)); err != nil {
			return err
		}
	}
	return w.meta.Put(kCounts, w.c.encode())
}

// get reads the record of seq; nil when there is none.
func (w *writer) get(seq uint64) (*outbox.Event, error) {
	v := w.events.Get(u64(seq))
	if v == nil {
		return nil, nil
	}
	w.lastSeq, w.lastSize = seq, len(v)
	e, err := decodeEvent(seq, v)
	if err != nil {
		return nil, fmt.Errorf("event seq %d: %w", seq, err)
	}
	return e, nil
}

// put writes e's record and accounts for the change in stored bytes. bbolt
// keeps the value slice until the commit, so every record gets a buffer of
// its own.
func (w *writer) put(e *outbox.Event) error {
	key := u64(e.Seq)
	var old int
	if e.Seq == w.lastSeq && w.lastSeq != 0 {
		old = w.lastSize
	} else {
		old = len(w.events.Get(key))
	}
	v := encodeEvent(make([]byte, 0, 128+len(e.Payload)+len(e.Metadata)), e)
	w.lastSeq, w.lastSize = e.Seq, len(v)
	d := int64(len(v) - old)
	w.c.bytes += d
	w.user(e.UserID).bytes += d
	return w.events.Put(key, v)
}

// user returns the counters of a user, loaded on first touch. Events
// without a user (id "") are counted for all users only.
func (w *writer) user(id string) *userCounts {
	if id == "" {
		return &w.noUser
	}
	if u, ok := w.userC[id]; ok {
		return u
	}
	if w.userC == nil {
		w.userC = make(map[string]*userCounts, 4)
	}
	k := userCountsKey(id)
	u, err := loadUserCounts(w.users.Get(k))
	if err != nil {
		w.corrupt("user counters %x: %v", k, err)
	}
	w.userC[id] = u
	return u
}

// staleWatermark is the stale watermark: pending events whose by_status time key
// sorts before it are counted in the stale counters.
func (w *writer) staleWatermark() []byte {
	if w.watermark == nil {
		w.watermark = loadStaleWatermark(w.meta)
	}
	return w.watermark
}

func loadStaleWatermark(meta *bolt.Bucket) []byte {
	if v := meta.Get(kStaleWatermark); len(v) == 16 {
		return append([]byte(nil), v...)
	}
	return make([]byte, 16) // before every event
}

// userValue is e's value in its user's list: status and rank, so that a
// walk over a user's events by status reads no record.
func userValue(e *outbox.Event) []byte {
	if e.Status == outbox.StatusCompleted {
		return []byte{statusCode(e.Status), 0}
	}
	return []byte{statusCode(e.Status), rprio(e.Priority)}
}

// addState files e (as it is now) in the indexes that depend on its status,
// priority and times, and counts it. A pending entry of by_status holds the
// user id, for the stale sweep's per-user counts. An event without a user
// has no per-user entries and no per-user counters: "" stands for all users
// throughout the API.
func (w *writer) addState(e *outbox.Event) error {
	code := statusCode(e.Status)
	k := stateKey(e)
	var v []byte
	if e.Status == outbox.StatusPending {
		v = []byte(e.UserID)
	}
	if err := w.byStatus.Put(k, v); err != nil {
		return err
	}
	u := w.user(e.UserID)
	if e.UserID != "" {
		if err := w.users.Put(userSeqKey(e.UserID, e.Seq), userValue(e)); err != nil {
			return err
		}
	}
	w.c.status[code]++
	u.status[code]++
	switch e.Status {
	case outbox.StatusPending:
		if u.firstPending == 0 || e.Seq < u.firstPending {
			u.firstPending = e.Seq
		}
		w.c.prio[e.Priority]++
		if bytes.Compare(k[2:], w.staleWatermark()) < 0 {
			w.c.stale++
			u.stale++
		}
	case outbox.StatusCompleted:
		w.noteCompleted(e.UserID, e.CompletedAt)
	}
	return nil
}

// dropState undoes addState for e as it is stored.
func (w *writer) dropState(e *outbox.Event) error {
	code := statusCode(e.Status)
	k := stateKey(e)
	if err := w.byStatus.Delete(k); err != nil {
		return err
	}
	u := w.user(e.UserID)
	if e.Status == outbox.StatusPending && e.Seq == u.firstPending {
		u.advance = true // the user's list entry changes or goes: finish moves the pointer
	}
	w.c.status[code]--
	u.status[code]--
	if e.Status == outbox.StatusPending {
		w.c.prio[e.Priority]--
		if bytes.Compare(k[2:], w.staleWatermark()) < 0 {
			w.c.stale--
			u.stale--
		}
	}
	return nil
}

// noteCompleted records a completion at t for newest_completed_at.
func (w *writer) noteCompleted(user string, t time.Time) {
	n := t.UnixNano()
	if n > w.c.newestCompleted {
		w.c.newestCompleted = n
	}
	if u := w.user(user); n > u.newestCompleted {
		u.newestCompleted = n
	}
}

// present is the value of entries that only need to exist. It must not be
// nil: bbolt's Get returns a nil value put in the same transaction as nil,
// which would read as absent.
var present = []byte{}

// setStatus writes e with a new status, moving its index entries and
// counters. e's other fields may have changed, but not those the indexes
// are keyed by (priority, accepted_at, completed_at of a completed event).
func (w *writer) setStatus(e *outbox.Event, st outbox.Status) error {
	if e.Status != st {
		if err := w.dropState(e); err != nil {
			return err
		}
		e.Status = st
		if err := w.addState(e); err != nil {
			return err
		}
	}
	return w.put(e)
}

// delete removes e (as stored) with its index entries and counts; if it led
// its entity, the next event leads.
func (w *writer) delete(e *outbox.Event) error {
	return w.remove(e, w.isHead(e))
}

// remove is delete for an event whose head-ness the caller knows (it may
// have taken it out of the ready set already).
func (w *writer) remove(e *outbox.Event, wasHead bool) error {
	if err := w.unready(e); err != nil {
		return err
	}
	key := u64(e.Seq)
	v := record(w.events.Get(key))
	if err := v.check(); err != nil {
		return w.corrupt("event seq %d: %v", e.Seq, err)
	}
	size, hash := int64(len(v)), v.hash()
	if w.lastSeq == e.Seq {
		w.lastSeq = 0
	}
	u := uuid.MustParse(e.ID)
	now := w.s.opts.Now().UTC()
	for _, del := range []func() error{
		func() error { return w.events.Delete(key) },
		func() error { return w.bury(u[:], e, hash, now) },
		func() error { return w.dropState(e) },
	} {
		if err := del(); err != nil {
			return err
		}
	}
	if e.UserID != "" {
		if err := w.users.Delete(userSeqKey(e.UserID, e.Seq)); err != nil {
			return err
		}
	}
	w.c.bytes -= size
	w.user(e.UserID).bytes -= size
	if e.EntityID == "" {
		return nil
	}
	ekey := lenPrefixed(e.EntityID, 9)
	if err := w.entities.Delete(entityChainKey(ekey, e.EntitySeq)); err != nil {
		return err
	}
	st := w.entity(ekey)
	unfinished := e.Status != outbox.StatusCompleted && st.open > 0
	if unfinished {
		st.open--
	}
	if err := w.settle(ekey, st, unfinished, now); err != nil {
		return err
	}
	if wasHead && e.Status != outbox.StatusCompleted {
		return w.promote(e.EntityID, e.EntitySeq+1)
	}
	return nil
}

// complete records the completion of the head e at now: e becomes completed,
// or is deleted when Options.RemoveOnAck is set; the next event of its
// entity leads. The caller has updated the attempt fields.
func (w *writer) complete(e *outbox.Event, now time.Time) error {
	e.NextAttemptAt = time.Time{}
	e.CompletedAt = now
	if w.s.opts.RemoveOnAck {
		w.noteCompleted(e.UserID, now)
		// The keys remove needs (status, priority, accepted_at) are as
		// stored; only attempt fields changed.
		return w.remove(e, true)
	}
	if err := w.setStatus(e, outbox.StatusCompleted); err != nil {
		return err
	}
	if e.EntityID != "" {
		return w.finishEntity(e)
	}
	return nil
}

// advanceFirstPending moves the user's first-pending pointer to its first
// pending event at or after it (its list is in seq order), or to 0.
func (w *writer) advanceFirstPending(user string, u *userCounts) {
	u.advance = false
	pfx := userSeqPrefix(user)
	c := w.users.Cursor()
	for k, v := c.Seek(userSeqKey(user, u.firstPending)); k != nil && len(k) == len(pfx)+8 && hasPrefix(k, pfx); k, v = c.Next() {
		if len(v) == 2 && v[0] == statusCode(outbox.StatusPending) {
			u.firstPending = binary.BigEndian.Uint64(k[len(pfx):])
			return
		}
	}
	u.firstPending = 0
}
