package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
	"github.com/fitiqcore/outbox/publisher"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	bolt "go.etcd.io/bbolt"
)

// The runner: one phase after the other (Run), and what the phases share:
// their events, stores, publishers and CPU profile, and parallel producers.

const (
	maxInFlight  = 4096 // relay.Config.MaxInFlight's default: the relay's and js_ceiling's limit
	producers    = 64   // concurrent producers of bbolt_ceiling, enqueue and sustained
	preloadTx    = 10_000
	stallTimeout = time.Minute
)

// runner takes the figures of one run.
type runner struct {
	o    Options
	root string
	id   string
	srv  *server
	nc   *nats.Conn
	js   jetstream.JetStream
	res  *Result
	prog *progress
}

func (r *runner) note(format string, args ...any) {
	r.res.Notes = append(r.res.Notes, fmt.Sprintf(format, args...))
}

func (r *runner) run(ctx context.Context, phase string) error {
	switch phase {
	case "js_ceiling":
		return r.jsCeiling(ctx)
	case "bbolt_ceiling":
		return r.bboltCeiling(ctx)
	case "enqueue":
		return r.enqueue(ctx)
	case "http_ingest":
		return r.httpIngest(ctx)
	case "drain":
		rate, err := r.drain(ctx, phase, r.o.Events, nil)
		r.res.Drain = rate
		return err
	case "drain_1m":
		m := &rssMeter{}
		rate, err := r.drain(ctx, phase, r.o.Events1M, m)
		r.res.Drain1M = rate
		if err == nil {
			r.res.RSSPeakMB, r.res.RSSAnonMB = m.peakMB, m.anonMB
			r.note("rss_peak_mb: %s", m.detail)
		}
		return err
	case "sustained":
		return r.sustained(ctx)
	case "latency":
		return r.latency(ctx)
	case "latency_loaded":
		return r.latencyLoaded(ctx)
	case "baseline_fitiq":
		return r.baseline(ctx)
	}
	return fmt.Errorf("unknown phase %q", phase)
}

// payload is the body of every message and event: a JSON string of exactly
// Options.Payload bytes, so that the HTTP API takes it as it is.
func (r *runner) payload() []byte {
	return []byte(`"` + strings.Repeat("x", r.o.Payload-2) + `"`)
}

// events returns the maker of a phase's events. Every event has an entity of
// its own and one of 100 users: the indexes are all written, as for real
// events, and every event heads its entity, so that none waits behind
// another (the relay keeps at most one event per entity in flight).
func (r *runner) events(phase string) func(i int) *outbox.Event {
	typ, payload := "bench."+phase, r.payload()
	return func(i int) *outbox.Event {
		return &outbox.Event{
			Type:        typ,
			EntityID:    "entity-" + strconv.Itoa(i),
			UserID:      "user-" + strconv.Itoa(i%100),
			ContentType: outbox.ContentTypeJSON,
			Payload:     payload,
		}
	}
}

// profile starts the CPU profile when phase is the one to profile; the
// returned func stops it.
func (r *runner) profile(phase string) (stop func()) {
	if r.o.CPUProfile == nil || phase != r.o.ProfilePhase {
		return func() {}
	}
	if err := pprof.StartCPUProfile(r.o.CPUProfile); err != nil {
		r.note("no CPU profile of %s: %v", phase, err)
		return func() {}
	}
	r.note("CPU profile: %s, its timed part", phase)
	var once sync.Once
	return func() { once.Do(pprof.StopCPUProfile) }
}

// openStore opens a store in a fresh directory for phase.
func (r *runner) openStore(phase string) (*boltstore.Store, string, error) {
	dir, err := r.phaseDir(phase)
	if err != nil {
		return nil, "", err
	}
	s, err := boltstore.Open(filepath.Join(dir, "outbox.db"), nil)
	if err != nil {
		os.RemoveAll(dir)
		return nil, "", err
	}
	return s, dir, nil
}

// preload enqueues n events in big transactions.
func (r *runner) preload(ctx context.Context, store *boltstore.Store, phase string, n int) error {
	r.prog.step("preload")
	mk := r.events(phase)
	for from := 0; from < n; from += preloadTx {
		if err := ctx.Err(); err != nil {
			return err
		}
		evs := make([]*outbox.Event, min(preloadTx, n-from))
		for i := range evs {
			evs[i] = mk(from + i)
		}
		if err := store.DB().Update(func(tx *bolt.Tx) error {
			_, err := store.EnqueueTx(tx, evs...)
			return err
		}); err != nil {
			return fmt.Errorf("preload: %w", err)
		}
		r.prog.set(float64(from+len(evs)) / float64(n))
	}
	return nil
}

// storeAndStream opens a phase's store, and a publisher on a stream of its
// own; done closes the publisher, deletes the stream and removes the store.
func (r *runner) storeAndStream(ctx context.Context, phase string) (*boltstore.Store, *publisher.Publisher, func(), error) {
	store, dir, err := r.openStore(phase)
	if err != nil {
		return nil, nil, nil, err
	}
	name, prefix := r.stream(phase)
	pub, err := r.publisher(ctx, phase, name, prefix)
	if err != nil {
		store.Close()
		os.RemoveAll(dir)
		return nil, nil, nil, err
	}
	return store, pub, func() {
		pub.Close()
		r.deleteStream(name)
		store.Close()
		os.RemoveAll(dir)
	}, nil
}

// publisher connects the relay's publisher to a fresh stream it manages.
func (r *runner) publisher(ctx context.Context, phase, name, prefix string) (*publisher.Publisher, error) {
	pub, err := publisher.Connect(publisher.Config{
		URL:           r.srv.url,
		Name:          "outbox-bench-" + phase,
		SubjectPrefix: prefix,
		Stream:        publisher.StreamConfig{Manage: true, Name: name, Storage: "file", Replicas: 1},
		MaxPending:    maxInFlight,
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := pub.Ready(ctx); err != nil {
		pub.Close()
		return nil, fmt.Errorf("publisher not ready: %w", err)
	}
	return pub, nil
}

// parallel runs fn in k goroutines and returns the first error; an error
// cancels the ctx the others get.
func parallel(ctx context.Context, k int, fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for range k {
		wg.Go(func() {
			if err := fn(ctx); err != nil {
				cancel(err)
			}
		})
	}
	wg.Wait()
	return context.Cause(ctx)
}
