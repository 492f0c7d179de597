package boltstore

import (
	"encoding/binary"

	bolt "go.etcd.io/bbolt"
)

// migrateV1 drops what layout version 1 kept and version 2 replaced:
// by_status (now keyed by rank and time), by_user (now without events of no
// user) and the counters. rebuild then derives the new indexes from the
// records.
func migrateV1(tx *bolt.Tx) error {
	for _, name := range [][]byte{bByUser, bByStatus} {
		if tx.Bucket(name) != nil {
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
		}
	}
	return tx.Bucket(bMeta).Delete(kCountsV1)
}

// rebuild derives every index and counter that depends on the records alone
// (derivedBuckets, the counters, the stale watermark) by reading every
// record, in this one transaction. Only a migration uses it: it is O(n).
func (w *writer) rebuild() error {
	for _, name := range derivedBuckets {
		if err := w.tx.DeleteBucket(name); err != nil {
			return err
		}
		if _, err := w.tx.CreateBucket(name); err != nil {
			return err
		}
	}
	*w = *w.s.writer(w.tx)
	w.c = counts{}
	w.setMark(w.s.staleCutoff())
	c := w.events.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		e, err := decodeEvent(v)
		if err != nil {
			return err
		}
		if e.Seq != binary.BigEndian.Uint64(k) {
			return errCorrupt
		}
		if err := w.addStatic(e); err != nil {
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
