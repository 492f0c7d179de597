package bench

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fitiqcore/outbox/relay"
	bolt "go.etcd.io/bbolt"
)

const (
	latencyRate      = 1000 // events/s of the latency phase
	latencyProducers = 16   // pace latency_loaded's events
)

// latency: one event per EnqueueTx commit at a steady rate, timed from the
// commit's return to the Done of its outcome.
func (r *runner) latency(ctx context.Context) error {
	store, pub, done, err := r.storeAndStream(ctx, "latency")
	if err != nil {
		return err
	}
	defer done()

	var t tally
	var times commitTimes
	rl, err := relay.New(store, pub, relay.Config{MaxInFlight: maxInFlight, Observer: times.observer(&t)})
	if err != nil {
		return err
	}
	mk, d := r.events("latency"), r.o.Duration
	n := int(d.Seconds() * latencyRate)
	interval := time.Second / latencyRate
	var produced time.Duration
	defer r.profile("latency")()
	if err := runBeside(ctx, rl, func(ctx context.Context) error {
		var sent atomic.Int64
		unfollow := r.prog.follow(func() float64 { return float64(sent.Load()) / float64(n) })
		defer unfollow()
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
			times.committed(e.ID, time.Now())
			sent.Store(int64(i + 1))
		}
		produced = time.Since(start)
		unfollow()
		return r.await(ctx, n, &t)
	}); err != nil {
		return err
	}
	l, slowest := times.latency(n, produced)
	r.res.Latency = l
	r.note("latency: %d events, one per EnqueueTx commit, paced at %d/s (achieved %.0f/s), commit return to outcome Done; max %.3f ms",
		n, latencyRate, l.Achieved, ms(slowest))
	return nil
}

// latency_loaded: the latency phase's figures under load. Producers enqueue
// one event per Store.Enqueue call, through the commit pipeline, at half the
// sustained rate (5000/s when sustained did not run), and each event is
// timed from Enqueue's return to the Done of its outcome.
func (r *runner) latencyLoaded(ctx context.Context) error {
	rate := r.res.Sustained / 2
	if rate <= 0 {
		rate = 5000
	}
	store, pub, done, err := r.storeAndStream(ctx, "latency_loaded")
	if err != nil {
		return err
	}
	defer done()

	var t tally
	var times commitTimes
	rl, err := relay.New(store, pub, relay.Config{MaxInFlight: maxInFlight, Observer: times.observer(&t)})
	if err != nil {
		return err
	}
	mk, d := r.events("latency_loaded"), r.o.Duration
	interval := time.Duration(float64(time.Second) * latencyProducers / rate)
	total := int64(d.Seconds() * rate)
	var next, sent atomic.Int64
	var produced time.Duration
	defer r.profile("latency_loaded")()
	if err := runBeside(ctx, rl, func(ctx context.Context) error {
		unfollow := r.prog.follow(func() float64 { return float64(sent.Load()) / float64(total) })
		defer unfollow()
		start := time.Now()
		err := parallel(ctx, latencyProducers, func(ctx context.Context) error {
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
				times.committed(e.ID, time.Now())
				sent.Add(1)
			}
			return ctx.Err()
		})
		produced = time.Since(start)
		unfollow()
		if err != nil {
			return err
		}
		return r.await(ctx, int(sent.Load()), &t)
	}); err != nil {
		return err
	}
	n := int(sent.Load())
	l, slowest := times.latency(n, produced)
	r.res.LatencyLoaded = l
	r.note("latency_loaded: %d events from %d producers, one per Store.Enqueue (the commit pipeline), paced at %.0f/s (half the sustained rate; achieved %.0f/s), Enqueue return to outcome Done; max %.3f ms",
		n, latencyProducers, rate, l.Achieved, ms(slowest))
	return nil
}

// commitTimes are the latency phases' clocks: when each event's commit
// returned, and the Done of its outcome, by event id.
type commitTimes struct {
	mu           sync.Mutex
	commit, done map[string]time.Time
}

func (c *commitTimes) committed(id string, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.commit == nil {
		c.commit = map[string]time.Time{}
	}
	c.commit[id] = at
}

// observer is the relay's Observer: it tallies the outcome in t and keeps
// the Done of every published event.
func (c *commitTimes) observer(t *tally) func(relay.Outcome) {
	return func(o relay.Outcome) {
		t.observe(o)
		if o.Kind != relay.Published {
			return
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.done == nil {
			c.done = map[string]time.Time{}
		}
		c.done[o.Event.ID] = o.Done
	}
}

// latency is the figure of n events produced in produced: the pace achieved
// and the percentiles of commit to Done; slowest is the largest.
func (c *commitTimes) latency(n int, produced time.Duration) (l Latency, slowest time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	lat := make([]time.Duration, 0, n)
	for id, at := range c.commit {
		lat = append(lat, c.done[id].Sub(at))
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return ms(lat[min(len(lat)-1, int(p*float64(len(lat))))])
	}
	return Latency{Achieved: float64(n) / produced.Seconds(), P50: pct(0.50), P99: pct(0.99), P999: pct(0.999)}, lat[len(lat)-1]
}

// ms is d in milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
