package boltstore

import (
	"context"
	"fmt"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
)

// EnqueueTx adds events inside the caller's read-write transaction tx, which
// must belong to DB(): the events commit or roll back with the caller's own
// writes. It fills each event's id (a UUIDv7 when empty), defaults, seq,
// entity_seq, status and created_at (kept when the caller set it). It has no
// ctx: to store the trace context of the caller's span, set e.TraceParent
// and e.TraceState from outbox.TraceFromContext.
//
// Re-enqueueing an id that is stored with the same content stores nothing
// and fills the event from the store; with different content it fails with
// ErrDuplicate. It returns how many events were newly stored. Validation
// errors wrap outbox.ErrInvalidEvent and name the field; on any error the
// caller must roll back (return the error from its Update).
//
// Admission control: when the store has reached a high-water mark
// (Options.MaxPending, MaxBytes, MaxPendingAge) at the start of the call, it
// refuses the events with a *FullError (errors.Is ErrOutboxFull) naming the
// mark, unless all of them are stored already. Events already accepted are
// never dropped; one call may overshoot a mark by its own events.
func (s *Store) EnqueueTx(tx *bolt.Tx, events ...*outbox.Event) (created int, err error) {
	if tx.DB() != s.db {
		return 0, ErrWrongDB
	}
	for i, e := range events {
		if err := s.prepare(e); err != nil {
			if len(events) > 1 {
				return 0, fmt.Errorf("events[%d]: %w", i, err)
			}
			return 0, err
		}
	}
	w := s.writer(tx)
	created, callerErr, err := w.enqueueAll(events, s.opts.Now().UTC())
	if err != nil {
		return 0, err
	}
	if callerErr != nil {
		return 0, callerErr
	}
	return created, w.finish()
}

// prepare fills and validates e against the store's limits and clock
// (outbox.Event.Prepare bounds created_at to years the record's nanoseconds
// hold).
func (s *Store) prepare(e *outbox.Event) error {
	o := s.opts.Event
	o.MaxPayload = s.MaxPayload()
	o.MaxMessage = s.MaxMessage()
	o.Now = s.opts.Now
	return e.Prepare(o)
}

// Enqueue adds events, all or nothing, through the store's commit pipeline
// (pipeline.go): the calls waiting at the same moment, and the relay's
// outcomes, commit in one transaction with one pair of fsyncs, as soon as
// the previous commit returned. It returns when the events are durable, or
// when ctx ends (the events may then still be stored: re-enqueueing the same
// ids is safe). See EnqueueTx for ids, duplicates and errors. An event
// without a trace context of its own takes ctx's span's
// (outbox.TraceFromContext).
func (s *Store) Enqueue(ctx context.Context, events ...*outbox.Event) (created int, err error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	parent, state := outbox.ReceivedTraceContext(outbox.TraceFromContext(ctx))
	for i, e := range events {
		if e.TraceParent == "" && parent != "" {
			e.TraceParent, e.TraceState = parent, state
		}
		if err := s.prepare(e); err != nil {
			if len(events) > 1 {
				return 0, fmt.Errorf("events[%d]: %w", i, err)
			}
			return 0, err
		}
	}
	o := &op{events: events}
	err = s.submit(ctx, o)
	return o.created, err
}

// known looks e's id up: when it is stored (or removed within the
// idempotency window) with the same content, it fills e from the store and
// reports true; with other content it fails with ErrDuplicate. A damaged
// entry is w.err.
func (w *writer) known(e *outbox.Event) (bool, error) {
	u := uuid.MustParse(e.ID)
	ent, ok := w.lookup(u[:])
	if w.err != nil {
		return false, w.err
	}
	if !ok {
		return false, nil
	}
	if ent.seq == 0 { // removed within the idempotency window
		if ent.tomb.hash != e.ContentHash() {
			return false, fmt.Errorf("%w: %s (removed %s)", ErrDuplicate, e.ID, fromNanos(ent.tomb.removedAt).Format(time.RFC3339))
		}
		// Answer as the first enqueue did: the same seq and entity_seq.
		e.Status, e.Seq, e.EntitySeq = outbox.StatusRemoved, ent.tomb.seq, ent.tomb.entitySeq
		return true, nil
	}
	stored, err := w.get(ent.seq)
	if err != nil {
		return false, err
	}
	if stored == nil {
		return false, w.corrupt("ids names seq %d for %s, which has no record", ent.seq, e.ID)
	}
	if !stored.SameContent(e) {
		return false, fmt.Errorf("%w: %s", ErrDuplicate, e.ID)
	}
	*e = *stored
	return true, nil
}

