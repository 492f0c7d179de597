package boltstore_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// t0 is the fixed start of the fake clocks.
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// clock is a settable clock for Options.Now; Batch calls it from bbolt's
// goroutine, hence the mutex.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: t0} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return c.now
}

// mustOpen opens a store in a fresh temporary directory. At cleanup it checks
// the store's invariants, closes it, and runs bbolt's consistency check on the
// file.
func mustOpen(t testing.TB, opts *boltstore.Options) *boltstore.Store {
	t.Helper()
	return mustOpenPath(t, filepath.Join(t.TempDir(), "outbox.db"), opts)
}

// mustOpenPath is mustOpen on a given path (to reopen a closed store).
func mustOpenPath(t testing.TB, path string, opts *boltstore.Options) *boltstore.Store {
	t.Helper()
	s, err := boltstore.Open(path, opts)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	t.Cleanup(func() {
		// A test may have closed the store itself (to reopen it).
		if err := s.DB().View(func(*bolt.Tx) error { return nil }); !errors.Is(err, berrors.ErrDatabaseNotOpen) {
			if err := checkInvariants(s); err != nil {
				t.Errorf("invariants at cleanup: %v", err)
			}
		}
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		checkFile(t, path)
	})
	return s
}

// checkFile reopens a closed store file with bbolt and runs tx.Check.
func checkFile(t testing.TB, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Errorf("reopen %s for check: %v", path, err)
		return
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	})
	if err != nil {
		t.Errorf("bbolt check: %v", err)
	}
}

// assertInvariants fails the test at once when the store breaks an invariant.
func assertInvariants(t testing.TB, s *boltstore.Store) {
	t.Helper()
	if err := checkInvariants(s); err != nil {
		t.Fatalf("invariants: %v", err)
	}
}

// Status codes as the by_status index spells them (codec.go).
var statusCode = map[outbox.Status]byte{
	outbox.StatusPending: 0, outbox.StatusProcessing: 1, outbox.StatusCompleted: 2, outbox.StatusFailed: 3,
}

// tally is the per-status part of Stats.
type tally struct{ Total, Pending, Processing, Completed, Failed int64 }

func tallyOf(st boltstore.Stats) tally {
	return tally{st.Total, st.Pending, st.Processing, st.Completed, st.Failed}
}

// statsEqual compares two Stats, the times by value.
func statsEqual(a, b boltstore.Stats) bool {
	timeEq := func(x, y *time.Time) bool { return (x == nil) == (y == nil) && (x == nil || x.Equal(*y)) }
	if !timeEq(a.OldestPendingAt, b.OldestPendingAt) || !timeEq(a.NewestCompletedAt, b.NewestCompletedAt) {
		return false
	}
	a.OldestPendingAt, b.OldestPendingAt, a.NewestCompletedAt, b.NewestCompletedAt = nil, nil, nil, nil
	return a == b
}

// rawCounts is a counter record: the meta/stats key or a user_counts entry.
type rawCounts struct {
	status                        [4]int64
	stale, bytes, newestCompleted int64
	prio                          [10]int64 // meta/stats only
	firstPending                  uint64    // user counters only: the seq of the user's first pending event
}

