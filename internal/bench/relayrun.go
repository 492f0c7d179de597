package bench

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/fitiqcore/outbox/internal/rungroup"
	"github.com/fitiqcore/outbox/relay"
)

// The relay as the phases run it: beside their work in a run group, its
// outcomes tallied and awaited.

// runBeside runs the relay beside a phase's work, the two actors of a run
// group: work returning (done, or failed) interrupts the relay, which
// drains; the relay failing ends work's ctx. It returns when both have, with
// the first error.
func runBeside(ctx context.Context, rl *relay.Relay, work func(ctx context.Context) error) error {
	var g rungroup.Group
	workCtx, stopWork := context.WithCancel(ctx)
	g.Add(func() error { return work(workCtx) }, func(error) { stopWork() })
	relayCtx, stopRelay := context.WithCancel(ctx)
	g.Add(func() error { return rl.Run(relayCtx) }, func(error) { stopRelay() })
	return g.Run()
}

// tally counts a relay's outcomes.
type tally struct {
	mu          sync.Mutex
	published   int
	failed      int
	lastErr     error
	first, last time.Time // earliest Sent, latest Done
}

func (t *tally) observe(o relay.Outcome) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch o.Kind {
	case relay.Published:
		t.published++
		if t.first.IsZero() || o.Sent.Before(t.first) {
			t.first = o.Sent
		}
		if o.Done.After(t.last) {
			t.last = o.Done
		}
	case relay.Failed:
		t.failed++
		t.lastErr = o.Err
	case relay.Retried, relay.Unavailable:
		t.lastErr = o.Err
	}
}

func (t *tally) counts() (published, failed int, lastErr error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.published, t.failed, t.lastErr
}

func (t *tally) span() (first, last time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.first, t.last
}

// await waits until n events are published, showing progress; it fails when
// an event fails or nothing moves for a minute.
func (r *runner) await(ctx context.Context, n int, t *tally) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	last, moved := -1, time.Now()
	for {
		published, failed, lastErr := t.counts()
		r.prog.set(float64(published) / float64(n))
		switch {
		case published >= n:
			return nil
		case failed > 0:
			return fmt.Errorf("%d events failed, last: %v", failed, lastErr)
		case published != last:
			last, moved = published, time.Now()
		case time.Since(moved) > stallTimeout:
			return fmt.Errorf("stalled at %d of %d events (last error: %v)", published, n, lastErr)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}
