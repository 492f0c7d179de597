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
	// (bbolt's Batch). Defaults: 64 and 1ms: a batch commits once 64 callers
	// joined or 1ms passed (best measured for 64 producers, PERFORMANCE.md).
	MaxBatchSize  int
	MaxBatchDelay time.Duration
	// InitialMmapSize avoids remapping stalls while the file grows
	// (default 64 MiB; it reserves address space, not memory).
	InitialMmapSize int
	// Now is the clock (default time.Now); tests set it.
	Now func() time.Time

	// StaleAfter: a pending event created longer ago than this is stale
	// (default 5m).
	StaleAfter time.Duration
	// Retention: RunRetention deletes completed events completed longer ago
	// than this. Zero means the default, 24h, unless RemoveOnAck is set
	// (then it deletes every completed event left); negative keeps them
	// forever.
	Retention time.Duration
	// RemoveOnAck (retention.completed = 0): Complete and MarkCompleted
	// delete the event instead of keeping it completed.
	RemoveOnAck bool
	// Admission high-water marks (0 = no limit): Enqueue and EnqueueTx
	// refuse new events with an error wrapping ErrOutboxFull while the
	// store holds MaxPending pending events or more, MaxBytes bytes of
	// records or more, or a pending event older than MaxPendingAge.
	MaxPending    int64
	MaxBytes      int64
	MaxPendingAge time.Duration

	// IdempotencyWindow is how long the id of a removed event (by
	// retention, RemoveOnAck or an operator) is remembered: re-enqueueing it
	// within the window stores nothing, as for a stored one (default 24h;
	// keep it at least the stream's duplicate window).
	IdempotencyWindow time.Duration
	// EntityHorizon is how long an entity is remembered once none of its
	// events is stored any more: past it the entity is forgotten and its
	// entity_seq starts again at 1 if it comes back (default 7 days;
	// negative keeps every entity forever).
	EntityHorizon time.Duration
}

func (o *Options) setDefaults() {
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.MaxBatchSize <= 0 {
		o.MaxBatchSize = 64
	}
	if o.MaxBatchDelay <= 0 {
		o.MaxBatchDelay = time.Millisecond
	}
	if o.InitialMmapSize <= 0 {
		o.InitialMmapSize = 64 << 20
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.StaleAfter <= 0 {
		o.StaleAfter = DefaultStaleAfter
	}
	if o.Retention == 0 && !o.RemoveOnAck {
		o.Retention = DefaultRetention
	}
	if o.IdempotencyWindow <= 0 {
		o.IdempotencyWindow = DefaultIdempotencyWindow
	}
	if o.EntityHorizon == 0 {
		o.EntityHorizon = DefaultEntityHorizon
	}
}

// Defaults of Options.
const (
	DefaultStaleAfter = 5 * time.Minute
	DefaultRetention  = 24 * time.Hour

	DefaultIdempotencyWindow = 24 * time.Hour
	DefaultEntityHorizon     = 7 * 24 * time.Hour
)

// Store is an outbox kept in one bbolt file. It is safe for concurrent use.
type Store struct {
	db         *bolt.DB
	opts       Options
	wake       chan struct{}
	maxMessage atomic.Int64 // outbox.Options.MaxMessage of new events
}

// MaxPayload is the payload limit new events are held to (Options.Event).
func (s *Store) MaxPayload() int {
	if s.opts.Event.MaxPayload > 0 {
		return s.opts.Event.MaxPayload
	}
	return outbox.DefaultPayload
}

// MaxMessage is the most outbox.Event.WireSize (headers and payload) a new
// event may have: outbox.MessageLimit of the broker's max_payload, as last
// told by SetBrokerMaxPayload.
func (s *Store) MaxMessage() int { return int(s.maxMessage.Load()) }

// SetBrokerMaxPayload holds new events to what a broker whose max_payload is
// n can carry (outbox.MessageLimit(n) for headers and payload together), so
// that the store never accepts an event that could not be published. The
// relay calls it whenever it connects. The value is kept in the file: a store
// reopened while the broker is down holds events to the last limit the broker
// told, and before any to outbox.DefaultMaxMessage (NATS's default).
func (s *Store) SetBrokerMaxPayload(ctx context.Context, n int64) error {
	if n <= 0 {
		return fmt.Errorf("boltstore: broker max_payload %d: must be positive", n)
	}
	lim := int64(outbox.MessageLimit(n))
	if s.maxMessage.Swap(lim) == lim {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bMeta).Put(kBrokerMax, u64(uint64(n)))
	})
	if err != nil {
		return fmt.Errorf("boltstore: keep the broker's max_payload: %w", err)
	}
	return nil
}