func decodeRawCounts(v []byte, withPrio bool) (rawCounts, error) {
	want := 8 * 7
	if withPrio {
		want += 8 * 10
	} else {
		want += 8
	}
	var c rawCounts
	if len(v) != want {
		return c, fmt.Errorf("counter record of %d bytes, want %d", len(v), want)
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
	if withPrio {
		for i := range c.prio {
			c.prio[i] = next()
		}
	} else {
		c.firstPending = uint64(next())
	}
	return c, nil
}

// rawState is what the store's buckets hold, read in one transaction.
type rawState struct {
	events     map[uint64]int       // events: seq → record size
	ids        map[string]uint64    // ids: uuid → seq
	tombs      map[string]int64     // ids: uuid → removed_at of a tombstone
	tombIndex  map[string]int64     // tombstones: uuid → removed_at
	idle       map[string]int64     // idle_entities: entity → idle since
	ready      map[uint64]int       // ready/<prio>: seq → prio
	readyUser  map[uint64]fairEntry // ready_user (FairnessUser): seq → prio, user; nil without the bucket
	delayed    map[uint64]time.Time // delayed: seq → next attempt
	byEntity   map[string]uint64    // by_entity: entity|entity_seq → seq
	entities   map[string][3]uint64 // entities: entity → last entity_seq, unfinished, idle since
	byStatus   map[string]string    // by_status: key → value
	byUser     map[string]string    // user list: user|seq → status|rank
	userCounts map[string]rawCounts // user_counts
	counts     rawCounts            // meta/stats
	staleMark  []byte               // meta/stale_mark (nil when absent)
}

type fairEntry struct {
	prio int
	user string
}

func idxKey(s string, n uint64) string { return fmt.Sprintf("%q|%d", s, n) }

// stateKey is the by_status key the store files e under: status(1)|rank(1)|
// time(8)|seq(8), rank 0 and completed_at for a completed event, 9-priority
// and accepted_at otherwise.
func stateKey(e *outbox.Event) string {
	k := []byte{statusCode[e.Status], byte(outbox.MaxPriority - e.Priority)}
	t := e.AcceptedAt
	if e.DeliverAt.After(t) { // a delayed event is pending from its deliver_at
		t = e.DeliverAt
	}
	if e.Status == outbox.StatusCompleted {
		k[1], t = 0, e.CompletedAt
	}
	return string(append(k, timeKey(t, e.Seq)...))
}

// splitLenPrefixed splits len(2)|s|rest.
func splitLenPrefixed(k []byte) (s string, rest []byte, ok bool) {
	if len(k) < 2 {
		return "", nil, false
	}
	n := int(binary.BigEndian.Uint16(k))
	if len(k) < 2+n {
		return "", nil, false
	}
	return string(k[2 : 2+n]), k[2+n:], true
}

func readRaw(db *bolt.DB) (*rawState, error) {
	r := &rawState{
		events: map[uint64]int{}, ids: map[string]uint64{}, ready: map[uint64]int{},
		delayed: map[uint64]time.Time{}, byEntity: map[string]uint64{}, entities: map[string][3]uint64{},
		tombs: map[string]int64{}, tombIndex: map[string]int64{}, idle: map[string]int64{},
		byStatus: map[string]string{}, byUser: map[string]string{},
		userCounts: map[string]rawCounts{},
	}
	err := db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket([]byte("meta")).Get([]byte("version")); len(v) != 8 || binary.BigEndian.Uint64(v) != 3 {
			return fmt.Errorf("layout version %x, want 3", v)
		}
		for _, gone := range []string{"by_entity", "entities", "by_user_status", "by_user", "by_type", "user_counts"} {
			if tx.Bucket([]byte(gone)) != nil {
				return fmt.Errorf("bucket %s of layout 2 left over", gone)
			}
		}
		each := func(name string, fn func(k, v []byte) error) error {
			b := tx.Bucket([]byte(name))
			if b == nil {
				return fmt.Errorf("bucket %s missing", name)
			}
			return b.ForEach(func(k, v []byte) error {
				if err := fn(k, v); err != nil {
					return fmt.Errorf("%s: %w", name, err)
				}
				return nil
			})
		}
		if err := each("events", func(k, v []byte) error {
			if len(k) != 8 {
				return fmt.Errorf("key %x", k)
			}
			r.events[binary.BigEndian.Uint64(k)] = len(v)
			return nil
		}); err != nil {
			return err
		}
		if err := each("ids", func(k, v []byte) error {
			switch {
			case len(k) == 16 && len(v) == 8:
				r.ids[uuid.UUID(k).String()] = binary.BigEndian.Uint64(v)
			case len(k) == 16 && len(v) == 32: // a tombstone: removed_at|content hash|seq|entity_seq
				r.tombs[uuid.UUID(k).String()] = int64(binary.BigEndian.Uint64(v))
			default:
				return fmt.Errorf("entry %x → %x", k, v)
			}
			return nil
		}); err != nil {
			return err
		}
		if err := each("tombstones", func(k, v []byte) error {
			if len(k) != 24 || len(v) != 0 {
				return fmt.Errorf("entry %x → %x", k, v)
			}
			id := uuid.UUID(k[8:]).String()
			if _, dup := r.tombIndex[id]; dup {
				return fmt.Errorf("%s twice", id)
			}
			r.tombIndex[id] = int64(binary.BigEndian.Uint64(k))
			return nil
		}); err != nil {
			return err
		}
		if err := each("idle_entities", func(k, v []byte) error {
			ent, rest, ok := splitLenPrefixed(k[min(8, len(k)):])
			if len(k) < 8 || !ok || len(rest) != 0 || len(v) != 0 {
				return fmt.Errorf("entry %x → %x", k, v)
			}
			if _, dup := r.idle[ent]; dup {
				return fmt.Errorf("entity %q twice", ent)
			}
			r.idle[ent] = int64(binary.BigEndian.Uint64(k))
			return nil
		}); err != nil {
			return err
		}
		if err := each("ready", func(k, v []byte) error {
			if len(k) != 9 || k[0] > 9 {
				return fmt.Errorf("key %x", k)
			}
			seq, p := binary.BigEndian.Uint64(k[1:]), 9-int(k[0])
			if q, dup := r.ready[seq]; dup {
				return fmt.Errorf("seq %d at priority %d and %d", seq, q, p)
			}
			r.ready[seq] = p
			return nil
		}); err != nil {
			return err
		}
		if b := tx.Bucket([]byte("ready_user")); b != nil {
			r.readyUser = map[uint64]fairEntry{}
			if err := b.ForEach(func(k, v []byte) error {
				user, rest, ok := splitLenPrefixed(k[min(1, len(k)):])
				if len(k) < 1 || k[0] > 9 || !ok || len(rest) != 8 || len(v) != 0 {
					return fmt.Errorf("ready_user: entry %x → %x", k, v)
				}
				seq := binary.BigEndian.Uint64(rest)
				if _, dup := r.readyUser[seq]; dup {
					return fmt.Errorf("ready_user: seq %d twice", seq)
				}
				r.readyUser[seq] = fairEntry{prio: 9 - int(k[0]), user: user}
				return nil
			}); err != nil {
				return err
			}
		}
		if err := each("delayed", func(k, v []byte) error {
			if len(k) != 16 {
				return fmt.Errorf("key %x", k)
			}
			seq := binary.BigEndian.Uint64(k[8:])
			if _, dup := r.delayed[seq]; dup {
				return fmt.Errorf("seq %d twice", seq)
			}
			r.delayed[seq] = time.Unix(0, int64(binary.BigEndian.Uint64(k))).UTC()
			return nil
		}); err != nil {
			return err
		}
		if err := each("entity", func(k, v []byte) error {
			ent, rest, ok := splitLenPrefixed(k)
			switch {
			case ok && len(rest) == 9 && rest[0] == 0x01 && len(v) == 8: // the chain
				r.byEntity[idxKey(ent, binary.BigEndian.Uint64(rest[1:]))] = binary.BigEndian.Uint64(v)
			case ok && len(rest) == 1 && rest[0] == 0x00 && (len(v) == 16 || len(v) == 24): // the state
				st := [3]uint64{binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:])}
				if len(v) == 24 {
					if st[2] = binary.BigEndian.Uint64(v[16:]); st[2] == 0 {
						return fmt.Errorf("entry %x → %x: idle since 0", k, v)
					}
				}
				r.entities[ent] = st
			default:
				return fmt.Errorf("entry %x → %x", k, v)
			}
			return nil
		}); err != nil {
			return err
		}
		if err := each("by_status", func(k, v []byte) error {
			if len(k) != 18 {
				return fmt.Errorf("key %x", k)
			}
			r.byStatus[string(k)] = string(v)
			return nil
		}); err != nil {
			return err
		}
		if err := each("user", func(k, v []byte) error {
			user, rest, ok := splitLenPrefixed(k)
			switch {
			case !ok || user == "" || len(rest) == 0:
				return fmt.Errorf("entry %x → %x", k, v)
			case rest[0] == 0x02 && len(rest) == 9 && len(v) == 2: // every event: status|rank
				r.byUser[idxKey(user, binary.BigEndian.Uint64(rest[1:]))] = string(v)
			case rest[0] == 0xff && len(rest) == 1: // the counters
				c, err := decodeRawCounts(v, false)
				if err != nil {
					return fmt.Errorf("user %q: %w", user, err)
				}
				r.userCounts[user] = c
			default:
				return fmt.Errorf("entry %x → %x", k, v)
			}
			return nil
		}); err != nil {
			return err
		}
		meta := tx.Bucket([]byte("meta"))
		if meta == nil {
			return errors.New("bucket meta missing")
		}
		if v := meta.Get([]byte("stats")); v != nil {
			c, err := decodeRawCounts(v, true)
			if err != nil {
				return fmt.Errorf("meta/stats: %w", err)
			}
			r.counts = c
		}
		if v := meta.Get([]byte("stale_mark")); v != nil {
			if len(v) != 16 {
				return fmt.Errorf("meta/stale_mark %x", v)
			}
			r.staleMark = append([]byte(nil), v...)
		}
		return nil
	})
	return r, err
}

