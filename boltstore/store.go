package boltstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/fitiqcore/outbox"
	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Store is an outbox kept in one bbolt file. It is safe for concurrent use.
type Store struct {
	db         *bolt.DB
	opts       Options
	wake       chan struct{}
	maxMessage atomic.Int64 // outbox.Options.MaxMessage of new events
	pipe       pipe

	// fairNext is, per priority rank, where FairnessUser's next Due starts
	// its first round (fair.go).
	fairMu   sync.Mutex
	fairNext [outbox.MaxPriority + 1][]byte
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
	if err := o.validate(); err != nil {
		return nil, err
	}
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
	s := &Store{db: db, opts: o, wake: make(chan struct{}, 1)}
	if v, err := layoutOf(db); err != nil || (v > 0 && v < layoutVersion) {
		if err == nil {
			err = backupBeforeMigration(db, path, v)
		}
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("boltstore: open %s: %w", path, err)
		}
	}
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
	s.startPipeline()
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
	case 1, 2:
		if err := s.migrate(tx, version); err != nil {
			return fmt.Errorf("migrate layout %d to %d: %w", version, layoutVersion, err)
		}
	default:
		return fmt.Errorf("layout version %d, this build reads %d and older", version, layoutVersion)
	}
	for _, name := range allBuckets {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	if err := meta.Put(kVersion, u64(layoutVersion)); err != nil {
		return err
	}
	w := s.writer(tx)
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
	if err := s.initFairness(tx); err != nil {
		return err
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

// Close commits what was submitted to the pipeline, stops it and closes the
// file. Callers stop the relay first; calls after Close fail with ErrClosed.
func (s *Store) Close() error {
	s.stopPipeline()
	return s.db.Close()
}

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
