package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
	"github.com/fitiqcore/outbox/httpapi"
	"github.com/fitiqcore/outbox/publisher"
	"github.com/fitiqcore/outbox/relay"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	bolt "go.etcd.io/bbolt"
)

const (
	maxInFlight  = 4096 // relay.Config.MaxInFlight's default: the relay's and js_ceiling's limit
	producers    = 64   // concurrent producers of bbolt_ceiling, enqueue and sustained
	httpClients  = 8
	httpBatch    = 100 // events per POST /v1/events/batch
	preloadTx    = 10_000
	latencyRate  = 1000 // events/s of the latency phase
	recordExtra  = 120  // bbolt_ceiling's record: payload + this, about an event record
	stallTimeout = time.Minute
)

// bbolt_ceiling's group commit, tuned for 64 writers: a batch commits when
// all 64 have joined, or 1ms after the first; bbolt's defaults (1000, 10ms)
// would hold every commit for 10ms.
var (
	bboltBatchSize  = 64
	bboltBatchDelay = time.Millisecond
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

// js_ceiling: JetStream's own rate, each publish mode of jsModes in turn
// into a fresh stream: unique Nats-Msg-Ids, nothing else in the headers, from
// the first publish to the last ack. js_ceiling is the fastest mode that keeps
// per-message de-duplication (jsMode.dedup).
func (r *runner) jsCeiling(ctx context.Context) error {
	nc, err := nats.Connect(r.srv.url, nats.Name("outbox-bench-js-ceiling"))
	if err != nil {
		return err
	}
	defer nc.Close()
	defer r.profile("js_ceiling")()
	for _, mode := range jsModes {
		r.prog.step(mode.name)
		rate, err := r.jsMode(ctx, nc, mode)
		if err != nil {
			return fmt.Errorf("%s: %w", mode.name, err)
		}
		*r.res.jsMode(mode.name) = rate
		verdict := "keeps per-message de-duplication"
		if !mode.dedup {
			verdict = "does not keep per-message de-duplication, no ceiling for the relay"
		}
		r.note("%s: %s msgs/s, %d msgs of %d B, %s; %s: %s", mode.name, formatNum(math.Round(rate)), r.o.Events, r.o.Payload, mode.how, verdict, mode.duplicates)
		if mode.dedup && rate > r.res.JSCeiling {
			r.res.JSCeiling, r.res.JSCeilingMode = rate, mode.name
		}
	}
	r.prog.step("")
	r.note("js_ceiling: %s, the fastest mode that keeps per-message de-duplication (the relay sends about 15 CloudEvents headers besides Nats-Msg-Id)", r.res.JSCeilingMode)
	return nil
}

// jsMode publishes the phase's messages in one mode and returns its rate.
func (r *runner) jsMode(ctx context.Context, nc *nats.Conn, mode jsMode) (float64, error) {
	name, prefix := r.stream(mode.name)
	cfg := streamConfig(name, prefix)
	mode.stream(&cfg)
	if _, err := r.js.CreateStream(ctx, cfg); err != nil {
		return 0, err
	}
	defer r.deleteStream(name)
	n := r.o.Events
	msgs := make([]*nats.Msg, n) // made before the clock starts, as the relay's are
	payload, subject := r.payload(), prefix+".event"
	for i := range msgs {
		msgs[i] = &nats.Msg{Subject: subject, Data: payload, Header: nats.Header{jetstream.MsgIDHeader: {uuid.Must(uuid.NewV7()).String()}}}
	}
	var sent atomic.Int64
	defer r.prog.follow(func() float64 { return float64(sent.Load()) / float64(n) })()
	start := time.Now()
	if err := mode.publish(ctx, nc, msgs, &sent); err != nil {
		return 0, err
	}
	elapsed := time.Since(start)
	if got, err := r.streamMsgs(ctx, name); err != nil || got != uint64(n) {
		return 0, fmt.Errorf("stream holds %d of %d messages (%v)", got, n, err)
	}
	return float64(n) / elapsed.Seconds(), nil
}

// bbolt_ceiling: one Put of a sequence key per db.Batch call, from 64
// goroutines, records of payload+120 bytes.
func (r *runner) bboltCeiling(ctx context.Context) error {
	dir, err := r.phaseDir("bbolt_ceiling")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	db, err := bolt.Open(filepath.Join(dir, "raw.db"), 0o600, &bolt.Options{
		Timeout:         2 * time.Second,
		FreelistType:    bolt.FreelistMapType, // as boltstore opens it
		InitialMmapSize: 64 << 20,
	})
	if err != nil {
		return err
	}
	defer db.Close()
	db.MaxBatchSize, db.MaxBatchDelay = bboltBatchSize, bboltBatchDelay
	bucket := []byte("records")
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket(bucket)
		return err
	}); err != nil {
		return err
	}
	n, size := r.o.Events, r.o.Payload+recordExtra
	record := bytes.Repeat([]byte{'r'}, size)
	var next, done atomic.Int64
	defer r.prog.follow(func() float64 { return float64(done.Load()) / float64(n) })()

	defer r.profile("bbolt_ceiling")()
	start := time.Now()
	err = parallel(ctx, producers, func(ctx context.Context) error {
		for ctx.Err() == nil && next.Add(1) <= int64(n) {
			err := db.Batch(func(tx *bolt.Tx) error {
				b := tx.Bucket(bucket)
				b.FillPercent = 0.9 // as boltstore: keys are appended
				seq, err := b.NextSequence()
				if err != nil {
					return err
				}
				// bbolt keeps the value until the commit: a buffer per write.
				return b.Put(binary.BigEndian.AppendUint64(nil, seq), append(make([]byte, 0, size), record...))
			})
			if err != nil {
				return err
			}
			done.Add(1)
		}
		return ctx.Err()
	})
	if err != nil {
		return err
	}
	r.res.BboltCeiling = float64(n) / time.Since(start).Seconds()
	r.note("bbolt_ceiling: %d writes of %d B from %d goroutines, db.Batch with MaxBatchSize %d, MaxBatchDelay %s, map freelist",
		n, size, producers, bboltBatchSize, bboltBatchDelay)
	return nil
}

