package boltstore

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Options tune a Store. The zero value works.
type Options struct {
	// Timeout is how long Open waits for the file lock (default 2s).
	Timeout time.Duration
	// Event holds the defaults and limits applied to enqueued events.
	Event outbox.Options
	// MaxBatchSize and MaxBatchDelay tune the group commit of Enqueue
	// (bbolt's Batch). Defaults: 1000 and 2ms.
	MaxBatchSize  int
	MaxBatchDelay time.Duration
	// InitialMmapSize avoids remapping stalls while the file grows
	// (default 64 MiB; it reserves address space, not memory).
	InitialMmapSize int
	// Now is the clock (default time.Now); tests set it.
	Now func() time.Time
}

func (o *Options) setDefaults() {
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.MaxBatchSize <= 0 {
		o.MaxBatchSize = 1000
	}
	if o.MaxBatchDelay <= 0 {
		o.MaxBatchDelay = 2 * time.Millisecond
	}
	if o.InitialMmapSize <= 0 {
		o.InitialMmapSize = 64 << 20
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Store is an outbox kept in one bbolt file. It is safe for concurrent use.
type Store struct {
	db         *bolt.DB
	opts       Options
	wake       chan struct{}
	maxPayload atomic.Int64 // 0: opts.Event's limit
}

// SetMaxPayload lowers (or raises) the payload limit of new events at run
// time: the relay sets it once it knows the NATS server's max_payload, so the
// store never accepts an event that could not be published.
func (s *Store) SetMaxPayload(n int) { s.maxPayload.Store(int64(n)) }

// MaxPayload is the payload limit new events are held to.
func (s *Store) MaxPayload() int {
	if n := s.maxPayload.Load(); n > 0 {
		return int(n)
	}
	if s.opts.Event.MaxPayload > 0 {
		return s.opts.Event.MaxPayload
	}
	return outbox.DefaultPayload
}

var (
	bEvents   = []byte("events")    // seq → record
	bIDs      = []byte("ids")       // uuid(16) → seq
	bReady    = []byte("ready")     // "0".."9" / seq → nil: due now, heads only
	bDelayed  = []byte("delayed")   // next_attempt(8)|seq → nil: heads in backoff
	bByEntity = []byte("by_entity") // len(2)|entity|entity_seq(8) → seq
	bEntities = []byte("entities")  // len(2)|entity → last entity_seq(8)|unfinished(8)
	bByUser   = []byte("by_user")   // len(2)|user|seq(8) → nil
	bByStatus = []byte("by_status") // status(1)|seq(8) → nil
	bMeta     = []byte("meta")
	kCounts   = []byte("counts") // per status code: 4 × int64
	kVersion  = []byte("version")

	prioNames = [...][]byte{[]byte("0"), []byte("1"), []byte("2"), []byte("3"), []byte("4"), []byte("5"), []byte("6"), []byte("7"), []byte("8"), []byte("9")}
)

const layoutVersion = 1

// Open opens or creates the store file at path (its directory too).
func Open(path string, opts *Options) (*Store, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	o.setDefaults()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("boltstore: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:         o.Timeout,
		FreelistType:    bolt.FreelistMapType,
		InitialMmapSize: o.InitialMmapSize,
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s (is a relay running on it?)", ErrLocked, path)
	}
	if err != nil {
		return nil, fmt.Errorf("boltstore: open %s: %w", path, err)
	}
	db.MaxBatchSize = o.MaxBatchSize
	db.MaxBatchDelay = o.MaxBatchDelay
	s := &Store{db: db, opts: o, wake: make(chan struct{}, 1)}
	if err := db.Update(s.init); err != nil {
		db.Close()
		return nil, fmt.Errorf("boltstore: init %s: %w", path, err)
	}
	return s, nil
}

func (s *Store) init(tx *bolt.Tx) error {
	for _, name := range [][]byte{bEvents, bIDs, bReady, bDelayed, bByEntity, bEntities, bByUser, bByStatus, bMeta} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	ready := tx.Bucket(bReady)
	for _, p := range prioNames {
		if _, err := ready.CreateBucketIfNotExists(p); err != nil {
			return err
		}
	}
	meta := tx.Bucket(bMeta)
	if v := meta.Get(kVersion); v != nil && binary.BigEndian.Uint64(v) != layoutVersion {
		return fmt.Errorf("layout version %d, this build reads %d", binary.BigEndian.Uint64(v), layoutVersion)
	}
	if err := meta.Put(kVersion, u64(layoutVersion)); err != nil {
		return err
	}
	// Recovery: an event left processing (set through the library by a
	// process that died) becomes pending again, ready if it heads its entity.
	w := s.writer(tx)
	var stuck []uint64
	c := tx.Bucket(bByStatus).Cursor()
	pfx := []byte{statusCode(outbox.StatusProcessing)}
	for k, _ := c.Seek(pfx); k != nil && k[0] == pfx[0]; k, _ = c.Next() {
		stuck = append(stuck, binary.BigEndian.Uint64(k[1:]))
	}
	for _, seq := range stuck {
		e, err := w.get(seq)
		if err != nil {
			return err
		}
		if e == nil { // a stale index entry: drop it
			if err := w.byStatus.Delete(statusKey(outbox.StatusProcessing, seq)); err != nil {
				return err
			}
			continue
		}
		if err := w.setStatus(e, outbox.StatusPending); err != nil {
			return err
		}
		if err := w.ensureHead(e.EntityID, e); err != nil { // rare: a full look at the entity
			return err
		}
	}
	return w.finish()
}

// Close closes the file. Callers stop the relay first.
func (s *Store) Close() error { return s.db.Close() }

// DB is the underlying bbolt database, for the application's own buckets.
// Do not touch the buckets this package creates (events, ids, ready,
// delayed, by_entity, entities, by_user, by_status, meta).
func (s *Store) DB() *bolt.DB { return s.db }

// Path is the file's path.
func (s *Store) Path() string { return s.db.Path() }

// Notify is signalled after every commit that makes an event ready to
// publish (an enqueue, a retry, a head promoted). The relay waits on it; one
// signal may stand for many commits.
func (s *Store) Notify() <-chan struct{} { return s.wake }

func (s *Store) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// EnqueueTx adds events inside the caller's read-write transaction tx, which
// must belong to DB(): the events commit or roll back with the caller's own
// writes. It fills each event's id (a UUIDv7 when empty), defaults, seq,
// entity_seq, status and created_at (kept when the caller set it).
//
// Re-enqueueing an id that is stored with the same content stores nothing
// and fills the event from the store; with different content it fails with
// ErrDuplicate. It returns how many events were newly stored. Validation
// errors wrap outbox.ErrInvalidEvent and name the field; on any error the
// caller must roll back (return the error from its Update).
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
	now := s.opts.Now().UTC()
	for i, e := range events {
		n, err := w.enqueue(e, now)
		if err != nil {
			if len(events) > 1 {
				return 0, fmt.Errorf("events[%d]: %w", i, err)
			}
			return 0, err
		}
		created += n
	}
	return created, w.finish()
}

// prepare fills and validates e, and checks that a created_at set by the
// caller survives the record format (nanoseconds since 1970 in an int64:
// 1678 to 2262, and not exactly the epoch, which reads back as unset).
func (s *Store) prepare(e *outbox.Event) error {
	o := s.opts.Event
	o.MaxPayload = s.MaxPayload()
	if err := e.Prepare(o); err != nil {
		return err
	}
	if t := e.CreatedAt; !t.IsZero() && !fromNanos(t.UnixNano()).Equal(t) {
		return &outbox.ValidationError{Field: "created_at", Reason: fmt.Sprintf("%s cannot be stored (years 1678 to 2262)", t.Format(time.RFC3339Nano))}
	}
	return nil
}

// Enqueue adds events in a transaction of their own, all or nothing,
// group-committed with concurrent callers (bbolt's Batch): many goroutines
// enqueueing at once share fsyncs. It returns when the events are durable.
// See EnqueueTx for ids, duplicates and errors.
func (s *Store) Enqueue(ctx context.Context, events ...*outbox.Event) (created int, err error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	// Prepare outside the batch: Batch may run the function twice, and the
	// ids must be the same both times.
	for i, e := range events {
		if err := s.prepare(e); err != nil {
			if len(events) > 1 {
				return 0, fmt.Errorf("events[%d]: %w", i, err)
			}
			return 0, err
		}
	}
	err = s.db.Batch(func(tx *bolt.Tx) error {
		var err error
		created, err = s.EnqueueTx(tx, events...)
		return err
	})
	return created, err
}

// Get returns the event with that id, or ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (*outbox.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	u, err := uuid.Parse(id)
	if err != nil {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	var e *outbox.Event
	err = s.db.View(func(tx *bolt.Tx) error {
		w := &writer{s: s, tx: tx, events: tx.Bucket(bEvents)}
		v := tx.Bucket(bIDs).Get(u[:])
		if v == nil {
			return fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		var err error
		e, err = w.get(binary.BigEndian.Uint64(v))
		return err
	})
	return e, err
}

// Stats counts events per status. It reads counters kept in the same
// transactions that change events: O(1) whatever the store holds.
type Stats struct {
	Total      int64 `json:"total"`
	Pending    int64 `json:"pending"`
	Processing int64 `json:"processing"`
	Completed  int64 `json:"completed"`
	Failed     int64 `json:"failed"`
}

// Stats returns the counters.
func (s *Store) Stats(ctx context.Context) (Stats, error) {
	if err := ctx.Err(); err != nil {
		return Stats{}, err
	}
	var c counts
	err := s.db.View(func(tx *bolt.Tx) error {
		c = loadCounts(tx.Bucket(bMeta))
		return nil
	})
	return c.stats(), err
}

// Due returns up to n events that are due at now: ready events and those
// whose backoff has passed, highest priority first, FIFO (by seq) within a
// priority. Events for which skip returns true (the relay's in-flight ones)
// are passed over. next is the time the earliest event still in backoff is
// due (zero when none). The read transaction is closed before Due returns:
// the events are copies.
func (s *Store) Due(ctx context.Context, now time.Time, n int, skip func(seq uint64) bool) (events []*outbox.Event, next time.Time, err error) {
	if err := ctx.Err(); err != nil {
		return nil, time.Time{}, err
	}
	if skip == nil {
		skip = func(uint64) bool { return false }
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		w := &writer{s: s, tx: tx, events: tx.Bucket(bEvents)}
		nowN := uint64(now.UnixNano())
		c := tx.Bucket(bDelayed).Cursor()
		delayed := 0
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if t := binary.BigEndian.Uint64(k[:8]); t > nowN {
				next = fromNanos(int64(t))
				break
			}
			seq := binary.BigEndian.Uint64(k[8:])
			if skip(seq) {
				continue
			}
			if delayed == n {
				next = now
				break
			}
			e, err := w.get(seq)
			if err != nil {
				return err
			}
			events = append(events, e)
			delayed++
		}
		ready, got := tx.Bucket(bReady), 0
		for p := outbox.MaxPriority; p >= 0 && got < n; p-- {
			c := ready.Bucket(prioNames[p]).Cursor()
			for k, _ := c.First(); k != nil && got < n; k, _ = c.Next() {
				seq := binary.BigEndian.Uint64(k)
				if skip(seq) {
					continue
				}
				e, err := w.get(seq)
				if err != nil {
					return err
				}
				events = append(events, e)
				got++
			}
		}
		return nil
	})
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("boltstore: due: %w", err)
	}
	// Events out of backoff come first from the loops above: sort always,
	// not only when cutting at n, so that the order is the one promised.
	slices.SortFunc(events, func(a, b *outbox.Event) int {
		if a.Priority != b.Priority {
			return b.Priority - a.Priority
		}
		return cmp.Compare(a.Seq, b.Seq)
	})
	if len(events) > n {
		events = events[:n]
	}
	return events, next, nil
}

