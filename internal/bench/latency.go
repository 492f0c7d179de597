package bench

import (
	"context"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fitiqcore/outbox/relay"
	bolt "go.etcd.io/bbolt"
)

// latency: one event per EnqueueTx commit at a steady rate, timed from the
// commit's return to the Done of its outcome.
func (r *runner) latency(ctx context.Context) error {
	store, dir, err := r.openStore("latency")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	defer store.Close()
	name, prefix := r.stream("latency")
	pub, err := r.publisher(ctx, "latency", name, prefix)
	if err != nil {
		return err
	}
	defer r.deleteStream(name)
	defer pub.Close()

	var mu sync.Mutex
	committed, done := map[string]time.Time{}, map[string]time.Time{}
	var t tally
	rl, err := relay.New(store, pub, relay.Config{MaxInFlight: maxInFlight, Observer: func(o relay.Outcome) {
		t.observe(o)
		if o.Kind == relay.Published {
			mu.Lock()
			done[o.Event.ID] = o.Done
			mu.Unlock()
		}
	}})
	if err != nil {
		return err
	}
	stop := runRelay(ctx, rl)
	defer stop() //nolint:errcheck // the error path; stopped below otherwise
	mk, d := r.events("latency"), r.o.Duration
	n := int(d.Seconds() * latencyRate)
	interval := time.Second / latencyRate
	var sent atomic.Int64
	unfollow := r.prog.follow(func() float64 { return float64(sent.Load()) / float64(n) })
	defer r.profile("latency")()
	start := time.Now()
	for i := range n {
		if err := ctx.Err(); err != nil {
			return err
		}
		if time.Since(start) > d { // a slow machine (or -race) falls behind: keep to the duration
			n = i
			break
		}
		time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		e := mk(i)
		if err := store.DB().Update(func(tx *bolt.Tx) error {
			_, err := store.EnqueueTx(tx, e)
			return err
		}); err != nil {
			return err
		}
		at := time.Now()
		mu.Lock()
		committed[e.ID] = at
		mu.Unlock()
		sent.Store(int64(i + 1))
	}
	produced := time.Since(start)
	unfollow()
	if err := r.await(ctx, n, &t); err != nil {
		return err
	}
	if err := stop(); err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	lat := make([]time.Duration, 0, n)
	for id, c := range committed {
		lat = append(lat, done[id].Sub(c))
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))]) / float64(time.Millisecond)
	}
	r.res.Latency = Latency{Achieved: float64(n) / produced.Seconds(), P50: pct(0.50), P99: pct(0.99), P999: pct(0.999)}
	r.note("latency: %d events, one per EnqueueTx commit, paced at %d/s (achieved %.0f/s), commit return to outcome Done; max %.3f ms",
		n, latencyRate, float64(n)/produced.Seconds(), float64(lat[len(lat)-1])/float64(time.Millisecond))
	return nil
}

// latencyProducers pace latency_loaded's events.
const latencyProducers = 16

// latency_loaded: the latency phase's figures under load. Producers enqueue
// one event per Store.Enqueue call, through the commit pipeline, at half the
// sustained rate (5000/s when sustained did not run), and each event is
// timed from Enqueue's return to the Done of its outcome.
func (r *runner) latencyLoaded(ctx context.Context) error {
	rate := r.res.Sustained / 2
	if rate <= 0 {
		rate = 5000
	}
	store, dir, err := r.openStore("latency_loaded")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	defer store.Close()
	name, prefix := r.stream("latency_loaded")
	pub, err := r.publisher(ctx, "latency_loaded", name, prefix)
	if err != nil {
		return err
	}
	defer r.deleteStream(name)
	defer pub.Close()

	var mu sync.Mutex
	committed, done := map[string]time.Time{}, map[string]time.Time{}
	var t tally
	rl, err := relay.New(store, pub, relay.Config{MaxInFlight: maxInFlight, Observer: func(o relay.Outcome) {
		t.observe(o)
		if o.Kind == relay.Published {
			mu.Lock()
			done[o.Event.ID] = o.Done
			mu.Unlock()
		}
	}})
	if err != nil {
		return err
	}
	stop := runRelay(ctx, rl)
	defer stop() //nolint:errcheck // the error path; stopped below otherwise
	mk, d := r.events("latency_loaded"), r.o.Duration
	interval := time.Duration(float64(time.Second) * latencyProducers / rate)
	var next, sent atomic.Int64
	total := int64(d.Seconds() * rate)
	unfollow := r.prog.follow(func() float64 { return float64(sent.Load()) / float64(total) })
	defer r.profile("latency_loaded")()
	start := time.Now()
	err = parallel(ctx, latencyProducers, func(ctx context.Context) error {
		p := next.Add(1) - 1 // this producer's offset in the interval
		for k := int64(0); ctx.Err() == nil; k++ {
			at := start.Add(time.Duration(k)*interval + time.Duration(p)*interval/latencyProducers)
			if at.Sub(start) >= d {
				return nil
			}
			time.Sleep(time.Until(at))
			e := mk(int(k*latencyProducers + p))
			if _, err := store.Enqueue(ctx, e); err != nil {
				return err
			}
			now := time.Now()
			mu.Lock()
			committed[e.ID] = now
			mu.Unlock()
			sent.Add(1)
		}
		return ctx.Err()
	})
	produced := time.Since(start)
	unfollow()
	if err != nil {
		return err
	}
	n := int(sent.Load())
	if err := r.await(ctx, n, &t); err != nil {
		return err
	}
	if err := stop(); err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	lat := make([]time.Duration, 0, n)
	for id, c := range committed {
		lat = append(lat, done[id].Sub(c))
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))]) / float64(time.Millisecond)
	}
	r.res.LatencyLoaded = Latency{Achieved: float64(n) / produced.Seconds(), P50: pct(0.50), P99: pct(0.99), P999: pct(0.999)}
	r.note("latency_loaded: %d events from %d producers, one per Store.Enqueue (the commit pipeline), paced at %.0f/s (half the sustained rate; achieved %.0f/s), Enqueue return to outcome Done; max %.3f ms",
		n, latencyProducers, rate, float64(n)/produced.Seconds(), float64(lat[len(lat)-1])/float64(time.Millisecond))
	return nil
}
