package boltstore

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/fitiqcore/outbox"
	bolt "go.etcd.io/bbolt"
)

// Fairness is how Due shares a priority among users (Options.Fairness).
type Fairness string

const (
	// FairnessFIFO (the default): within a priority, due events are taken in
	// acceptance order, whoever's they are.
	FairnessFIFO Fairness = "fifo"
	// FairnessUser: within a priority, due events are taken round-robin
	// across users (events without a user count as one more user), so that
	// one user's backlog delays another user's events by about one batch at
	// most. Priorities still come first; per-entity order is unchanged (Due
	// only ever returns heads).
	FairnessUser Fairness = "user"
)

// bReadyUser files the ready heads by user, for FairnessUser only: rank ‖
// len(2) ‖ user_id ‖ seq → ∅. It exists exactly when the store is opened
// with FairnessUser: Open builds it from ready, and drops it when opened
// with FairnessFIFO, so that it is never stale and costs a FIFO store
// nothing.
var bReadyUser = []byte("ready_user")

func fairKey(prio int, user string, seq uint64) []byte {
	k := make([]byte, 0, 1+2+len(user)+8)
	k = append(k, rprio(prio))
	k = binary.BigEndian.AppendUint16(k, uint16(len(user)))
	k = append(k, user...)
	return binary.BigEndian.AppendUint64(k, seq)
}

// initFairness creates and fills ready_user, or drops it, as the store's
// fairness asks.
func (s *Store) initFairness(tx *bolt.Tx) error {
	if s.opts.Fairness != FairnessUser {
		if tx.Bucket(bReadyUser) != nil {
			return tx.DeleteBucket(bReadyUser)
		}
		return nil
	}
	if tx.Bucket(bReadyUser) != nil {
		return nil
	}
	b, err := tx.CreateBucket(bReadyUser)
	if err != nil {
		return err
	}
	w := s.reader(tx)
	c := tx.Bucket(bReady).Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if len(k) != 9 {
			return w.corrupt("ready key %x", k)
		}
		seq := binary.BigEndian.Uint64(k[1:])
		r := record(w.events.Get(k[1:]))
		if r == nil || r.check() != nil {
			return w.corrupt("ready entry %x names seq %d, which has no record", k, seq)
		}
		_, user, err := r.keys()
		if err != nil {
			return w.corrupt("event seq %d: %v", seq, err)
		}
		if err := b.Put(fairKey(r.priority(), string(user), seq), present); err != nil {
			return err
		}
	}
	return nil
}

// fairReady appends to events up to n ready heads of priority rank rank,
// round-robin across users: every user with a ready head gives one before
// any gives a second. The first round starts after the user served first
// last time (s.fairNext), so that with more users than a batch holds, the
// batches go round the users.
func (s *Store) fairReady(w *writer, rank byte, n int, skip func(uint64) bool, events []*outbox.Event) ([]*outbox.Event, error) {
	b := w.tx.Bucket(bReadyUser)
	if b == nil {
		return nil, fmt.Errorf("%w: bucket ready_user is missing", ErrCorrupt)
	}
	c := b.Cursor()
	type userPos struct {
		prefix []byte // rank ‖ len ‖ user
		last   []byte // the last key taken
	}
	// next returns the first key after from within prefix whose seq is not
	// skipped.
	next := func(prefix, from []byte, inclusive bool) ([]byte, error) {
		k, _ := c.Seek(from)
		if k != nil && !inclusive && bytes.Equal(k, from) {
			k, _ = c.Next()
		}
		for ; k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			if len(k) != len(prefix)+8 {
				return nil, w.corrupt("ready_user key %x", k)
			}
			if !skip(binary.BigEndian.Uint64(k[len(prefix):])) {
				return k, nil
			}
		}
		return nil, nil
	}
	take := func(k []byte) error {
		seq := binary.BigEndian.Uint64(k[len(k)-8:])
		e, err := w.get(seq)
		if err == nil && e == nil {
			err = w.corrupt("ready_user entry %x names seq %d, which has no record", k, seq)
		}
		if err == nil {
			events = append(events, e)
		}
		return err
	}
	prefixOf := func(k []byte) ([]byte, error) {
		if len(k) < 3 {
			return nil, w.corrupt("ready_user key %x", k)
		}
		end := 3 + int(binary.BigEndian.Uint16(k[1:]))
		if len(k) != end+8 {
			return nil, w.corrupt("ready_user key %x", k)
		}
		return k[:end:end], nil
	}

	// Round 1: each user once, from where the last Due left off, wrapping.
	s.fairMu.Lock()
	start := s.fairNext[rank]
	s.fairMu.Unlock()
	if start == nil || start[0] != rank {
		start = []byte{rank}
	}
	var active []userPos
	var after []byte // past the last user served in round 1: where the next Due starts
	seek := start
	wrapped := false
	for got := 0; got < n; {
		k, _ := c.Seek(seek)
		if k == nil || k[0] != rank {
			if wrapped || bytes.Equal(start, []byte{rank}) {
				break
			}
			wrapped, seek = true, []byte{rank}
			continue
		}
		prefix, err := prefixOf(k)
		if err != nil {
			return nil, err
		}
		if wrapped && bytes.Compare(prefix, start) >= 0 {
			break // round the users once
		}
		// Past this user's keys: its prefix with every seq byte 0xff, and
		// one more byte.
		seek = append(append(append(make([]byte, 0, len(prefix)+9), prefix...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), 0)
		kk, err := next(prefix, prefix, true)
		if err != nil {
			return nil, err
		}
		if kk == nil {
			continue // all of this user's ready heads are in flight
		}
		kk = append([]byte(nil), kk...)
		if err := take(kk); err != nil {
			return nil, err
		}
		active = append(active, userPos{prefix: append([]byte(nil), prefix...), last: kk})
		after = seek
		got++
	}
	if after != nil {
		s.fairMu.Lock()
		s.fairNext[rank] = after
		s.fairMu.Unlock()
	}
	// Later rounds: each user still holding ready heads gives its next.
	got := len(active)
	for got < n && len(active) > 0 {
		kept := active[:0]
		for _, u := range active {
			if got == n {
				kept = append(kept, u)
				continue
			}
			k, err := next(u.prefix, u.last, false)
			if err != nil {
				return nil, err
			}
			if k == nil {
				continue
			}
			u.last = append([]byte(nil), k...)
			if err := take(u.last); err != nil {
				return nil, err
			}
			got++
			kept = append(kept, u)
		}
		active = kept
	}
	return events, nil
}
