package bench

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
	"github.com/fitiqcore/outbox/publisher"
	bolt "go.etcd.io/bbolt"
)

// The FitIQ relay's settings (OutboxProcessor: processingInterval 0.1,
// batchSize 10, maxConcurrentOperations 3).
const (
	fitiqInterval    = 100 * time.Millisecond
	fitiqBatch       = 10
	fitiqConcurrency = 3
)

// bProcessing is the baseline's own bucket for its "processing" marks,
// beside the store's.
var bProcessing = []byte("bench_fitiq_processing")

// fitiqRelay is the baseline: FitIQ's polling relay written against this
// store. Every 100ms it fetches up to 10 pending events in priority order and
// syncs them 3 at a time: mark processing (one transaction), publish and wait
// for the ack, mark completed (one transaction). A tick that comes while a
// batch is being synced is skipped.
type fitiqRelay struct {
	store    *boltstore.Store
	pub      *publisher.Publisher
	complete func(done time.Time) // called after each completion is written
}

// run polls until ctx ends.
func (f *fitiqRelay) run(ctx context.Context) error {
	if err := f.store.DB().Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bProcessing)
		return err
	}); err != nil {
		return err
	}
	t := time.NewTicker(fitiqInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := f.processBatch(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

func (f *fitiqRelay) processBatch(ctx context.Context) error {
	events, _, err := f.store.Due(ctx, time.Now(), fitiqBatch, nil)
	if err != nil {
		return err
	}
	sem := make(chan struct{}, fitiqConcurrency)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for _, e := range events {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := f.sync(ctx, e); err != nil {
				mu.Lock()
				first = cmp.Or(first, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return first
}

// sync is FitIQ's per-event work: two marks, one transaction each, around a
// synchronous publish.
func (f *fitiqRelay) sync(ctx context.Context, e *outbox.Event) error {
	if err := f.store.DB().Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bProcessing).Put(binary.BigEndian.AppendUint64(nil, e.Seq), nil)
	}); err != nil {
		return fmt.Errorf("mark processing: %w", err)
	}
	sent := time.Now()
	if _, err := f.pub.Publish(ctx, e, e.AttemptCount+1); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	if err := f.store.Complete(ctx, []boltstore.Ack{{Seq: e.Seq, At: sent}}); err != nil {
		return fmt.Errorf("mark completed: %w", err)
	}
	f.complete(time.Now())
	return nil
}

// baseline_fitiq: the FitIQ-style relay draining the same kind of backlog
// (Options.Events events) for Options.Duration.
func (r *runner) baseline(ctx context.Context) error {
	const phase = "baseline_fitiq"
	store, dir, err := r.openStore(phase)
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	defer store.Close()
	if err := r.preload(ctx, store, phase, r.o.Events); err != nil {
		return err
	}
	name, prefix := r.stream(phase)
	pub, err := r.publisher(ctx, phase, name, prefix)
	if err != nil {
		return err
	}
	defer r.deleteStream(name)
	defer pub.Close()

	d := r.o.Duration
	var mu sync.Mutex
	completed := 0
	defer r.profile(phase)()
	start := time.Now()
	end := start.Add(d)
	f := &fitiqRelay{store: store, pub: pub, complete: func(done time.Time) {
		mu.Lock()
		if !done.After(end) {
			completed++
		}
		mu.Unlock()
	}}
	r.prog.step("")
	defer r.prog.follow(func() float64 { return float64(time.Since(start)) / float64(d) })()
	runCtx, cancel := context.WithDeadline(ctx, end)
	defer cancel()
	if err := f.run(runCtx); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	if completed == 0 {
		return errors.New("no event completed")
	}
	r.res.BaselineFitIQ = float64(completed) / d.Seconds()
	r.note("baseline_fitiq: poll every %s, batch of %d, %d concurrent syncs, synchronous Publish per event, one Update per mark (processing, completed); backlog of %d events, %d completed in %s",
		fitiqInterval, fitiqBatch, fitiqConcurrency, r.o.Events, completed, d)
	return nil
}
