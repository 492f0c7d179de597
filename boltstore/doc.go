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
// Both commit or both roll back. Enqueue does the same in a transaction of the
// store's own commit pipeline, shared with concurrent callers.
//
// Every commit that adds ready events signals Notify, which wakes the relay at
// once: there is no polling delay on the happy path. The relay reads Due and
// records outcomes with Complete and Fail.
//
// # Layout
//
// Layout version 3 (layout.go has the table). One bucket holds the event
// records by global sequence; an ack patches the relay's fields of a record
// in place (codec.go) rather than decoding and encoding it. Ready events (due
// now) are keyed by priority then seq, read highest priority first and FIFO
// within a priority; events waiting out a backoff are keyed by their next
// attempt time. What belongs to one entity (its state and chain) and to one
// user (its counters and index entries) shares one key prefix, so that an
// event dirties one page of each. The status index orders each status by
// priority then age, and completed events by completion time, so the oldest
// pending event, the stale ones and the completed ones retention removes are
// all at the front of a range. Open migrates a file of layout 1 or 2 in place,
// in one transaction, after writing a copy of it beside it (BackupPath).
//
// # Commit pipeline
//
// Enqueue and Record go through one goroutine that commits everything
// waiting, in one transaction with one pair of fsyncs, as soon as the
// previous commit returned (pipeline.go): no timer, and a busy store spreads
// its fsyncs over many callers. EnqueueTx runs in the application's own
// transaction instead. Close lets the pipeline finish what was submitted.
//
// # Statistics
//
// Counters per status, pending per priority, stored bytes and the latest
// completion, for all users and per user, change in the same transactions as
// the events: Stats and UserStats read a few keys and seek the first pending
// event of each priority, whatever the store holds. An event without a user
// ("" stands for all users throughout the API) is counted for all users only.
//
// Stale (pending for longer than Options.StaleAfter) cannot be a counter
// alone, because time passes: the counters hold the pending events accepted
// before a watermark, which a stale sweep (RunRetention, every few seconds)
// moves to now − StaleAfter, counting the events it passes; an event leaving
// pending behind the watermark leaves the count. A read adds the events that
// became stale since the sweep, up to 1024 of them: Stale is exact unless
// more than that became stale between two sweeps, and then a lower bound
// until the next one. StaleEvents lists them exactly.
//
// # Operations
//
// Beyond the relay's methods the store offers FitIQ's repository: listing
// with filters and an opaque cursor (List), fetches by status, entity and
// staleness, Update, the Mark* methods for processing events outside the
// relay, retries and deletes one by one or in bulk, orphan cleanup and an
// emergency Reset. Bulk operations work in transactions of at most 1000
// events and release the write lock in between, so the relay keeps going:
// they are not atomic as a whole.
//
// # Retention and admission
//
// RunRetention deletes completed events older than Options.Retention in
// transactions of 1000 (or Complete deletes them at once, with
// Options.RemoveOnAck); bbolt reuses the freed pages, so under a steady load
// the file stops growing. Compact rewrites a file offline to give the space
// back. Options.MaxPending, MaxBytes and MaxPendingAge are high-water marks:
// once one is reached, Enqueue refuses new events with ErrOutboxFull (a
// *FullError naming the mark); nothing already accepted is ever dropped.
//
// # Idempotency past removal
//
// Re-enqueueing a stored id with the same content stores nothing. The same
// holds for an id the store removed (retention, RemoveOnAck, an operator's
// delete) within Options.IdempotencyWindow (default 24h; keep it at least
// the stream's duplicate window): a tombstone of about 80 bytes remembers the
// id, a hash of its content, its seq and entity_seq; the re-post reports
// outbox.StatusRemoved with the seq and entity_seq of the first answer, and a
// re-post with other content fails with ErrDuplicate. So a client that
// re-posts after a lost answer never gets its event published twice. Past the
// window the sweep forgets the id; Reset forgets every removed id at once.
//
// # Per-entity order
//
// Events of one entity_id get entity_seq 1, 2, 3, ... in the enqueuing
// transaction, and only the entity's head (its earliest unfinished event) is
// ever ready: the next one becomes ready in the transaction that completes or
// deletes the head. A head that failed for good blocks its entity until an
// operator retries or deletes it; the events behind it stay pending. The Mark*
// methods accept only an entity's head (ErrNotHead).
//
// An entity is remembered (its last entity_seq) while any of its events is
// stored, and for Options.EntityHorizon (default 7 days) after its last one
// was removed; then the sweep forgets it, so that a workload with one entity
// per record does not grow the file forever. If a forgotten entity gets an
// event again, its entity_seq starts again at 1: a consumer that keeps the
// last entity_seq it saw per entity must keep it no longer than the horizon,
// or treat entity_seq 1 as the start of a new chain.
//
// # Times
//
// created_at is the application's (kept for ce-time, bounded by
// outbox.Validate); accepted_at is the store's own clock when it accepted the
// event. Staleness, admission by age (MaxPendingAge) and the pending order of
// listings use accepted_at, so that no client's clock steers them.
//
// # Damaged files
//
// A damaged file is an error wrapping ErrCorrupt, never a crash. Open checks
// the file before bbolt maps it (CheckFile: a valid meta page, a file as long
// as the pages it names, root and freelist pages of the right kind), checks
// the store's own keys, and every read turns a panic or a memory fault while
// bbolt reads a damaged page into ErrCorrupt. Every decode of the store's own
// bytes (records, index keys and values, counters) checks lengths and returns
// ErrCorrupt: an index entry whose record is missing included. What to do:
// restore a backup, or copy out what can still be read and compact.
//
// # Caveats
//
// bbolt takes an exclusive lock on the file: one process opens a store. Open
// waits Options.Timeout for the lock, then fails with ErrLocked.
// The file does not shrink; freed pages are reused, and Compact rewrites it
// offline. A long read transaction (a Backup of a large file, a slow reader
// of DB()) keeps the pages freed meanwhile from reuse until it ends.
// Pages of a List are read in separate transactions: an event that changes
// status between two pages may be missed or listed twice.
package boltstore
