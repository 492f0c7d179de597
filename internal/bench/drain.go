package bench

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/fitiqcore/outbox/boltstore"
	"github.com/fitiqcore/outbox/relay"
)

// drain: a preloaded backlog of n events relayed end to end, from the first
// publish (the first outcome's Sent) to the last completion written (the last
// outcome's Done). With rss set it measures peak RSS while the relay runs.
func (r *runner) drain(ctx context.Context, phase string, n int, rss *rssMeter) (float64, error) {
	store, dir, err := r.openStore(phase)
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	if err := r.preload(ctx, store, phase, n); err != nil {
		store.Close()
		return 0, err
	}
	// Start as a relay starts after an outage: on a store opened afresh,
	// nothing of the preload mapped or on the heap.
	path := store.Path()
	if err := store.Close(); err != nil {
		return 0, err
	}
	if rss != nil { // the 1M backlog: what the file costs per event
		st, err := os.Stat(path)
		if err != nil {
			return 0, err
		}
		r.res.BytesPerEvent = float64(st.Size()) / float64(n)
		r.note("bytes_per_event: file of %d bytes for %d events of %d B payload", st.Size(), n, r.o.Payload)
	}
	if store, err = boltstore.Open(path, nil); err != nil {
		return 0, err
	}
	defer store.Close()
	name, prefix := r.stream(phase)
	pub, err := r.publisher(ctx, phase, name, prefix)
	if err != nil {
		return 0, err
	}
	defer r.deleteStream(name)
	defer pub.Close()

	var t tally
	rl, err := relay.New(store, pub, relay.Config{MaxInFlight: maxInFlight, Observer: t.observe})
	if err != nil {
		return 0, err
	}
	r.prog.step("")
	runtime.GC()
	debug.FreeOSMemory()
	if rss != nil {
		rss.start()
	}
	unprofile := r.profile(phase)
	if err := runBeside(ctx, rl, func(ctx context.Context) error {
		defer func() {
			unprofile()
			if rss != nil {
				rss.stop()
			}
		}()
		return r.await(ctx, n, &t)
	}); err != nil {
		return 0, err
	}
	if got, err := r.streamMsgs(ctx, name); err != nil || got != uint64(n) {
		return 0, fmt.Errorf("stream holds %d of %d messages (%v)", got, n, err)
	}
	first, last := t.span()
	r.note("%s: backlog of %d events (own entity each, so all are heads and may be in flight together; 100 users), preloaded in transactions of %d, store reopened; relay.Run with BatchSize 1000, MaxInFlight %d; first Sent to last Done %s",
		phase, n, preloadTx, maxInFlight, last.Sub(first).Round(time.Millisecond))
	return float64(n) / last.Sub(first).Seconds(), nil
}