var (
	bEvents       = []byte("events")         // seq → record
	bIDs          = []byte("ids")            // uuid(16) → seq
	bReady        = []byte("ready")          // "0".."9" / seq → nil: due now, heads only
	bDelayed      = []byte("delayed")        // next_attempt(8)|seq → nil: heads in backoff
	bByEntity     = []byte("by_entity")      // len(2)|entity|entity_seq(8) → seq
	bEntities     = []byte("entities")       // len(2)|entity → last entity_seq(8)|unfinished(8)
	bByStatus     = []byte("by_status")      // status(1)|rank(1)|time(8)|seq(8) → user (pending) or nil; see stateKey
	bByUserStatus = []byte("by_user_status") // len(2)|user|status(1)|rank(1)|time(8)|seq(8) → nil; not completed
	bByUser       = []byte("by_user")        // len(2)|user|seq(8) → nil
	bByType       = []byte("by_type")        // len(2)|type|seq(8) → nil
	bUserCounts   = []byte("user_counts")    // len(2)|user → per-user counters
	bTombstones   = []byte("tombstones")     // removed_at(8)|uuid(16) → nil: ids of removed events (tombstone.go)
	bIdleEntities = []byte("idle_entities")  // idle_since(8)|len(2)|entity → nil: entities with no events (entity.go)
	bMeta         = []byte("meta")
	kCounts       = []byte("stats")      // the counters of all users (counts)
	kStaleMark    = []byte("stale_mark") // stale watermark: a time key (created_at|seq)
	kVersion      = []byte("version")
	kBrokerMax    = []byte("broker_max_payload") // the broker's max_payload, as last told

	// The counters of layout version 1, which version 2 replaced.
	kCountsV1  = []byte("counts")
	allBuckets = [][]byte{bEvents, bIDs, bReady, bDelayed, bByEntity, bEntities, bByStatus, bByUserStatus,
		bByUser, bByType, bUserCounts, bTombstones, bIdleEntities, bMeta}
	// kIdleIndexed marks a file whose idle entities are filed in
	// idle_entities (files written before it existed are indexed once).
	kIdleIndexed = []byte("idle_indexed")
	// derivedBuckets are rebuilt from the records by a migration.
	derivedBuckets = [][]byte{bByStatus, bByUserStatus, bByUser, bByType, bUserCounts}

	prioNames = [...][]byte{[]byte("0"), []byte("1"), []byte("2"), []byte("3"), []byte("4"), []byte("5"), []byte("6"), []byte("7"), []byte("8"), []byte("9")}
)

const layoutVersion = 2

// Open opens or creates the store file at path (its directory too).
//
// A damaged file is an error wrapping ErrCorrupt, never a crash: Open checks
// the file before bbolt maps it (CheckFile), checks the store's own keys, and
// turns a fault or a panic while bbolt reads the file into that error.
func Open(path string, opts *Options) (s *Store, err error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	o.setDefaults()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("boltstore: %w", err)
	}
	if err := CheckFile(path); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			s = nil
		}
	}()
	defer recoverCorrupt(&err, path)()
	return open(path, o)
}

func open(path string, o Options) (*Store, error) {
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
	s.maxMessage.Store(int64(o.Event.MaxMessage))
	if o.Event.MaxMessage == 0 {
		s.maxMessage.Store(int64(outbox.MessageLimit(outbox.DefaultMaxMessage)))
	}
	err = db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bMeta).Get(kBrokerMax); v != nil {
			if len(v) != 8 {
				return fmt.Errorf("%w: meta/%s is %d bytes, want 8", ErrCorrupt, kBrokerMax, len(v))
			}
			s.maxMessage.Store(int64(outbox.MessageLimit(int64(binary.BigEndian.Uint64(v)))))
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("boltstore: open %s: %w", path, err)
	}
	return s, nil
}

