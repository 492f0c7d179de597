package boltstore

import "errors"

var (
	// ErrNotFound: no event has that id.
	ErrNotFound = errors.New("boltstore: event not found")
	// ErrDuplicate: an event with that id is stored already with different
	// content. (Re-enqueueing identical content is not an error.)
	ErrDuplicate = errors.New("boltstore: event id exists with different content")
	// ErrLocked: another process holds the store file.
	ErrLocked = errors.New("boltstore: store file is locked by another process")
	// ErrWrongDB: EnqueueTx was given a transaction of another database.
	ErrWrongDB = errors.New("boltstore: transaction is not of this store's database")
	// ErrNotRetryable: Retry was asked for an event that is not failed.
	ErrNotRetryable = errors.New("boltstore: only failed events can be retried")
)
