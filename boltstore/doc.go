// Package boltstore keeps the outbox in one bbolt file: the events, their
// indexes and their counters.
//
// # Basics
//
// Open a store with Open. An application that keeps its own data in the same
// file writes its records and its events in one transaction:
//
//	err := store.DB().Update(func(tx *bbolt.Tx) error {
//		if err := saveMood(tx, mood); err != nil {
//			return err
//		}
//		_, err := store.EnqueueTx(tx, &outbox.Event{Type: "mood.created", EntityID: mood.ID, Payload: b})
//		return err
//	})
//
// Both commit or both roll back. Enqueue does the same in a transaction of its
// own, group-committed with concurrent callers through bbolt's Batch.
//
// Every commit that adds ready events signals Notify, which wakes the relay at
// once: there is no polling delay on the happy path.
//
// # Layout
//
// One bucket holds the event records by global sequence. Ready events (due
// now) live in ten priority buckets, read highest priority first and FIFO
// within a priority; events waiting out a backoff live in a bucket keyed by
// their next attempt time. Secondary indexes by id, user, entity and status,
// and counters per status, keep every operation off a full scan.
//
// # Per-entity order
//
// Events of one entity_id get entity_seq 1, 2, 3, ... in the enqueuing
// transaction, and only the entity's head (its earliest unfinished event) is
// ever ready: the next one becomes ready in the transaction that completes or
// deletes the head. A head that failed for good blocks its entity until an
// operator retries or deletes it; the events behind it stay pending.
//
// # Caveats
//
// bbolt takes an exclusive lock on the file: one process opens a store. Open
// waits Options.Timeout for the lock, then fails with ErrLocked.
// The file does not shrink; freed pages are reused.
package boltstore