// timeKey is the store's time(8)|seq(8) key.
func timeKey(t time.Time, seq uint64) []byte {
	k := binary.BigEndian.AppendUint64(nil, uint64(t.UnixNano())^(1<<63))
	return binary.BigEndian.AppendUint64(k, seq)
}

// checkInvariants reads every bucket and every record and checks that the
// indexes, the counters and the ready set agree with the records: it
// recounts every statistic, for all users and per user (status counts,
// pending per priority, bytes, stale relative to the stored watermark and
// to the clock, oldest pending, newest completed). It must not run
// concurrently with writes.
func checkInvariants(s *boltstore.Store) error {
	ctx := context.Background()
	raw, err := readRaw(s.DB())
	if err != nil {
		return err
	}
	stats, err := s.Stats(ctx)
	if err != nil {
		return err
	}
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	// ids ↔ events: a bijection.
	if len(raw.ids) != len(raw.events) {
		fail("%d ids entries for %d records", len(raw.ids), len(raw.events))
	}
	events := map[uint64]*outbox.Event{}
	for id, seq := range raw.ids {
		if _, ok := raw.events[seq]; !ok {
			fail("ids: %s → seq %d, which has no record", id, seq)
			continue
		}
		if prev, dup := events[seq]; dup {
			fail("ids: %s and %s both → seq %d", prev.ID, id, seq)
			continue
		}
		e, err := s.Get(ctx, id)
		if err != nil {
			fail("get %s: %v", id, err)
			continue
		}
		if e.ID != id || e.Seq != seq {
			fail("get %s: got id %s seq %d, index says seq %d", id, e.ID, e.Seq, seq)
		}
		events[seq] = e
	}

	// The stale watermark: pending events whose by_status time key sorts
	// before it are counted stale.
	mark := raw.staleMark
	if mark == nil {
		mark = make([]byte, 16)
	}
	// since is when a pending event is pending from: accepted_at, or a
	// later deliver_at (the time of its by_status key).
	since := func(e *outbox.Event) time.Time {
		if e.DeliverAt.After(e.AcceptedAt) {
			return e.DeliverAt
		}
		return e.AcceptedAt
	}
	stale := func(e *outbox.Event) bool {
		return e.Status == outbox.StatusPending && string(timeKey(since(e), e.Seq)) < string(mark)
	}

	// Recount every counter from the records.
	type userTally struct {
		rawCounts
		oldest, newest time.Time
	}
	users := map[string]*userTally{"": {}}
	var all userTally
	byEntity := map[string][]*outbox.Event{}
	for seq, e := range events {
		u := users[e.UserID]
		if u == nil {
			u = &userTally{}
			users[e.UserID] = u
		}
		code, ok := statusCode[e.Status]
		if !ok {
			fail("seq %d: status %q", seq, e.Status)
			continue
		}
		size := int64(raw.events[seq])
		for _, t := range []*userTally{&all, u} {
			t.status[code]++
			t.bytes += size
			if stale(e) {
				t.stale++
			}
			switch e.Status {
			case outbox.StatusPending:
				if t.oldest.IsZero() || since(e).Before(t.oldest) {
					t.oldest = since(e)
				}
				if t.firstPending == 0 || seq < t.firstPending {
					t.firstPending = seq
				}
			case outbox.StatusCompleted:
				if e.CompletedAt.After(t.newest) {
					t.newest = e.CompletedAt
				}
			}
		}
		if e.Status == outbox.StatusPending {
			all.prio[e.Priority]++
		}
		// One entry in each index that holds e, keyed as e says.
		sk := stateKey(e)
		wantValue := ""
		if e.Status == outbox.StatusPending {
			wantValue = e.UserID
		}
		if v, ok := raw.byStatus[sk]; !ok || v != wantValue {
			fail("by_status: seq %d (%s p%d) has no entry %x → %q (present %v, value %q)", seq, e.Status, e.Priority, sk, wantValue, ok, v)
		}
		if e.UserID != "" {
			want := string([]byte{statusCode[e.Status], byte(outbox.MaxPriority - e.Priority)})
			if e.Status == outbox.StatusCompleted {
				want = string([]byte{statusCode[e.Status], 0})
			}
			if v, ok := raw.byUser[idxKey(e.UserID, seq)]; !ok || v != want {
				fail("user list: seq %d user %q (%s p%d) → %x (present %v), want %x", seq, e.UserID, e.Status, e.Priority, v, ok, want)
			}
		}
		if e.EntityID != "" {
			byEntity[e.EntityID] = append(byEntity[e.EntityID], e)
			if v, ok := raw.byEntity[idxKey(e.EntityID, e.EntitySeq)]; !ok || v != seq {
				fail("by_entity: %q|%d → %d (present %v), record seq %d", e.EntityID, e.EntitySeq, v, ok, seq)
			}
		} else if e.EntitySeq != 0 {
			fail("seq %d: entity_seq %d without an entity", seq, e.EntitySeq)
		}
	}
	// No index entry without its event.
	withUser := 0
	for user, u := range users {
		if user != "" {
			withUser += int(u.total())
		}
	}
	for name, n := range map[string][2]int{
		"by_status": {len(raw.byStatus), len(events)},
		"user list": {len(raw.byUser), withUser},
	} {
		if n[0] != n[1] {
			fail("%s has %d entries, want %d", name, n[0], n[1])
		}
	}
	withEntity := 0
	for _, es := range byEntity {
		withEntity += len(es)
	}
	if len(raw.byEntity) != withEntity {
		fail("by_entity has %d entries, %d records with an entity", len(raw.byEntity), withEntity)
	}

	// The stored counters against the recount: for all users…
	if c := raw.counts; c.status != all.status || c.prio != all.prio || c.bytes != all.bytes || c.stale != all.stale {
		fail("meta/stats: status %v prio %v bytes %d stale %d; records: status %v prio %v bytes %d stale %d",
			c.status, c.prio, c.bytes, c.stale, all.status, all.prio, all.bytes, all.stale)
	}
	if !all.newest.IsZero() && raw.counts.newestCompleted < all.newest.UnixNano() {
		fail("meta/stats: newest completed %v, before a stored completion at %v", time.Unix(0, raw.counts.newestCompleted).UTC(), all.newest)
	}
	// …and per user; a user with no events has no entry, nor has "" (no
	// user), which UserStats reads as all users.
	for user, u := range users {
		if user == "" {
			continue
		}
		c, ok := raw.userCounts[user]
		if !ok {
			fail("user_counts: no entry for %q", user)
			continue
		}
		if c.status != u.status || c.bytes != u.bytes || c.stale != u.stale {
			fail("user_counts %q: status %v bytes %d stale %d; records: status %v bytes %d stale %d",
				user, c.status, c.bytes, c.stale, u.status, u.bytes, u.stale)
		}
		if !u.newest.IsZero() && c.newestCompleted < u.newest.UnixNano() {
			fail("user_counts %q: newest completed %v, before a stored completion at %v", user, time.Unix(0, c.newestCompleted).UTC(), u.newest)
		}
		if c.firstPending != u.firstPending {
			fail("user_counts %q: first pending seq %d, records say %d", user, c.firstPending, u.firstPending)
		}
	}
	for user := range raw.userCounts {
		if users[user] == nil || user == "" {
			fail("user_counts: entry for %q, who has no events", user)
		}
	}

	// What Stats and UserStats report. Stale against the clock: StaleEvents
	// lists exactly the pending events created before some cutoff (the
	// oldest ones), and Stats counts them.
	staleNow, err := s.StaleEvents(ctx, "", 1<<30)
	if err != nil {
		return err
	}
	staleSeqs := map[uint64]bool{}
	staleByUser := map[string]int64{}
	var newestStale time.Time
	for _, e := range staleNow {
		if e.Status != outbox.StatusPending || staleSeqs[e.Seq] {
			fail("StaleEvents: seq %d (%s) listed", e.Seq, e.Status)
		}
		staleSeqs[e.Seq] = true
		staleByUser[e.UserID]++
		if since(e).After(newestStale) {
			newestStale = since(e)
		}
	}
	for seq, e := range events {
		if e.Status == outbox.StatusPending && !staleSeqs[seq] && !since(e).After(newestStale) && len(staleNow) > 0 {
			fail("StaleEvents: pending seq %d pending since %v is not listed, though one since %v is", seq, since(e), newestStale)
		}
	}
	checkStats := func(who string, st boltstore.Stats, t *userTally, staleWant int64, perPrio bool) {
		want := boltstore.Stats{
			Pending: t.status[0], Processing: t.status[1], Completed: t.status[2], Failed: t.status[3],
			Stale: staleWant, Bytes: t.bytes,
		}
		want.Total = want.Pending + want.Processing + want.Completed + want.Failed
		if perPrio {
			want.PendingByPriority = t.prio
		}
		want.SuccessRate = 1
		if d := want.Completed + want.Failed; d > 0 {
			want.SuccessRate = float64(want.Completed) / float64(d)
		}
		want.HasIssues = want.Failed > 0 || want.Stale > 0
		if !t.oldest.IsZero() {
			want.OldestPendingAt = &t.oldest
		}
		if !perPrio && t.firstPending != 0 {
			// A user's oldest pending event is its first in acceptance
			// (seq) order: its accepted_at is the oldest unless the clock
			// went back meanwhile.
			first := events[t.firstPending].AcceptedAt
			want.OldestPendingAt = &first
		}
		want.NewestCompletedAt = st.NewestCompletedAt // checked above against the raw counter
		if !statsEqual(st, want) {
			fail("%s: Stats = %s, records count %s", who, fmtStats(st), fmtStats(want))
		}
	}
	checkStats("all", stats, &all, int64(len(staleNow)), true)
	if c := raw.counts.newestCompleted; (stats.NewestCompletedAt == nil) != (c == 0) ||
		stats.NewestCompletedAt != nil && stats.NewestCompletedAt.UnixNano() != c {
		fail("Stats: newest_completed_at %v, counter %d", stats.NewestCompletedAt, c)
	}
	for user, u := range users {
		if user == "" {
			continue
		}
		st, err := s.UserStats(ctx, user)
		if err != nil {
			return err
		}
		checkStats(fmt.Sprintf("user %q", user), st, u, staleByUser[user], false)
		if c := raw.userCounts[user]; (st.NewestCompletedAt == nil) != (c.newestCompleted == 0) ||
			st.NewestCompletedAt != nil && st.NewestCompletedAt.UnixNano() != c.newestCompleted {
			fail("user %q: newest_completed_at %v, counter %d", user, st.NewestCompletedAt, c.newestCompleted)
		}
	}

	// The ready set: exactly the pending heads, each filed once where its
	// next_attempt_at says.
	shouldBeReady := map[uint64]bool{}
	for seq, e := range events {
		if e.EntityID == "" && e.Status == outbox.StatusPending {
			shouldBeReady[seq] = true
		}
	}
	for ent, es := range byEntity {
		slices.SortFunc(es, func(a, b *outbox.Event) int { return int(a.EntitySeq) - int(b.EntitySeq) })
		meta, ok := raw.entities[ent]
		if !ok {
			fail("entities: no entry for %q", ent)
		}
		unfinished := uint64(0)
		headSeen := false
		for i, e := range es {
			if i > 0 && es[i-1].EntitySeq == e.EntitySeq {
				fail("entity %q: entity_seq %d twice", ent, e.EntitySeq)
			}
			if e.EntitySeq > meta[0] {
				fail("entity %q: entity_seq %d over the last %d", ent, e.EntitySeq, meta[0])
			}
			if e.Status == outbox.StatusCompleted {
				if headSeen {
					fail("entity %q: entity_seq %d completed after an unfinished head", ent, e.EntitySeq)
				}
				continue
			}
			unfinished++
			if !headSeen {
				headSeen = true
				if e.Status == outbox.StatusPending {
					shouldBeReady[e.Seq] = true
				}
				continue
			}
			if e.Status != outbox.StatusPending {
				fail("entity %q: non-head entity_seq %d is %s", ent, e.EntitySeq, e.Status)
			}
		}
		if ok && meta[1] != unfinished {
			fail("entities: %q counts %d unfinished, records say %d", ent, meta[1], unfinished)
		}
	}
	for ent, meta := range raw.entities {
		_, hasEvents := byEntity[ent]
		if !hasEvents && meta[1] != 0 {
			fail("entities: %q counts %d unfinished but has no records", ent, meta[1])
		}
		// Idle exactly when no event of it is stored, and filed so.
		switch idle, filed := raw.idle[ent]; {
		case hasEvents && meta[2] != 0:
			fail("entities: %q has events but is idle since %d", ent, meta[2])
		case !hasEvents && meta[2] == 0:
			fail("entities: %q has no events but is not idle", ent)
		case meta[2] != 0 && (!filed || uint64(idle) != meta[2]):
			fail("entities: %q idle since %d, idle_entities has %d (filed %v)", ent, meta[2], idle, filed)
		}
	}
	for ent, since := range raw.idle {
		if meta, ok := raw.entities[ent]; !ok || meta[2] != uint64(since) {
			fail("idle_entities: %q idle since %d, entities has %v (present %v)", ent, since, meta, ok)
		}
	}
	// Every tombstone filed once, under its removal time, and no live id
	// has one.
	for id, at := range raw.tombs {
		if got, ok := raw.tombIndex[id]; !ok || got != at {
			fail("tombstone %s removed at %d, tombstones has %d (present %v)", id, at, got, ok)
		}
	}
	for id, at := range raw.tombIndex {
		if got, ok := raw.tombs[id]; !ok || got != at {
			fail("tombstones: %s at %d has no such tombstone in ids (%d, %v)", id, at, got, ok)
		}
	}
	for seq := range shouldBeReady {
		e := events[seq]
		p, inReady := raw.ready[seq]
		at, inDelayed := raw.delayed[seq]
		switch {
		case inReady && inDelayed:
			fail("seq %d both ready and delayed", seq)
		case !inReady && !inDelayed:
			fail("pending head seq %d (entity %q #%d) neither ready nor delayed", seq, e.EntityID, e.EntitySeq)
		case inReady && (p != e.Priority || !e.NextAttemptAt.IsZero()):
			fail("seq %d in ready/%d, priority %d next_attempt_at %v", seq, p, e.Priority, e.NextAttemptAt)
		case inDelayed && !at.Equal(e.NextAttemptAt):
			fail("seq %d delayed until %v, next_attempt_at %v", seq, at, e.NextAttemptAt)
		}
	}
	for seq := range raw.ready {
		if !shouldBeReady[seq] {
			fail("seq %d in ready/%d but not a pending head (%v)", seq, raw.ready[seq], describe(events[seq]))
		}
	}
	if raw.readyUser != nil { // FairnessUser: the ready set again, by user
		for seq, p := range raw.ready {
			if got, ok := raw.readyUser[seq]; !ok || got.prio != p || (events[seq] != nil && got.user != events[seq].UserID) {
				fail("seq %d in ready/%d, ready_user has %+v (%v)", seq, p, got, ok)
			}
		}
		for seq := range raw.readyUser {
			if _, ok := raw.ready[seq]; !ok {
				fail("seq %d in ready_user but not in ready", seq)
			}
		}
	}
	for seq := range raw.delayed {
		if !shouldBeReady[seq] {
			fail("seq %d delayed but not a pending head (%v)", seq, describe(events[seq]))
		}
	}
	return errors.Join(errs...)
}

