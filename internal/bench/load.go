package bench

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fitiqcore/outbox/relay"
)

// Load: producers and the relay at once; sustained here, the latency
// phases in latency.go.

// sustained: 64 producers enqueueing and the relay publishing at once;
// events completed per second of the run.
func (r *runner) sustained(ctx context.Context) error {
	store, pub, done, err := r.storeAndStream(ctx, "sustained")
	if err != nil {
		return err
	}
	defer done()

	var mu sync.Mutex
	var from, to time.Time
	completed := 0
	rl, err := relay.New(store, pub, relay.Config{MaxInFlight: maxInFlight, Observer: func(o relay.Outcome) {
		if o.Kind != relay.Published {
			return
		}
		mu.Lock()
		if !o.Done.Before(from) && !o.Done.After(to) {
			completed++
		}
		mu.Unlock()
	}})
	if err != nil {
		return err
	}
	mk, d := r.events("sustained"), r.o.Duration
	var next atomic.Int64
	defer r.profile("sustained")()
	err = runBeside(ctx, rl, func(ctx context.Context) error {
		mu.Lock()
		from = time.Now()
		to = from.Add(d)
		mu.Unlock()
		defer r.prog.follow(func() float64 { return float64(time.Since(from)) / float64(d) })()
		if err := parallel(ctx, producers, func(ctx context.Context) error {
			for ctx.Err() == nil && time.Now().Before(to) {
				if _, err := store.Enqueue(ctx, mk(int(next.Add(1)-1))); err != nil {
					return err
				}
			}
			return ctx.Err()
		}); err != nil {
			return err
		}
		// What completes until the window's end counts: wait for it.
		rest := time.NewTimer(time.Until(to))
		defer rest.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-rest.C:
			return nil
		}
	})
	if err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	if completed == 0 {
		return errors.New("no event completed")
	}
	r.res.Sustained = float64(completed) / d.Seconds()
	r.note("sustained: %s with %d producers (Store.Enqueue) and the relay; %d enqueued (%.0f/s), %d completed within the window",
		d, producers, next.Load(), float64(next.Load())/d.Seconds(), completed)
	return nil
}