// enqueue: Store.Enqueue from 64 producers, one event per call, with the
// store's own group-commit settings.
func (r *runner) enqueue(ctx context.Context) error {
	store, dir, err := r.openStore("enqueue")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	defer store.Close()
	mk, n := r.events("enqueue"), r.o.Events
	var next, done atomic.Int64
	defer r.prog.follow(func() float64 { return float64(done.Load()) / float64(n) })()

	defer r.profile("enqueue")()
	start := time.Now()
	err = parallel(ctx, producers, func(ctx context.Context) error {
		for ctx.Err() == nil {
			i := next.Add(1) - 1
			if i >= int64(n) {
				return nil
			}
			if _, err := store.Enqueue(ctx, mk(int(i))); err != nil {
				return err
			}
			done.Add(1)
		}
		return ctx.Err()
	})
	if err != nil {
		return err
	}
	r.res.Enqueue = float64(n) / time.Since(start).Seconds()
	r.note("enqueue: %d events (own entity each, 100 users) from %d goroutines, Store.Enqueue with the store's defaults (MaxBatchSize 64, MaxBatchDelay 1ms)", n, producers)
	return nil
}

// http_ingest: POST /v1/events/batch, 100 events a request, from 8 clients
// over keep-alive connections to httpapi on a loopback listener.
func (r *runner) httpIngest(ctx context.Context) error {
	store, dir, err := r.openStore("http_ingest")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	defer store.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: httpapi.New(store, httpapi.Options{}), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln) //nolint:errcheck // ErrServerClosed at Shutdown
	defer srv.Shutdown(context.Background())
	url := "http://" + ln.Addr().String() + "/v1/events/batch"

	// The bodies are encoded before the clock starts: the clients stand for
	// other processes.
	type jsonEvent struct {
		Type     string          `json:"type"`
		EntityID string          `json:"entity_id"`
		UserID   string          `json:"user_id"`
		Payload  json.RawMessage `json:"payload"`
	}
	n, mk := r.o.Events, r.events("http_ingest")
	var bodies [][]byte
	for from := 0; from < n; from += httpBatch {
		var b struct {
			Events []jsonEvent `json:"events"`
		}
		for i := from; i < min(from+httpBatch, n); i++ {
			e := mk(i)
			b.Events = append(b.Events, jsonEvent{e.Type, e.EntityID, e.UserID, e.Payload})
		}
		body, err := json.Marshal(b)
		if err != nil {
			return err
		}
		bodies = append(bodies, body)
	}
	tr := &http.Transport{MaxIdleConns: 2 * httpClients, MaxIdleConnsPerHost: 2 * httpClients, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: time.Minute}
	var next, done atomic.Int64
	defer r.prog.follow(func() float64 { return float64(done.Load()) / float64(n) })()

	defer r.profile("http_ingest")()
	start := time.Now()
	err = parallel(ctx, httpClients, func(ctx context.Context) error {
		for ctx.Err() == nil {
			i := next.Add(1) - 1
			if i >= int64(len(bodies)) {
				return nil
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(bodies[i]))
			if err != nil {
				return err
			}
			req.Header.Set("Content-Type", outbox.ContentTypeJSON)
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			var head []byte
			if resp.StatusCode != http.StatusCreated {
				head, _ = io.ReadAll(io.LimitReader(resp.Body, 512))
			}
			io.Copy(io.Discard, resp.Body) //nolint:errcheck // keep the connection
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				return fmt.Errorf("POST %s: %s: %s", url, resp.Status, head)
			}
			done.Add(int64(min(httpBatch, n-int(i)*httpBatch)))
		}
		return ctx.Err()
	})
	if err != nil {
		return err
	}
	r.res.HTTPIngest = float64(n) / time.Since(start).Seconds()
	r.note("http_ingest: %d events in %d requests of %d, %d keep-alive clients, answers (201, events echoed) read in full", n, len(bodies), httpBatch, httpClients)
	return nil
}

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
	stop := runRelay(ctx, rl)
	err = r.await(ctx, n, &t)
	unprofile()
	if rss != nil {
		rss.stop()
	}
	if serr := stop(); err == nil {
		err = serr
	}
	if err != nil {
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

// sustained: 64 producers enqueueing and the relay publishing at once;
// events completed per second of the run.
func (r *runner) sustained(ctx context.Context) error {
	store, dir, err := r.openStore("sustained")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	defer store.Close()
	name, prefix := r.stream("sustained")
	pub, err := r.publisher(ctx, "sustained", name, prefix)
	if err != nil {
		return err
	}
	defer r.deleteStream(name)
	defer pub.Close()

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
	stop := runRelay(ctx, rl)
	mk, d := r.events("sustained"), r.o.Duration
	var next atomic.Int64
	defer r.profile("sustained")()
	mu.Lock()
	from = time.Now()
	to = from.Add(d)
	mu.Unlock()
	defer r.prog.follow(func() float64 { return float64(time.Since(from)) / float64(d) })()
	err = parallel(ctx, producers, func(ctx context.Context) error {
		for ctx.Err() == nil && time.Now().Before(to) {
			if _, err := store.Enqueue(ctx, mk(int(next.Add(1)-1))); err != nil {
				return err
			}
		}
		return ctx.Err()
	})
	if rest := time.Until(to); err == nil && rest > 0 {
		time.Sleep(rest)
	}
	if serr := stop(); err == nil {
		err = serr
	}
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

// runRelay runs rl until the returned stop is called; stop returns Run's
// error.
func runRelay(ctx context.Context, rl *relay.Relay) (stop func() error) {
	ctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- rl.Run(ctx) }()
	var once sync.Once
	var err error
	return func() error {
		once.Do(func() { cancel(); err = <-errc })
		return err
	}
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
