package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/fitiqcore/outbox"
	bolt "go.etcd.io/bbolt"
)

// Stats summarises the store, for all users (Store.Stats) or for one
// (Store.UserStats). It is read from counters kept in the same transactions
// that change events, so reading it costs O(1) whatever the store holds.
type Stats struct {
	// Total is the number of stored events; the next four split it by status.
	Total      int64
	Pending    int64
	Processing int64
	Completed  int64
	Failed     int64
	// Stale counts pending events accepted more than Options.StaleAfter ago.
	// It is exact when at most staleReadLimit (1024) pending events became
	// stale since the last stale sweep (RunRetention runs one every few
	// seconds), and a lower bound otherwise.
	Stale int64
	// OldestPendingAt is the accepted_at of the oldest pending event; nil
	// when none is pending. For one user (UserStats) it is that of the
	// user's first pending event in acceptance order, which is the oldest
	// unless this host's clock went back meanwhile.
	OldestPendingAt *time.Time
	// NewestCompletedAt is the time of the latest completion recorded,
	// also when the event was removed since (RemoveOnAck, retention). For a
	// user it is kept while the user has events in the store. nil when none.
	NewestCompletedAt *time.Time
	// SuccessRate is completed/(completed+failed) of the stored events; 1
	// when both are 0.
	SuccessRate float64
	// HasIssues is Failed > 0 || Stale > 0: something needs an operator.
	HasIssues bool
	// PendingByPriority counts pending events per priority (index =
	// priority); for all users only, zero in UserStats.
	PendingByPriority [outbox.MaxPriority + 1]int64
	// Bytes is the sum of the sizes of the stored event records (their
	// binary encoding; index entries and bbolt's own overhead not counted).
	Bytes int64
}

// staleReadLimit bounds the pending entries of by_status a Stats read walks to
// correct the stale counter for the time passed since the last sweep.
const staleReadLimit = 1024

// Stats returns the statistics of all users. It reads a few keys and seeks
// the first pending entry of each priority that has pending events: O(1)
// whatever the store holds (each seek is O(log n) in bbolt's B+tree).
func (s *Store) Stats(ctx context.Context) (Stats, error) {
	if err := ctx.Err(); err != nil {
		return Stats{}, err
	}
	var st Stats
	err := s.view(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bMeta)
		c := loadCounts(meta)
		st = c.stats()
		s.readPending(&st, meta, tx.Bucket(bByStatus), nil, &c.prio)
		return nil
	})
	if err != nil {
		return Stats{}, fmt.Errorf("boltstore: stats: %w", err)
	}
	return st, nil
}

// UserStats returns the statistics of one user's events (zero for a user
// with none). PendingByPriority stays zero. Like Stats it costs O(1).
// userID "" means all users: UserStats is then Stats.
func (s *Store) UserStats(ctx context.Context, userID string) (Stats, error) {
	if userID == "" {
		return s.Stats(ctx)
	}
	if err := ctx.Err(); err != nil {
		return Stats{}, err
	}
	var st Stats
	err := s.view(func(tx *bolt.Tx) error {
		u, err := loadUserCounts(tx.Bucket(bUser).Get(userCountsKey(userID)))
		if err != nil {
			return fmt.Errorf("%w: counters of user %q: %v", ErrCorrupt, userID, err)
		}
		st = u.stats()
		// The events that became stale since the sweep: the global pending
		// index holds each pending event's user.
		lo, hi, sign := s.staleWindow(tx.Bucket(bMeta))
		if lo != nil {
			st.Stale += sign * int64(userPendingScan(tx.Bucket(bByStatus), lo, hi, staleReadLimit, userID))
		}
		if u.firstPending != 0 {
			r := record(tx.Bucket(bEvents).Get(u64(u.firstPending)))
			if err := r.check(); err != nil {
				return fmt.Errorf("%w: first pending event %d of user %q: %v", ErrCorrupt, u.firstPending, userID, err)
			}
			t := r.time(offAccepted)
			st.OldestPendingAt = &t
		}
		st.finish()
		return nil
	})
	if err != nil {
		return Stats{}, fmt.Errorf("boltstore: stats of user %q: %w", userID, err)
	}
	return st, nil
}

