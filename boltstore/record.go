package boltstore

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/fitiqcore/outbox"
	bolt "go.etcd.io/bbolt"
)

var kInFlightMark = []byte("inflight_mark")

// Record is the relay's one transaction per batch of publish outcomes: it
// completes the acked events (as Complete), records the failed attempts (as
// Fail) and, when mark is not zero, stores the in-flight mark: the relay's
// promise that every publish whose outcome is still unknown was sent at or
// after it. A restarted relay reads the stream back from Mark.
func (s *Store) Record(ctx context.Context, acks []Ack, fails []Failure, mark time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := s.opts.Now().UTC()
	err := s.db.Update(func(tx *bolt.Tx) error {
		w := s.writer(tx)
		for _, a := range acks {
			if err := w.ack(a, now); err != nil {
				return err
			}
		}
		for _, f := range fails {
			if err := w.fail(f); err != nil {
				return err
			}
		}
		if !mark.IsZero() {
			if err := w.meta.Put(kInFlightMark, u64(uint64(mark.UnixNano()))); err != nil {
				return err
			}
		}
		return w.finish()
	})
	if err != nil {
		return fmt.Errorf("boltstore: record outcomes: %w", err)
	}
	return nil
}

// Mark returns the in-flight mark last stored by Record (zero when none).
func (s *Store) Mark(ctx context.Context) (time.Time, error) {
	if err := ctx.Err(); err != nil {
		return time.Time{}, err
	}
	var t time.Time
	err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bMeta).Get(kInFlightMark); len(v) == 8 {
			t = fromNanos(int64(binary.BigEndian.Uint64(v)))
		}
		return nil
	})
	return t, err
}

// pendingHead returns the event of seq when it is a pending head (filed as
// ready or delayed): only such an event can have been handed out by Due, and
// a stale or stray seq must not complete or fail an event out of its
// entity's order.
func (w *writer) pendingHead(seq uint64) (*outbox.Event, error) {
	e, err := w.get(seq)
	if err != nil || e == nil || e.Status != outbox.StatusPending || !w.isReady(e) {
		return nil, err
	}
	return e, nil
}

func (w *writer) ack(a Ack, now time.Time) error {
	e, err := w.pendingHead(a.Seq)
	if err != nil || e == nil {
		return err
	}
	if err := w.unready(e); err != nil {
		return err
	}
	e.AttemptCount++
	e.LastAttemptAt = a.At.UTC()
	return w.complete(e, now)
}

func (w *writer) fail(f Failure) error {
	e, err := w.pendingHead(f.Seq)
	if err != nil || e == nil {
		return err
	}
	if err := w.unready(e); err != nil {
		return err
	}
	e.AttemptCount++
	e.LastAttemptAt = f.At.UTC()
	e.LastError = outbox.TruncateError(f.Err)
	e.NextAttemptAt = time.Time{}
	if f.Permanent || e.AttemptCount >= e.MaxAttempts {
		return w.setStatus(e, outbox.StatusFailed)
	}
	e.NextAttemptAt = f.NextAttemptAt.UTC()
	if err := w.put(e); err != nil {
		return err
	}
	return w.ready(e)
}
