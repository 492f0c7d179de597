package boltstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	bolt "go.etcd.io/bbolt"
)

// Migration. A file of layout 1 or 2 is migrated to layout 3 in place, in
// one transaction (all or nothing), after Open has written a copy of it
// beside it (BackupPath): the records are re-encoded, the ready sub-buckets
// become one bucket, entities and by_entity become the entity bucket, and
// the derived indexes and counters (by_status, the user bucket) are rebuilt
// from the records. The ids with their tombstones, the idle entities and the
// meta keys are kept as they are. It costs one pass over the file and, for
// the one transaction, memory for the pages it rewrites.

// The buckets of layouts 1 and 2 that layout 3 replaced.
var (
	bReadyV2       = []byte("ready")          // "0".."9" / seq → ∅
	bByEntityV2    = []byte("by_entity")      // len(2)|entity|entity_seq(8) → seq
	bEntitiesV2    = []byte("entities")       // len(2)|entity → last(8)|unfinished(8)[|idle since(8)]
	bByUserStatus2 = []byte("by_user_status") // len(2)|user|stateKey → ∅
	bByUserV2      = []byte("by_user")        // len(2)|user|seq(8) → ∅
	bByTypeV2      = []byte("by_type")        // len(2)|type|seq(8) → ∅
	bUserCountsV2  = []byte("user_counts")    // len(2)|user → counters
)

// BackupPath is where Open writes the copy of a file it migrates from layout
// version v: path.layout<v>.bak.
func BackupPath(path string, v uint64) string { return fmt.Sprintf("%s.layout%d.bak", path, v) }

// layoutOf reads the layout version of an open database (0 for a new file).
func layoutOf(db *bolt.DB) (uint64, error) {
	var v uint64
	err := db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bMeta)
		if meta == nil {
			return nil
		}
		b := meta.Get(kVersion)
		if b == nil {
			return nil
		}
		if len(b) != 8 {
			return fmt.Errorf("%w: meta/%s is %d bytes, want 8", ErrCorrupt, kVersion, len(b))
		}
		v = binary.BigEndian.Uint64(b)
		return nil
	})
	return v, err
}