// Ack records that JetStream acked the publish of event Seq (a duplicate ack
// counts: the stream holds the event).
type Ack struct {
	Seq uint64
	At  time.Time // when the publish was sent
}

// Complete marks acked events completed in one transaction and promotes the
// next event of each of their entities. Events no longer pending (deleted or
// changed by an operator meanwhile), and pending events that Due could not
// have returned (not their entity's head), are left alone.
func (s *Store) Complete(ctx context.Context, acks []Ack) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := s.opts.Now().UTC()
	err := s.db.Update(func(tx *bolt.Tx) error {
		w := s.writer(tx)
		for _, a := range acks {
			e, err := w.get(a.Seq)
			if err != nil {
				return err
			}
			// Only a pending head (filed as ready or delayed) can have been
			// handed out by Due; a stale or stray seq must not complete or
			// fail an event out of its entity's order.
			if e == nil || e.Status != outbox.StatusPending || !w.isReady(e) {
				continue
			}
			if err := w.unready(e); err != nil {
				return err
			}
			e.AttemptCount++
			e.LastAttemptAt = a.At.UTC()
			e.NextAttemptAt = time.Time{}
			e.CompletedAt = now
			if err := w.setStatus(e, outbox.StatusCompleted); err != nil {
				return err
			}
			if e.EntityID != "" {
				if err := w.finishEntity(e); err != nil {
					return err
				}
			}
		}
		return w.finish()
	})
	if err != nil {
		return fmt.Errorf("boltstore: complete: %w", err)
	}
	return nil
}