func fmtStats(st boltstore.Stats) string {
	tm := func(t *time.Time) string {
		if t == nil {
			return "nil"
		}
		return t.Format(time.RFC3339Nano)
	}
	return fmt.Sprintf("{%+v stale=%d oldest=%s newest=%s rate=%.3f issues=%v prio=%v bytes=%d}",
		tallyOf(st), st.Stale, tm(st.OldestPendingAt), tm(st.NewestCompletedAt), st.SuccessRate, st.HasIssues, st.PendingByPriority, st.Bytes)
}

func describe(e *outbox.Event) string {
	if e == nil {
		return "no record"
	}
	return fmt.Sprintf("%s entity %q #%d", e.Status, e.EntityID, e.EntitySeq)
}

// ev builds an event with a short payload.
func ev(typ, entity string, prio int) *outbox.Event {
	return &outbox.Event{Type: typ, EntityID: entity, Priority: prio, Payload: []byte(`{"n":1}`), ContentType: outbox.ContentTypeJSON}
}

func mustEnqueue(t testing.TB, s *boltstore.Store, events ...*outbox.Event) {
	t.Helper()
	n, err := s.Enqueue(context.Background(), events...)
	if err != nil {
		t.Fatalf("enqueue: %v", err)
	}
	if n != len(events) {
		t.Fatalf("enqueue: created %d of %d", n, len(events))
	}
}