// readPending completes st from the pending entries under base in b: the
// oldest pending event, and the events that became stale since the
// watermark (or stopped being stale, when the cutoff moved back), at most
// staleReadLimit of them.
func (s *Store) readPending(st *Stats, meta, b *bolt.Bucket, base []byte, prio *[outbox.MaxPriority + 1]int64) {
	lo, hi, sign := s.staleWindow(meta)
	oldest, n := pendingScan(b, base, lo, hi, staleReadLimit, prio)
	st.Stale += sign * int64(n)
	if oldest != nil {
		t := timeOfKey(oldest)
		st.OldestPendingAt = &t
	}
	st.finish()
}

// staleWindow is the range of time keys between the stale watermark and the
// cutoff now, and +1 when the events in it became stale since the sweep, -1
// when they stopped being stale (the clock went back); lo is nil when the
// two meet.
func (s *Store) staleWindow(meta *bolt.Bucket) (lo, hi []byte, sign int64) {
	mark, cutoff := loadStaleWatermark(meta), s.staleCutoff()
	switch c := bytes.Compare(mark, cutoff); {
	case c == 0:
		return nil, nil, 1
	case c > 0:
		return cutoff, mark, -1
	}
	return mark, cutoff, 1
}

func (st *Stats) finish() {
	st.Total = st.Pending + st.Processing + st.Completed + st.Failed
	st.SuccessRate = 1
	if d := st.Completed + st.Failed; d > 0 {
		st.SuccessRate = float64(st.Completed) / float64(d)
	}
	st.HasIssues = st.Failed > 0 || st.Stale > 0
}

// staleCutoff is the time key before which pending events are stale now.
func (s *Store) staleCutoff() []byte {
	return timeKey(s.opts.Now().Add(-s.opts.StaleAfter), 0)
}

// sweepStaleStep moves the stale watermark towards cutoff over at most max
// pending events, counting those that became stale (or uncounting those that
// are no longer, when cutoff lies before the watermark), for all users and
// per user. It reports whether the watermark reached cutoff.
func (w *writer) sweepStaleStep(cutoff []byte, max int) (done bool) {
	mark := w.staleWatermark()
	n := 0
	switch cmp := bytes.Compare(mark, cutoff); {
	case cmp == 0:
		return true
	case cmp < 0: // forward: [mark, cutoff) became stale
		m := newPendingCursor(w.byStatus, nil, mark, false)
		for tk, v := m.next(); tk != nil && bytes.Compare(tk, cutoff) < 0; tk, v = m.next() {
			if n == max {
				w.setStaleWatermark(tk)
				return false
			}
			w.c.stale++
			w.user(string(v)).stale++
			n++
		}
	default: // backward: [cutoff, mark) is no longer stale
		m := newPendingCursor(w.byStatus, nil, mark, true)
		var last []byte // the lowest key uncounted so far
		for tk, v := m.next(); tk != nil && bytes.Compare(tk, cutoff) >= 0; tk, v = m.next() {
			if n == max {
				w.setStaleWatermark(last)
				return false
			}
			w.c.stale--
			w.user(string(v)).stale--
			n++
			last = tk
		}
	}
	w.setStaleWatermark(cutoff)
	return true
}

func (w *writer) setStaleWatermark(k []byte) {
	w.watermark = append([]byte(nil), k...)
	w.watermarkDirty = true
}

// sweepStale brings the stale counters up to date, in transactions of at
// most staleSweepBatch events. When no pending event lies between the
// watermark and the cutoff, it writes nothing: the watermark may lag, which
// changes nothing the counters or a read report.
func (s *Store) sweepStale(ctx context.Context) error {
	const staleSweepBatch = 10000
	if err := ctx.Err(); err != nil {
		return err
	}
	var idle bool
	if err := s.view(func(tx *bolt.Tx) error {
		lo, hi := loadStaleWatermark(tx.Bucket(bMeta)), s.staleCutoff()
		if bytes.Compare(lo, hi) > 0 {
			lo, hi = hi, lo
		}
		c := loadCounts(tx.Bucket(bMeta))
		_, n := pendingScan(tx.Bucket(bByStatus), nil, lo, hi, 1, &c.prio)
		idle = n == 0
		return nil
	}); err != nil || idle {
		return err
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		var done bool
		err := s.update(func(tx *bolt.Tx) error {
			w := s.writer(tx)
			done = w.sweepStaleStep(s.staleCutoff(), staleSweepBatch)
			return w.finish()
		})
		if err != nil {
			return fmt.Errorf("boltstore: stale sweep: %w", err)
		}
		if done {
			return nil
		}
	}
}