func (s *Store) init(tx *bolt.Tx) error {
	meta, err := tx.CreateBucketIfNotExists(bMeta)
	if err != nil {
		return err
	}
	if err := checkMeta(meta); err != nil {
		return err
	}
	version := uint64(layoutVersion)
	if v := meta.Get(kVersion); v != nil {
		version = binary.BigEndian.Uint64(v)
	}
	switch version {
	case layoutVersion:
	case 1:
		if err := migrateV1(tx); err != nil {
			return fmt.Errorf("migrate layout 1 to %d: %w", layoutVersion, err)
		}
	default:
		return fmt.Errorf("layout version %d, this build reads %d", version, layoutVersion)
	}
	for _, name := range allBuckets {
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
	if err := meta.Put(kVersion, u64(layoutVersion)); err != nil {
		return err
	}
	w := s.writer(tx)
	if version == 1 {
		if err := w.rebuild(); err != nil {
			return fmt.Errorf("migrate layout 1 to %d: %w", layoutVersion, err)
		}
	}
	// Recovery: an event left processing (set through the library by a
	// process that died) becomes pending again, ready if it heads its entity.
	var stuck [][]byte
	c := w.byStatus.Cursor()
	pfx := []byte{statusCode(outbox.StatusProcessing)}
	for k, _ := c.Seek(pfx); k != nil && k[0] == pfx[0]; k, _ = c.Next() {
		stuck = append(stuck, append([]byte(nil), k...))
	}
	for _, k := range stuck {
		if len(k) != stateKeyLen {
			return w.corrupt("by_status key %x", k)
		}
		e, err := w.get(binary.BigEndian.Uint64(k[len(k)-8:]))
		if err != nil {
			return err
		}
		if e == nil || e.Status != outbox.StatusProcessing { // a stale index entry: drop it
			if err := w.byStatus.Delete(k); err != nil {
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
	if meta.Get(kIdleIndexed) == nil {
		if err := w.indexIdleEntities(s.opts.Now().UTC()); err != nil {
			return err
		}
		if err := meta.Put(kIdleIndexed, present); err != nil {
			return err
		}
	}
	return w.finish()
}

// Close closes the file. Callers stop the relay first.
func (s *Store) Close() error { return s.db.Close() }

// DB is the underlying bbolt database, for the application's own buckets.
// Do not touch the buckets this package creates (events, ids, ready,
// delayed, by_entity, entities, by_status, by_user_status, by_user,
// by_type, user_counts, tombstones, idle_entities, meta).
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
	now := s.opts.Now().UTC()
	if err := w.admit(events, now); err != nil {
		return 0, err
	}
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
	err = s.batch(func(tx *bolt.Tx) error {
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
	err = s.view(func(tx *bolt.Tx) error {
		var err error
		e, err = s.reader(tx).byID(u[:], id)
		return err
	})
	return e, err
}

// byID reads the stored event of the 16-byte uuid u (id, for messages):
// ErrNotFound when none is stored (a removed event's tombstone included).
func (w *writer) byID(u []byte, id string) (*outbox.Event, error) {
	ent, ok := w.lookup(u)
	if w.err != nil {
		return nil, w.err
	}
	if !ok || ent.seq == 0 {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	e, err := w.get(ent.seq)
	if err != nil {
		return nil, err
	}
	if e == nil {
		return nil, w.corrupt("ids names seq %d for %s, which has no record", ent.seq, id)
	}
	return e, nil
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
	err = s.view(func(tx *bolt.Tx) error {
		w := s.reader(tx)
		get := func(bucket string, k []byte, seq uint64) (*outbox.Event, error) {
			e, err := w.get(seq)
			if err == nil && e == nil {
				err = w.corrupt("%s entry %x names seq %d, which has no record", bucket, k, seq)
			}
			return e, err
		}
		nowN := uint64(now.UnixNano())
		c := tx.Bucket(bDelayed).Cursor()
		delayed := 0
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if len(k) != 16 {
				return w.corrupt("delayed key %x", k)
			}
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
			e, err := get("delayed", k, seq)
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
				if len(k) != 8 {
					return w.corrupt("ready/%d key %x", p, k)
				}
				seq := binary.BigEndian.Uint64(k)
				if skip(seq) {
					continue
				}
				e, err := get(fmt.Sprintf("ready/%d", p), k, seq)
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

// Complete marks acked events completed in one transaction (or deletes
// them, with Options.RemoveOnAck) and promotes the next event of each of
// their entities. Events no longer pending (deleted or
// changed by an operator meanwhile), and pending events that Due could not
// have returned (not their entity's head), are left alone.
func (s *Store) Complete(ctx context.Context, acks []Ack) error {
	return s.Record(ctx, acks, nil, 0)
}

// Failure records a publish attempt that failed with Err. The event goes into
// backoff until NextAttemptAt, or becomes failed when Permanent is set or it
// has used its max_attempts. An attempt whose outcome is Unknown (no answer:
// the stream may hold the event) never fails the event for its attempts, only
// a Permanent one does: failed means the stream does not hold it, so that an
// operator's retry cannot publish it twice.
type Failure struct {
	Seq           uint64
	At            time.Time
	Err           string
	NextAttemptAt time.Time
	Permanent     bool
	Unknown       bool
}

// Fail records failed attempts in one transaction.
func (s *Store) Fail(ctx context.Context, fails []Failure) error {
	return s.Record(ctx, nil, fails, 0)
}

// Retry makes a failed event pending again with its attempts reset, and
// ready when it heads its entity. It returns ErrNotRetryable for an event in
// any other status.
func (s *Store) Retry(ctx context.Context, id string) (*outbox.Event, error) {
	return s.updateByID(ctx, id, func(w *writer, e *outbox.Event) error {
		if e.Status != outbox.StatusFailed {
			return fmt.Errorf("%w: %s is %s", ErrNotRetryable, id, e.Status)
		}
		return w.retry(e)
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
	err = s.update(func(tx *bolt.Tx) error {
		w := s.writer(tx)
		var err error
		if e, err = w.byID(u[:], id); err != nil {
			return err
		}
		if err := fn(w, e); err != nil {
			return err
		}
		return w.finish()
	})
	return e, err
}