// Failure records a publish attempt that failed with Err. The event goes into
// backoff until NextAttemptAt, or becomes failed when Permanent is set or it
// has used its max_attempts.
type Failure struct {
	Seq           uint64
	At            time.Time
	Err           string
	NextAttemptAt time.Time
	Permanent     bool
}

// Fail records failed attempts in one transaction.
func (s *Store) Fail(ctx context.Context, fails []Failure) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		w := s.writer(tx)
		for _, f := range fails {
			e, err := w.get(f.Seq)
			if err != nil {
				return err
			}
			// Only a pending head (filed as ready or delayed) can have been
			// handed out by Due; a stale or stray seq must not complete or
			// fail an event out of its entity's order.
			if e == nil || e.Status != outbox.StatusPending || !w.isReady(e) {
				continue
			}
			if err := w.unready(e); err != nil {
				return err
			}
			e.AttemptCount++
			e.LastAttemptAt = f.At.UTC()
			e.LastError = outbox.TruncateError(f.Err)
			e.NextAttemptAt = time.Time{}
			if f.Permanent || e.AttemptCount >= e.MaxAttempts {
				if err := w.setStatus(e, outbox.StatusFailed); err != nil {
					return err
				}
				continue
			}
			e.NextAttemptAt = f.NextAttemptAt.UTC()
			if err := w.put(e); err != nil {
				return err
			}
			if err := w.ready(e); err != nil {
				return err
			}
		}
		return w.finish()
	})
	if err != nil {
		return fmt.Errorf("boltstore: fail: %w", err)
	}
	return nil
}