// counts are the counters of all users, kept in meta/stats.
type counts struct {
	status          [len(statusCodes)]int64
	stale, bytes    int64
	newestCompleted int64 // unix nanoseconds; 0 when none
	prio            [outbox.MaxPriority + 1]int64
}

const countsLen = 8 * (len(statusCodes) + 3 + outbox.MaxPriority + 1)

func loadCounts(meta *bolt.Bucket) counts {
	var c counts
	v := meta.Get(kCounts)
	if len(v) != countsLen {
		return c
	}
	next := func() int64 {
		n := int64(binary.BigEndian.Uint64(v))
		v = v[8:]
		return n
	}
	for i := range c.status {
		c.status[i] = next()
	}
	c.stale, c.bytes, c.newestCompleted = next(), next(), next()
	for i := range c.prio {
		c.prio[i] = next()
	}
	return c
}

func (c *counts) encode() []byte {
	b := make([]byte, 0, countsLen)
	for _, v := range c.status {
		b = binary.BigEndian.AppendUint64(b, uint64(v))
	}
	for _, v := range [...]int64{c.stale, c.bytes, c.newestCompleted} {
		b = binary.BigEndian.AppendUint64(b, uint64(v))
	}
	for _, v := range c.prio {
		b = binary.BigEndian.AppendUint64(b, uint64(v))
	}
	return b
}

func (c *counts) stats() Stats {
	st := Stats{
		Pending:           c.status[statusCode(outbox.StatusPending)],
		Processing:        c.status[statusCode(outbox.StatusProcessing)],
		Completed:         c.status[statusCode(outbox.StatusCompleted)],
		Failed:            c.status[statusCode(outbox.StatusFailed)],
		Stale:             c.stale,
		Bytes:             c.bytes,
		PendingByPriority: c.prio,
	}
	if c.newestCompleted != 0 {
		t := time.Unix(0, c.newestCompleted).UTC()
		st.NewestCompletedAt = &t
	}
	return st
}

// userCounts are one user's counters, kept in the user bucket under
// len(2)|user_id|0xff, at the end of the user's range, where its new events
// go. A user with no events has no entry. firstPending is the seq of the
// user's first pending event (0: none): its oldest pending event, and where
// walks over its pending events start. It moves forward when that event
// leaves pending (advanceFirstPending), so that it costs O(1) amortized.
type userCounts struct {
	status          [len(statusCodes)]int64
	stale, bytes    int64
	newestCompleted int64
	firstPending    uint64
	advance         bool // not stored: firstPending left pending in this transaction
}

const userCountsLen = 8 * (len(statusCodes) + 4)

// loadUserCounts decodes a user's counters; nil (no entry) is a user with no
// events.
func loadUserCounts(v []byte) (*userCounts, error) {
	u := &userCounts{}
	if v == nil {
		return u, nil
	}
	if len(v) != userCountsLen {
		return u, fmt.Errorf("%d bytes, want %d", len(v), userCountsLen)
	}
	for i := range u.status {
		u.status[i] = int64(binary.BigEndian.Uint64(v[8*i:]))
	}
	v = v[8*len(u.status):]
	u.stale = int64(binary.BigEndian.Uint64(v))
	u.bytes = int64(binary.BigEndian.Uint64(v[8:]))
	u.newestCompleted = int64(binary.BigEndian.Uint64(v[16:]))
	u.firstPending = binary.BigEndian.Uint64(v[24:])
	return u, nil
}

func (u *userCounts) encode() []byte {
	b := make([]byte, 0, userCountsLen)
	for _, v := range u.status {
		b = binary.BigEndian.AppendUint64(b, uint64(v))
	}
	for _, v := range [...]int64{u.stale, u.bytes, u.newestCompleted} {
		b = binary.BigEndian.AppendUint64(b, uint64(v))
	}
	return binary.BigEndian.AppendUint64(b, u.firstPending)
}

// empty: the user has no events left.
func (u *userCounts) empty() bool {
	return u.status == [len(statusCodes)]int64{} && u.stale == 0 && u.bytes == 0
}

func (u *userCounts) stats() Stats {
	c := counts{status: u.status, stale: u.stale, bytes: u.bytes, newestCompleted: u.newestCompleted}
	return c.stats()
}