func mustGet(t testing.TB, s *boltstore.Store, id string) *outbox.Event {
	t.Helper()
	e, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	return e
}

func mustStats(t testing.TB, s *boltstore.Store) boltstore.Stats {
	t.Helper()
	st, err := s.Stats(context.Background())
	if err != nil {
		t.Fatalf("stats: %v", err)
	}
	return st
}

// due calls Due with no skip function.
func due(t testing.TB, s *boltstore.Store, now time.Time, n int) ([]*outbox.Event, time.Time) {
	t.Helper()
	es, next, err := s.Due(context.Background(), now, n, nil)
	if err != nil {
		t.Fatalf("due: %v", err)
	}
	return es, next
}

func seqs(es []*outbox.Event) []uint64 {
	out := make([]uint64, len(es))
	for i, e := range es {
		out[i] = e.Seq
	}
	return out
}

func assertDue(t testing.TB, s *boltstore.Store, now time.Time, want ...*outbox.Event) []*outbox.Event {
	t.Helper()
	got, _ := due(t, s, now, 1000)
	if !slices.Equal(seqs(got), seqs(want)) {
		t.Fatalf("Due(%v) = %v, want %v", now.Sub(t0), label(got), label(want))
	}
	return got
}

func label(es []*outbox.Event) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = fmt.Sprintf("%d:%s/p%d", e.Seq, e.Type, e.Priority)
	}
	return out
}

func complete(t testing.TB, s *boltstore.Store, at time.Time, es ...*outbox.Event) {
	t.Helper()
	acks := make([]boltstore.Ack, len(es))
	for i, e := range es {
		acks[i] = boltstore.Ack{Seq: e.Seq, At: at}
	}
	if err := s.Complete(context.Background(), acks); err != nil {
		t.Fatalf("complete: %v", err)
	}
}

func fail(t testing.TB, s *boltstore.Store, fs ...boltstore.Failure) {
	t.Helper()
	if err := s.Fail(context.Background(), fs); err != nil {
		t.Fatalf("fail: %v", err)
	}
}

func (c rawCounts) total() int64 { return c.status[0] + c.status[1] + c.status[2] + c.status[3] }
