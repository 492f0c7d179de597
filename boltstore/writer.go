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
	s                                          *Store
	tx                                         *bolt.Tx
	events, ids, readyB, delayed               *bolt.Bucket
	byEntity, entities, byStatus, byUserStatus *bolt.Bucket
	byUser, byType, userCounts, meta           *bolt.Bucket
	tombstones, idleEntities                   *bolt.Bucket

	c         counts
	users     map[string]*userCounts // loaded on first touch, saved by finish
	noUser    userCounts             // the sink of events without a user: not kept
	mark      []byte                 // stale watermark, loaded on first use
	markDirty bool
	wake      bool
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

// seqValue decodes an index value that holds a seq (by_entity, ids).
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
		byEntity: tx.Bucket(bByEntity), entities: tx.Bucket(bEntities), byStatus: tx.Bucket(bByStatus),
		byUserStatus: tx.Bucket(bByUserStatus), byUser: tx.Bucket(bByUser), byType: tx.Bucket(bByType),
		userCounts: tx.Bucket(bUserCounts), meta: tx.Bucket(bMeta),
		tombstones: tx.Bucket(bTombstones), idleEntities: tx.Bucket(bIdleEntities),
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
	for user, u := range w.users {
		key := lenPrefixed(user, 0)
		if u.empty() {
			// No events left: drop the entry, so that users who come and
			// go do not bloat the bucket.
			if err := w.userCounts.Delete(key); err != nil {
				return err
			}
			continue
		}
		if err := w.userCounts.Put(key, u.encode()); err != nil {
			return err
		}
	}
	if w.markDirty {
		if err := w.meta.Put(kStaleMark, append([]byte(nil), w.mark...)); err != nil {
			return err
		}
	}
	return w.meta.Put(kCounts, w.c.encode())
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

// rprio orders priorities highest first in index keys.
func rprio(p int) byte { return byte(outbox.MaxPriority - p) }

// stateKey is e's entry in by_status, and (after len(2)|user) in
// by_user_status: status(1)|rank(1)|time(8)|seq(8). A completed event has
// rank 0 and its completed_at as time, so completed events are in completion
// order (retention reads them oldest first); the others have 9-priority as
// rank and their accepted_at as time (the store's clock, never the client's
// created_at), so each status is listed highest priority first, oldest first
// within a priority, and the oldest pending event of each priority is the
// first key of its range.
func stateKey(e *outbox.Event) []byte {
	return appendStateKey(make([]byte, 0, 18), e)
}

func appendStateKey(k []byte, e *outbox.Event) []byte {
	if e.Status == outbox.StatusCompleted {
		k = append(k, statusCode(e.Status), 0)
		return appendTimeKey(k, e.CompletedAt, e.Seq)
	}
	k = append(k, statusCode(e.Status), rprio(e.Priority))
	return appendTimeKey(k, e.AcceptedAt, e.Seq)
}

func userStateKey(e *outbox.Event) []byte {
	return appendStateKey(lenPrefixed(e.UserID, 18), e)
}

// stateKeyLen is the length of a by_status key.
const stateKeyLen = 18

// typeKey is len(2)|type|seq(8); userKey is len(2)|user|seq(8).
func typeKey(typ string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(lenPrefixed(typ, 8), seq)
}

func userKey(user string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(lenPrefixed(user, 8), seq)
}

// appendTimeKey appends time(8)|seq(8), the time in nanoseconds with its
// sign bit flipped so that times before 1970 sort first.
func appendTimeKey(k []byte, t time.Time, seq uint64) []byte {
	k = binary.BigEndian.AppendUint64(k, uint64(t.UnixNano())^(1<<63))
	return binary.BigEndian.AppendUint64(k, seq)
}

func timeKey(t time.Time, seq uint64) []byte { return appendTimeKey(make([]byte, 0, 16), t, seq) }

func timeOfKey(k []byte) time.Time {
	return time.Unix(0, int64(binary.BigEndian.Uint64(k)^(1<<63))).UTC()
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
	w.lastSeq, w.lastSize = seq, len(v)
	e, err := decodeEvent(v)
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
	if u, ok := w.users[id]; ok {
		return u
	}
	if w.users == nil {
		w.users = make(map[string]*userCounts, 4)
	}
	k := lenPrefixed(id, 0)
	u, err := loadUserCounts(w.userCounts.Get(k))
	if err != nil {
		w.corrupt("user_counts entry %x: %v", k, err)
	}
	w.users[id] = u
	return u
}

// staleMark is the stale watermark: pending events whose pending_by_time key
// sorts before it are counted in the stale counters.
func (w *writer) staleMark() []byte {
	if w.mark == nil {
		w.mark = loadMark(w.meta)
	}
	return w.mark
}

func loadMark(meta *bolt.Bucket) []byte {
	if v := meta.Get(kStaleMark); len(v) == 16 {
		return append([]byte(nil), v...)
	}
	return make([]byte, 16) // before every event
}

// addStatic files e in the indexes of what never changes: by_type, and
// by_user for an event with a user.
func (w *writer) addStatic(e *outbox.Event) error {
	if err := w.byType.Put(typeKey(e.Type, e.Seq), nil); err != nil {
		return err
	}
	if e.UserID != "" {
		return w.byUser.Put(userKey(e.UserID, e.Seq), nil)
	}
	return nil
}

