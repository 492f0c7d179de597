package boltstore

import (
	"context"
	"fmt"
	"time"

	"github.com/fitiqcore/outbox"
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
