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

// rawState is what the store's buckets hold, read in one transaction.
type rawState struct {
	events   map[uint64]bool      // events: seq
	ids      map[string]uint64    // ids: uuid → seq
	ready    map[uint64]int       // ready/<prio>: seq → prio
	delayed  map[uint64]time.Time // delayed: seq → next attempt
	byEntity map[string]uint64    // by_entity: entity|entity_seq → seq
	entities map[string][2]uint64 // entities: entity → last entity_seq, unfinished
	byUser   map[string]bool      // by_user: user|seq
	byStatus map[uint64][]byte    // by_status: seq → status codes
}

func idxKey(s string, n uint64) string { return fmt.Sprintf("%q|%d", s, n) }

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
		events: map[uint64]bool{}, ids: map[string]uint64{}, ready: map[uint64]int{},
		delayed: map[uint64]time.Time{}, byEntity: map[string]uint64{}, entities: map[string][2]uint64{},
		byUser: map[string]bool{}, byStatus: map[uint64][]byte{},
	}
	err := db.View(func(tx *bolt.Tx) error {
		bucket := func(name string) (*bolt.Bucket, error) {
			b := tx.Bucket([]byte(name))
			if b == nil {
				return nil, fmt.Errorf("bucket %s missing", name)
			}
			return b, nil
		}
		b, err := bucket("events")
		if err != nil {
			return err
		}
		if err := b.ForEach(func(k, v []byte) error {
			if len(k) != 8 {
				return fmt.Errorf("events: key %x", k)
			}
			r.events[binary.BigEndian.Uint64(k)] = true
			return nil
		}); err != nil {
			return err
		}
		if b, err = bucket("ids"); err != nil {
			return err
		}
		if err := b.ForEach(func(k, v []byte) error {
			if len(k) != 16 || len(v) != 8 {
				return fmt.Errorf("ids: entry %x → %x", k, v)
			}
			r.ids[uuid.UUID(k).String()] = binary.BigEndian.Uint64(v)
			return nil
		}); err != nil {
			return err
		}
		if b, err = bucket("ready"); err != nil {
			return err
		}
		for p := 0; p <= outbox.MaxPriority; p++ {
			pb := b.Bucket([]byte{byte('0' + p)})
			if pb == nil {
				return fmt.Errorf("ready/%d missing", p)
			}
			if err := pb.ForEach(func(k, v []byte) error {
				if len(k) != 8 {
					return fmt.Errorf("ready/%d: key %x", p, k)
				}
				seq := binary.BigEndian.Uint64(k)
				if q, dup := r.ready[seq]; dup {
					return fmt.Errorf("seq %d in ready/%d and ready/%d", seq, q, p)
				}
				r.ready[seq] = p
				return nil
			}); err != nil {
				return err
			}
		}
		if b, err = bucket("delayed"); err != nil {
			return err
		}
		if err := b.ForEach(func(k, v []byte) error {
			if len(k) != 16 {
				return fmt.Errorf("delayed: key %x", k)
			}
			seq := binary.BigEndian.Uint64(k[8:])
			if _, dup := r.delayed[seq]; dup {
				return fmt.Errorf("seq %d twice in delayed", seq)
			}
			r.delayed[seq] = time.Unix(0, int64(binary.BigEndian.Uint64(k))).UTC()
			return nil
		}); err != nil {
			return err
		}
		if b, err = bucket("by_entity"); err != nil {
			return err
		}
		if err := b.ForEach(func(k, v []byte) error {
			ent, rest, ok := splitLenPrefixed(k)
			if !ok || len(rest) != 8 || len(v) != 8 {
				return fmt.Errorf("by_entity: entry %x → %x", k, v)
			}
			r.byEntity[idxKey(ent, binary.BigEndian.Uint64(rest))] = binary.BigEndian.Uint64(v)
			return nil
		}); err != nil {
			return err
		}
		if b, err = bucket("entities"); err != nil {
			return err
		}
		if err := b.ForEach(func(k, v []byte) error {
			ent, rest, ok := splitLenPrefixed(k)
			if !ok || len(rest) != 0 || len(v) != 16 {
				return fmt.Errorf("entities: entry %x → %x", k, v)
			}
			r.entities[ent] = [2]uint64{binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:])}
			return nil
		}); err != nil {
			return err
		}
		if b, err = bucket("by_user"); err != nil {
			return err
		}
		if err := b.ForEach(func(k, v []byte) error {
			user, rest, ok := splitLenPrefixed(k)
			if !ok || len(rest) != 8 {
				return fmt.Errorf("by_user: key %x", k)
			}
			r.byUser[idxKey(user, binary.BigEndian.Uint64(rest))] = true
			return nil
		}); err != nil {
			return err
		}
		if b, err = bucket("by_status"); err != nil {
			return err
		}
		return b.ForEach(func(k, v []byte) error {
			if len(k) != 9 {
				return fmt.Errorf("by_status: key %x", k)
			}
			seq := binary.BigEndian.Uint64(k[1:])
			r.byStatus[seq] = append(r.byStatus[seq], k[0])
			return nil
		})
	})
	return r, err
}

// checkInvariants reads every bucket and every record and checks that the
// indexes, the counters and the ready set agree with the records. It must
// not run concurrently with writes.
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
		if !raw.events[seq] {
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

	// Counters.
	var got boltstore.Stats
	byEntity := map[string][]*outbox.Event{}
	for seq, e := range events {
		got.Total++
		switch e.Status {
		case outbox.StatusPending:
			got.Pending++
		case outbox.StatusProcessing:
			got.Processing++
		case outbox.StatusCompleted:
			got.Completed++
		case outbox.StatusFailed:
			got.Failed++
		default:
			fail("seq %d: status %q", seq, e.Status)
		}
		// by_status, by_user: one entry each.
		if codes := raw.byStatus[seq]; len(codes) != 1 || codes[0] != statusCode[e.Status] {
			fail("by_status: seq %d (%s) has entries %v", seq, e.Status, codes)
		}
		if !raw.byUser[idxKey(e.UserID, seq)] {
			fail("by_user: no entry for seq %d user %q", seq, e.UserID)
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
	if got != stats {
		fail("Stats() = %+v, records count %+v", stats, got)
	}
	if len(raw.byStatus) != len(events) {
		fail("by_status has entries for %d seqs, %d records", len(raw.byStatus), len(events))
	}
	if len(raw.byUser) != len(events) {
		fail("by_user has %d entries, %d records", len(raw.byUser), len(events))
	}
	withEntity := 0
	for _, es := range byEntity {
		withEntity += len(es)
	}
	if len(raw.byEntity) != withEntity {
		fail("by_entity has %d entries, %d records with an entity", len(raw.byEntity), withEntity)
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
		if _, ok := byEntity[ent]; !ok && meta[1] != 0 {
			fail("entities: %q counts %d unfinished but has no records", ent, meta[1])
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
	for seq := range raw.delayed {
		if !shouldBeReady[seq] {
			fail("seq %d delayed but not a pending head (%v)", seq, describe(events[seq]))
		}
	}
	return errors.Join(errs...)
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