// Retry makes a failed event pending again with its attempts reset, and
// ready when it heads its entity. It returns ErrNotRetryable for an event in
// any other status.
func (s *Store) Retry(ctx context.Context, id string) (*outbox.Event, error) {
	return s.updateByID(ctx, id, func(w *writer, e *outbox.Event) error {
		if e.Status != outbox.StatusFailed {
			return fmt.Errorf("%w: %s is %s", ErrNotRetryable, id, e.Status)
		}
		e.AttemptCount = 0
		e.NextAttemptAt = time.Time{}
		e.LastError = ""
		if err := w.setStatus(e, outbox.StatusPending); err != nil {
			return err
		}
		return w.ready(e) // only an entity's head is ever attempted, so only a head fails
	})
}

// Delete removes an event. When it headed its entity, the next event of the
// entity becomes ready.
func (s *Store) Delete(ctx context.Context, id string) error {
	_, err := s.updateByID(ctx, id, func(w *writer, e *outbox.Event) error {
		return w.delete(e)
	})
	return err
}

func (s *Store) updateByID(ctx context.Context, id string, fn func(*writer, *outbox.Event) error) (*outbox.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	u, err := uuid.Parse(id)
	if err != nil {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	var e *outbox.Event
	err = s.db.Update(func(tx *bolt.Tx) error {
		w := s.writer(tx)
		v := tx.Bucket(bIDs).Get(u[:])
		if v == nil {
			return fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		var err error
		if e, err = w.get(binary.BigEndian.Uint64(v)); err != nil {
			return err
		}
		if err := fn(w, e); err != nil {
			return err
		}
		return w.finish()
	})
	return e, err
}