// backupBeforeMigration writes BackupPath(path, v) unless it exists already
// (an earlier attempt that did not commit wrote it from the same file).
func backupBeforeMigration(db *bolt.DB, path string, v uint64) error {
	dst := BackupPath(path, v)
	if _, err := os.Stat(dst); err == nil {
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	tmp := dst + ".tmp"
	if err := db.View(func(tx *bolt.Tx) error { return tx.CopyFile(tmp, 0o600) }); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("back up %s before migrating it: %w", path, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("back up %s before migrating it: %w", path, err)
	}
	return nil
}

// migrate turns a file of layout from (1 or 2) into layout 3, in tx.
func (s *Store) migrate(tx *bolt.Tx, from uint64) error {
	if from == 1 {
		// Layout 1's counters; its by_user and by_status are dropped with
		// the other derived buckets below.
		if err := tx.Bucket(bMeta).Delete(kCountsV1); err != nil {
			return err
		}
	}
	if err := reencodeRecords(tx); err != nil {
		return fmt.Errorf("records: %w", err)
	}
	if err := mergeReady(tx); err != nil {
		return fmt.Errorf("ready: %w", err)
	}
	if err := mergeEntities(tx); err != nil {
		return fmt.Errorf("entities: %w", err)
	}
	for _, name := range [][]byte{bByStatus, bByUserStatus2, bByUserV2, bByTypeV2, bUserCountsV2, bUser} {
		if tx.Bucket(name) != nil {
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
		}
	}
	for _, name := range allBuckets {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	w := s.writer(tx)
	if err := w.rebuild(); err != nil {
		return err
	}
	return w.finish()
}

// reencodeRecords rewrites every record of layout 1 or 2 in layout 3, in
// chunks (a bucket must not change under its cursor).
func reencodeRecords(tx *bolt.Tx) error {
	b := tx.Bucket(bEvents)
	if b == nil {
		return nil
	}
	b.FillPercent = 0.9
	const chunk = 10000
	var from []byte
	for {
		type kv struct{ k, v []byte }
		var todo []kv
		c := b.Cursor()
		k, v := c.First()
		if from != nil {
			k, v = c.Seek(from)
		}
		for ; k != nil && len(todo) < chunk; k, v = c.Next() {
			if len(v) > 0 && v[0] == recordVersion {
				continue
			}
			e, err := decodeV2(v)
			if err != nil {
				return fmt.Errorf("seq %x: %w", k, err)
			}
			if len(k) != 8 || e.Seq != binary.BigEndian.Uint64(k) {
				return fmt.Errorf("%w: record of seq %d under key %x", errCorrupt, e.Seq, k)
			}
			todo = append(todo, kv{append([]byte(nil), k...), encodeEvent(nil, e)})
		}
		for _, r := range todo {
			if err := b.Put(r.k, r.v); err != nil {
				return err
			}
		}
		if k == nil {
			return nil
		}
		from = append([]byte(nil), k...)
	}
}

// mergeReady turns the ten ready/<priority> buckets into one keyed
// rank|seq.
func mergeReady(tx *bolt.Tx) error {
	old := tx.Bucket(bReadyV2)
	if old == nil {
		return nil
	}
	var keys [][]byte
	for p := 0; p <= 9; p++ {
		sub := old.Bucket([]byte{byte('0' + p)})
		if sub == nil {
			continue
		}
		if err := sub.ForEach(func(k, _ []byte) error {
			if len(k) != 8 {
				return fmt.Errorf("%w: ready/%d key %x", ErrCorrupt, p, k)
			}
			keys = append(keys, readyKey(p, binary.BigEndian.Uint64(k)))
			return nil
		}); err != nil {
			return err
		}
	}
	if err := tx.DeleteBucket(bReadyV2); err != nil {
		return err
	}
	b, err := tx.CreateBucket(bReady)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := b.Put(k, present); err != nil {
			return err
		}
	}
	return nil
}

// mergeEntities moves the entities' states (entities) and chains
// (by_entity) under one prefix per entity in the entity bucket.
func mergeEntities(tx *bolt.Tx) error {
	dst, err := tx.CreateBucketIfNotExists(bEntity)
	if err != nil {
		return err
	}
	if old := tx.Bucket(bEntitiesV2); old != nil {
		if err := old.ForEach(func(k, v []byte) error {
			if _, rest, ok := splitLenPrefixed(k); !ok || len(rest) != 0 || (len(v) != 16 && len(v) != 24) {
				return fmt.Errorf("%w: entities entry %x → %x", ErrCorrupt, k, v)
			}
			return dst.Put(entityStateKey(bytes.Clone(k)), bytes.Clone(v))
		}); err != nil {
			return err
		}
		if err := tx.DeleteBucket(bEntitiesV2); err != nil {
			return err
		}
	}
	if old := tx.Bucket(bByEntityV2); old != nil {
		if err := old.ForEach(func(k, v []byte) error {
			_, rest, ok := splitLenPrefixed(k)
			if !ok || len(rest) != 8 || len(v) != 8 {
				return fmt.Errorf("%w: by_entity entry %x → %x", ErrCorrupt, k, v)
			}
			ent := k[:len(k)-8]
			return dst.Put(entityChainKey(bytes.Clone(ent), binary.BigEndian.Uint64(rest)), bytes.Clone(v))
		}); err != nil {
			return err
		}
		if err := tx.DeleteBucket(bByEntityV2); err != nil {
			return err
		}
	}
	return nil
}

// rebuild derives every index and counter that depends on the records alone
// (by_status, the user bucket, the counters, the stale watermark) by reading
// every record, in this one transaction. Only a migration uses it: it is
// O(n). The derived buckets are empty when it starts.
func (w *writer) rebuild() error {
	w.c = counts{}
	w.setStaleWatermark(w.s.staleCutoff())
	c := w.events.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if len(k) != 8 {
			return fmt.Errorf("%w: events key %x", ErrCorrupt, k)
		}
		e, err := decodeEvent(binary.BigEndian.Uint64(k), v)
		if err != nil {
			return err
		}
		if err := w.addState(e); err != nil {
			return err
		}
		w.c.bytes += int64(len(v))
		w.user(e.UserID).bytes += int64(len(v))
	}
	return nil
}
