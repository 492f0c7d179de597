package boltstore

import (
	"bytes"

	"github.com/fitiqcore/outbox"
	bolt "go.etcd.io/bbolt"
)

// pendingCursor walks the pending entries of by_status (or one user's in
// by_user_status) in accepted_at order, merging the ten priority ranges of
// the index. It yields each entry's time key (accepted_at(8)|seq(8)) and
// value. Each step costs O(priorities), independent of the store's size.
type pendingCursor struct {
	back bool
	rs   [outbox.MaxPriority + 1]pendingRange
}

type pendingRange struct {
	c    *bolt.Cursor
	pfx  []byte
	k, v []byte // current entry; k nil when the range is exhausted
}

// newPendingCursor positions a pendingCursor over bucket b, whose keys are
// base|status|rank|time key. Forward, it starts at the first entry whose
// time key is >= from (nil: the first); backwards, at the last one < from
// (nil: the last).
func newPendingCursor(b *bolt.Bucket, base, from []byte, back bool) *pendingCursor {
	m := &pendingCursor{back: back}
	for r := range m.rs {
		pr := &m.rs[r]
		pr.pfx = append(append(make([]byte, 0, len(base)+2+16), base...), statusCode(outbox.StatusPending), byte(r))
		pr.c = b.Cursor()
		switch {
		case !back:
			pr.k, pr.v = pr.c.Seek(append(pr.pfx, from...))
		case from == nil:
			pr.k, pr.v = lastWithPrefix(pr.c, pr.pfx)
		default:
			if pr.k, pr.v = pr.c.Seek(append(pr.pfx, from...)); pr.k == nil {
				pr.k, pr.v = pr.c.Last()
			} else {
				pr.k, pr.v = pr.c.Prev()
			}
		}
		pr.check()
	}
	return m
}

func (pr *pendingRange) check() {
	if pr.k != nil && (len(pr.k) != len(pr.pfx)+16 || !hasPrefix(pr.k, pr.pfx)) {
		pr.k, pr.v = nil, nil
	}
}

// next returns the next entry's time key and value, nil at the end. The
// slices are bbolt's: valid until the transaction ends.
func (m *pendingCursor) next() (tk, v []byte) {
	var best *pendingRange
	for r := range m.rs {
		pr := &m.rs[r]
		if pr.k == nil {
			continue
		}
		if best == nil {
			best = pr
			continue
		}
		c := bytes.Compare(pr.k[len(pr.pfx):], best.k[len(best.pfx):])
		if (!m.back && c < 0) || (m.back && c > 0) {
			best = pr
		}
	}
	if best == nil {
		return nil, nil
	}
	tk, v = best.k[len(best.pfx):], best.v
	if m.back {
		best.k, best.v = best.c.Prev()
	} else {
		best.k, best.v = best.c.Next()
	}
	best.check()
	return tk, v
}

// pendingScan reads, in one cursor pass over the ten priority ranges of the
// pending entries of bucket b under base (nil in by_status, len(2)|user in
// by_user_status), the oldest entry's time key (nil when none) and the
// number of entries whose time key lies in [lo, hi), at most limit (none
// counted when lo is nil). It costs one or two seeks per priority; with
// prio (pending counts per priority), none for a priority with no pending
// event. The returned slice is bbolt's: valid until the transaction ends.
func pendingScan(b *bolt.Bucket, base, lo, hi []byte, limit int, prio *[outbox.MaxPriority + 1]int64) (oldest []byte, n int) {
	c := b.Cursor()
	pfx := append(append(make([]byte, 0, len(base)+2+16), base...), statusCode(outbox.StatusPending), 0)
	in := func(k []byte) bool { return k != nil && len(k) == len(pfx)+16 && hasPrefix(k, pfx) }
	for r := range outbox.MaxPriority + 1 {
		if prio != nil && prio[outbox.MaxPriority-r] == 0 {
			continue
		}
		pfx[len(pfx)-1] = byte(r)
		k, _ := c.Seek(pfx)
		if !in(k) {
			continue
		}
		if tk := k[len(pfx):]; oldest == nil || bytes.Compare(tk, oldest) < 0 {
			oldest = tk
		}
		if lo == nil || bytes.Compare(k[len(pfx):], hi) >= 0 {
			continue
		}
		if bytes.Compare(k[len(pfx):], lo) < 0 {
			if k, _ = c.Seek(append(pfx, lo...)); !in(k) {
				continue
			}
		}
		for ; in(k) && bytes.Compare(k[len(pfx):], hi) < 0 && n < limit; k, _ = c.Next() {
			n++
		}
	}
	return oldest, n
}

// userPendingScan counts the pending entries of by_status whose time key is
// in [lo, hi) and whose value (the event's user) is user, examining at most
// limit entries in all.
func userPendingScan(b *bolt.Bucket, lo, hi []byte, limit int, user string) (n int) {
	c := b.Cursor()
	pfx := []byte{statusCode(outbox.StatusPending), 0}
	examined := 0
	for r := range outbox.MaxPriority + 1 {
		pfx[1] = byte(r)
		start := append(append(make([]byte, 0, 18), pfx...), lo...)
		for k, v := c.Seek(start); k != nil && len(k) == stateKeyLen && hasPrefix(k, pfx) && bytes.Compare(k[2:], hi) < 0; k, v = c.Next() {
			if examined == limit {
				return n
			}
			examined++
			if string(v) == user {
				n++
			}
		}
	}
	return n
}
