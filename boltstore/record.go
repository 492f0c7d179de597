package boltstore

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/fitiqcore/outbox"
	bolt "go.etcd.io/bbolt"
)

var (
	kReadBack = []byte("readback_from") // stream sequence the read-back starts at
	// kInFlightMark is the time-based mark that readback_from replaced: a
	// file written by an older build may hold it until the next Record.
	kInFlightMark = []byte("inflight_mark")
)

// Record is the relay's one transaction per batch of publish outcomes: it
// completes the acked events (as Complete), records the failed attempts (as
// Fail) and, when mark is not zero, stores the read-back mark: the relay's
// promise that every publish whose outcome is still unknown was stored, if
// at all, at stream sequence mark or later. A restarted relay reads the stream
// back from Mark. A stream sequence, unlike a time, does not depend on the
// clocks of this host and the servers agreeing.
func (s *Store) Record(ctx context.Context, acks []Ack, fails []Failure, mark uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := s.opts.Now().UTC()
	err := s.update(func(tx *bolt.Tx) error {
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
		if mark != 0 {
			if err := w.meta.Put(kReadBack, u64(mark)); err != nil {
				return err
			}
			if err := w.meta.Delete(kInFlightMark); err != nil {
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

// Mark returns the read-back mark last stored by Record: the stream sequence
// to read back from (0 when none). A file last written by an older build
// holds a time instead (since; zero when none): the send time of the oldest
// publish whose outcome was unknown, by this host's clock.
func (s *Store) Mark(ctx context.Context) (from uint64, since time.Time, err error) {
	if err := ctx.Err(); err != nil {
		return 0, time.Time{}, err
	}
	err = s.view(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bMeta)
		if v := meta.Get(kReadBack); v != nil {
			if len(v) != 8 {
				return fmt.Errorf("%w: meta/%s is %d bytes, want 8", ErrCorrupt, kReadBack, len(v))
			}
			from = binary.BigEndian.Uint64(v)
			return nil
		}
		if v := meta.Get(kInFlightMark); v != nil {
			if len(v) != 8 {
				return fmt.Errorf("%w: meta/%s is %d bytes, want 8", ErrCorrupt, kInFlightMark, len(v))
			}
			since = fromNanos(int64(binary.BigEndian.Uint64(v)))
		}
		return nil
	})
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("boltstore: read-back mark: %w", err)
	}
	return from, since, nil
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
	if f.Permanent || (!f.Unknown && e.AttemptCount >= e.MaxAttempts) {
		return w.setStatus(e, outbox.StatusFailed)
	}
	e.NextAttemptAt = f.NextAttemptAt.UTC()
	if err := w.put(e); err != nil {
		return err
	}
	return w.ready(e)
}