// enqueue stores the new event e (its id is not known: see known).
func (w *writer) enqueue(e *outbox.Event, now time.Time) error {
	u := uuid.MustParse(e.ID)
	seq, err := w.events.NextSequence()
	if err != nil {
		return err
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
	if e.DeliverAt.After(now) {
		// Delayed delivery: filed as delayed once it is its entity's head,
		// and the relay's timer wakes for it (Due's next).
		e.NextAttemptAt = e.DeliverAt.UTC()
	}
	e.EntitySeq = 0
	head := true
	if e.EntityID != "" {
		key := lenPrefixed(e.EntityID, 9)
		st := w.entity(key)
		if err := w.busy(key, &st); err != nil {
			return err
		}
		e.EntitySeq = st.last + 1
		head = st.open == 0
		st.last, st.open = e.EntitySeq, st.open+1
		if err := w.putEntity(key, st); err != nil {
			return err
		}
		if err := w.entities.Put(entityChainKey(key, e.EntitySeq), u64(seq)); err != nil {
			return err
		}
	}
	if err := w.put(e); err != nil {
		return err
	}
	if err := w.ids.Put(u[:], u64(seq)); err != nil {
		return err
	}
	if err := w.addState(e); err != nil {
		return err
	}
	if head {
		return w.ready(e)
	}
	return nil
}

// enqueueAll enqueues events in w's transaction, all or none. It decides
// every error that is the caller's first, writing nothing then (callerErr);
// err is a failure of the file, after which the transaction must roll back.
func (w *writer) enqueueAll(events []*outbox.Event, now time.Time) (created int, callerErr, err error) {
	prefix := func(i int, err error) error {
		if len(events) > 1 {
			return fmt.Errorf("events[%d]: %w", i, err)
		}
		return err
	}
	// The caller's errors: ids stored (or removed) with other content,
	// repeated in the call with other content, and the high-water marks.
	const (
		fresh = iota
		stored
		repeat // of an earlier event of the call, with the same content
	)
	kind := make([]byte, len(events))
	var seen map[string]*outbox.Event
	if len(events) > 1 {
		seen = make(map[string]*outbox.Event, len(events))
	}
	allKnown := true
	for i, e := range events {
		if prev, ok := seen[e.ID]; ok {
			if !prev.SameContent(e) {
				return 0, prefix(i, fmt.Errorf("%w: %s", ErrDuplicate, e.ID)), nil
			}
			kind[i] = repeat
			continue
		}
		if seen != nil {
			seen[e.ID] = e
		}
		known, err := w.known(e)
		if w.err != nil {
			return 0, nil, w.err
		}
		if err != nil {
			return 0, prefix(i, err), nil
		}
		if known {
			kind[i] = stored
		} else {
			allKnown = false
		}
	}
	if !allKnown {
		if full := w.overMark(now); full != nil {
			return 0, full, nil
		}
	}
	for i, e := range events {
		switch kind[i] {
		case fresh:
			if err := w.enqueue(e, now); err != nil {
				return 0, nil, err
			}
			created++
		case repeat: // the earlier one is stored now
			if _, err := w.known(e); err != nil {
				return 0, nil, err
			}
		}
	}
	return created, nil, nil
}

// fullRetryAfter is the Retry-After hint of a FullError: the store drains at
// the broker's pace, which it cannot predict, so this is only a polite pause.
const fullRetryAfter = 5 * time.Second

// overMark reports the first high-water mark (Options.MaxPending, MaxBytes,
// MaxPendingAge) that the store has reached at the start of the transaction,
// or nil. It reads the counters and the first pending keys of by_status.
func (w *writer) overMark(now time.Time) *FullError {
	o := &w.s.opts
	if o.MaxPending > 0 {
		if n := w.c.status[statusCode(outbox.StatusPending)]; n >= o.MaxPending {
			return &FullError{Mark: "max_pending", Value: n, Limit: o.MaxPending, RetryAfter: fullRetryAfter}
		}
	}
	if o.MaxBytes > 0 && w.c.bytes >= o.MaxBytes {
		return &FullError{Mark: "max_bytes", Value: w.c.bytes, Limit: o.MaxBytes, RetryAfter: fullRetryAfter}
	}
	if o.MaxPendingAge > 0 {
		if tk, _ := pendingScan(w.byStatus, nil, nil, nil, 0, &w.c.prio); tk != nil {
			if age := now.Sub(timeOfKey(tk)); age > o.MaxPendingAge {
				return &FullError{Mark: "max_pending_age", Value: int64(age), Limit: int64(o.MaxPendingAge), RetryAfter: fullRetryAfter}
			}
		}
	}
	return nil
}
