package boltstore

import (
	"errors"
	"fmt"
	"time"

	"github.com/fitiqcore/outbox"
)

var (
	// ErrNotFound: no event has that id. It is outbox.ErrNotFound, on which
	// the relay branches (it does not import the store).
	ErrNotFound = outbox.ErrNotFound
	// ErrDuplicate: an event with that id is stored already with different
	// content. (Re-enqueueing identical content is not an error.)
	ErrDuplicate = errors.New("boltstore: event id exists with different content")
	// ErrLocked: another process holds the store file.
	ErrLocked = errors.New("boltstore: store file is locked by another process")
	// ErrWrongDB: EnqueueTx was given a transaction of another database.
	ErrWrongDB = errors.New("boltstore: transaction is not of this store's database")
	// ErrCorrupt: the store file is damaged (a record or a key that does not
	// decode, an index entry without its record, a file shorter than its
	// pages). Nothing is changed; restore a backup, or copy out what can be
	// read with relay backup --offline and compact.
	ErrCorrupt = errors.New("boltstore: store file is damaged")
	// ErrNotStore: a bbolt file that holds no outbox.
	ErrNotStore = errors.New("boltstore: not an outbox store file")
	// ErrNotRetryable: Retry was asked for an event that is not failed, or
	// RetryWhere for a status other than failed.
	ErrNotRetryable = errors.New("boltstore: only failed events can be retried")
)

// Errors of the operator's and the repository's operations.
var (
	// ErrOutboxFull: admission control refused new events because a
	// high-water mark (Options.MaxPending, MaxBytes, MaxPendingAge) is
	// passed. The error is a *FullError naming the mark. Nothing already
	// stored is affected; the caller retries later.
	ErrOutboxFull = errors.New("boltstore: outbox full")
	// ErrBadCursor: a List cursor that this store did not hand out, or
	// one handed out for other filters.
	ErrBadCursor = errors.New("boltstore: malformed cursor")
	// ErrInvalidQuery: a listing asked for an unknown status,
	// FetchByEntity for no entity, or DeleteUser for no user.
	ErrInvalidQuery = errors.New("boltstore: invalid query")
	// ErrNotHead: a Mark* method was asked for a pending event that waits
	// behind an earlier unfinished event of its entity: only an entity's
	// head may be processed, completed or failed, so that its events are
	// handled in order.
	ErrNotHead = errors.New("boltstore: event is not its entity's pending head")
	// ErrWrongStatus: the event's status does not allow the operation
	// (Update of a processing or completed event, MarkProcessing of an
	// event that is not pending, MarkFailed of a completed one). The caller
	// reads the event again and decides.
	ErrWrongStatus = errors.New("boltstore: operation not allowed in the event's status")
)

// FullError is the error admission control returns; it matches
// ErrOutboxFull with errors.Is.
type FullError struct {
	// Mark is the high-water mark passed: "max_pending", "max_bytes" or
	// "max_pending_age".
	Mark string
	// Value and Limit are the measured value and the configured limit
	// (counts, bytes, or nanoseconds of age).
	Value, Limit int64
	// RetryAfter is a hint for the caller (an HTTP Retry-After).
	RetryAfter time.Duration
}

// Error names the mark, the measured value, the limit and the hint.
func (e *FullError) Error() string {
	if e.Mark == "max_pending_age" {
		return fmt.Sprintf("%v: %s passed (oldest pending %s, limit %s), retry after %s", ErrOutboxFull, e.Mark,
			time.Duration(e.Value).Round(time.Millisecond), time.Duration(e.Limit), e.RetryAfter)
	}
	return fmt.Sprintf("%v: %s passed (%d, limit %d), retry after %s", ErrOutboxFull, e.Mark, e.Value, e.Limit, e.RetryAfter)
}

// Is makes errors.Is(err, ErrOutboxFull) true.
func (e *FullError) Is(target error) bool { return target == ErrOutboxFull }
