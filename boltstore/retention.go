package boltstore

import (
	"context"
	"runtime"
	"time"
)

// retentionBatch is how many completed events one retention transaction
// deletes at most.
const retentionBatch = bulkBatch

// SweepOnce runs one pass of the background sweep: it brings the stale
// counters up to date (see Stats), forgets the ids of events removed longer
// than Options.IdempotencyWindow ago and the entities idle for longer than
// Options.EntityHorizon, then deletes the events completed longer
// than Options.Retention ago (none when Retention is negative), in
// transactions of at most 1000 deletions, yielding the write lock between
// them, until none is left. It returns how many events it deleted.
func (s *Store) SweepOnce(ctx context.Context) (deleted int, err error) {
	if err := s.sweepStale(ctx); err != nil {
		return 0, err
	}
	if _, _, err := s.forgetRemoved(ctx); err != nil {
		return 0, err
	}
	if s.opts.Retention < 0 {
		return 0, nil
	}
	before := s.opts.Now().Add(-s.opts.Retention)
	for {
		n, err := s.DeleteCompletedBefore(ctx, before, retentionBatch)
		deleted += n
		if err != nil || n < retentionBatch {
			return deleted, err
		}
		runtime.Gosched() // let a waiting relay transaction take the lock
	}
}

// RunRetention runs the background sweep until ctx ends, then returns nil.
// Every interval (default 1m when interval <= 0) it runs SweepOnce; in
// between, every StaleAfter/10 (between 1s and 30s) it brings the stale
// counters up to date, a cheap walk over the events that became stale
// since. It returns the first error of a sweep other than ctx's own. Cancel
// ctx and wait for RunRetention to return before closing the store.
func (s *Store) RunRetention(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		interval = time.Minute
	}
	tick := min(interval, max(time.Second, min(30*time.Second, s.opts.StaleAfter/10)))
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	var last time.Time // of the last full sweep
	for {
		var err error
		if time.Since(last) >= interval-tick/2 {
			last = time.Now()
			_, err = s.SweepOnce(ctx)
		} else {
			err = s.sweepStale(ctx)
		}
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}