// userStatusIndexed reports whether e has a by_user_status entry: events of
// a user that are not completed. Completed events, the bulk of a store, are
// listed per user through by_user: so a completion moves one key less.
func userStatusIndexed(e *outbox.Event) bool {
	return e.UserID != "" && e.Status != outbox.StatusCompleted
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
	if userStatusIndexed(e) {
		if err := w.byUserStatus.Put(userStateKey(e), nil); err != nil {
			return err
		}
	}
	u := w.user(e.UserID)
	w.c.status[code]++
	u.status[code]++
	switch e.Status {
	case outbox.StatusPending:
		w.c.prio[e.Priority]++
		if bytes.Compare(k[2:], w.staleMark()) < 0 {
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
	if userStatusIndexed(e) {
		if err := w.byUserStatus.Delete(userStateKey(e)); err != nil {
			return err
		}
	}
	u := w.user(e.UserID)
	w.c.status[code]--
	u.status[code]--
	if e.Status == outbox.StatusPending {
		w.c.prio[e.Priority]--
		if bytes.Compare(k[2:], w.staleMark()) < 0 {
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

func (w *writer) enqueue(e *outbox.Event, now time.Time) (int, error) {
	u := uuid.MustParse(e.ID)
	if ent, ok := w.lookup(u[:]); ok {
		if ent.seq == 0 { // removed within the idempotency window
			if ent.tomb.hash != e.ContentHash() {
				return 0, fmt.Errorf("%w: %s (removed %s)", ErrDuplicate, e.ID, fromNanos(ent.tomb.removedAt).Format(time.RFC3339))
			}
			// Answer as the first enqueue did: the same seq and entity_seq.
			e.Status, e.Seq, e.EntitySeq = outbox.StatusRemoved, ent.tomb.seq, ent.tomb.entitySeq
			return 0, nil
		}
		stored, err := w.get(ent.seq)
		if err != nil {
			return 0, err
		}
		if stored == nil {
			return 0, w.corrupt("ids names seq %d for %s, which has no record", ent.seq, e.ID)
		}
		if !stored.SameContent(e) {
			return 0, fmt.Errorf("%w: %s", ErrDuplicate, e.ID)
		}
		*e = *stored
		return 0, nil
	}
	if w.err != nil {
		return 0, w.err
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
	e.AcceptedAt = now
	e.AttemptCount, e.LastError = 0, ""
	e.LastAttemptAt, e.NextAttemptAt, e.CompletedAt = time.Time{}, time.Time{}, time.Time{}
	e.EntitySeq = 0
	head := true
	if e.EntityID != "" {
		key := lenPrefixed(e.EntityID, 0)
		st := w.entity(key)
		if err := w.busy(key, &st); err != nil {
			return 0, err
		}
		e.EntitySeq = st.last + 1
		head = st.open == 0
		st.last, st.open = e.EntitySeq, st.open+1
		if err := w.putEntity(key, st); err != nil {
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
	if err := w.addStatic(e); err != nil {
		return 0, err
	}
	if err := w.addState(e); err != nil {
		return 0, err
	}
	if head {
		return 1, w.ready(e)
	}
	return 1, nil
}

// present is the value of entries that only need to exist. It must not be
// nil: bbolt's Get returns a nil value put in the same transaction as nil,
// which would read as absent.
var present = []byte{}

// ready files a pending head event where the relay looks for work: the
// delayed bucket while it waits out a backoff, its priority bucket otherwise.
func (w *writer) ready(e *outbox.Event) error {
	w.wake = true
	if !e.NextAttemptAt.IsZero() {
		return w.delayed.Put(delayedKey(e), present)
	}
	return w.readyB.Bucket(prioNames[e.Priority]).Put(u64(e.Seq), present)
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

// finishEntity is called when e, the head of its entity, completed: the
// entity has one unfinished event less and the next one leads.
func (w *writer) finishEntity(e *outbox.Event) error {
	key := lenPrefixed(e.EntityID, 0)
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
	pfx := lenPrefixed(entity, 0)
	c := w.byEntity.Cursor()
	for k, v := c.Seek(entityKey(entity, from)); k != nil && hasPrefix(k, pfx) && len(k) == len(pfx)+8; k, v = c.Next() {
		seq := w.seqValue("by_entity", k, v)
		e, err := w.get(seq)
		if err != nil {
			return err
		}
		if e == nil {
			return w.corrupt("by_entity entry %x names seq %d, which has no record", k, seq)
		}
		if e.Status == outbox.StatusCompleted {
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
	size := int64(len(w.events.Get(key)))
	if w.lastSeq == e.Seq {
		w.lastSeq = 0
	}
	u := uuid.MustParse(e.ID)
	now := w.s.opts.Now().UTC()
	for _, del := range []func() error{
		func() error { return w.events.Delete(key) },
		func() error { return w.bury(u[:], e, now) },
		func() error { return w.byType.Delete(typeKey(e.Type, e.Seq)) },
		func() error { return w.dropState(e) },
	} {
		if err := del(); err != nil {
			return err
		}
	}
	if e.UserID != "" {
		if err := w.byUser.Delete(userKey(e.UserID, e.Seq)); err != nil {
			return err
		}
	}
	w.c.bytes -= size
	w.user(e.UserID).bytes -= size
	if e.EntityID == "" {
		return nil
	}
	if err := w.byEntity.Delete(entityKey(e.EntityID, e.EntitySeq)); err != nil {
		return err
	}
	ekey := lenPrefixed(e.EntityID, 0)
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

func hasPrefix(k, pfx []byte) bool {
	return len(k) >= len(pfx) && string(k[:len(pfx)]) == string(pfx)
}

// exists reports whether an event with that id is stored, or was removed
// within the idempotency window.
func (w *writer) exists(id string) bool {
	u, err := uuid.Parse(id)
	return err == nil && w.ids.Get(u[:]) != nil
}
