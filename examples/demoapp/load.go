package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/google/uuid"
)

// writer hands one batch of events to the outbox. Write returns nil once the
// batch is accepted (stored durably, with entity_seq filled in), or
// errAbandoned when it gave the batch up without storing it; it retries
// everything else itself. paused tells it that the load is being paused, so
// that it may give up a batch that was refused (nothing stored).
type writer interface {
	Write(ctx context.Context, events []*outbox.Event, paused func() bool) error
	// Accepted lists every accepted event.
	Accepted(ctx context.Context) ([]accepted, error)
	// Stats adds the writer's own counters.
	Stats() map[string]any
}

// accepted is one accepted event, as the suite reads it.
type accepted struct {
	ID        string `json:"id"`
	EntityID  string `json:"entity_id"`
	EntitySeq uint64 `json:"entity_seq"`
	Seq       uint64 `json:"seq"`
	At        int64  `json:"at"` // unix milliseconds when it was accepted
}

// errAbandoned: the batch was refused and the load is paused; nothing of it
// was stored.
var errAbandoned = fmt.Errorf("batch abandoned")

// generator produces the steady load: batches of events spread over a fixed
// set of entities, at a rate that can be changed, paused and resumed.
type generator struct {
	cfg *config
	w   writer
	log *slog.Logger

	rate atomic.Uint64 // math.Float64bits of events per second

	mu        sync.Mutex
	paused    bool
	busy      bool          // a batch is in hand (being written or retried)
	changed   chan struct{} // closed on pause, resume or rate change
	batches   int64
	abandoned int64
	lastErr   string
	n         uint64 // events generated, for the payload
}

func newGenerator(cfg *config, w writer, log *slog.Logger) *generator {
	g := &generator{cfg: cfg, w: w, log: log, changed: make(chan struct{})}
	g.SetRate(cfg.rate)
	g.paused = cfg.paused
	return g
}

func (g *generator) Rate() float64 { return math.Float64frombits(g.rate.Load()) }

func (g *generator) SetRate(eps float64) {
	g.rate.Store(math.Float64bits(eps))
	g.kick()
}

// SetPaused pauses or resumes the load. A batch in hand is finished (or
// abandoned, if it is refused); Idle tells when there is none.
func (g *generator) SetPaused(p bool) {
	g.mu.Lock()
	g.paused = p
	g.mu.Unlock()
	g.kick()
}

// Paused reports whether the load is paused.
func (g *generator) Paused() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.paused
}

// claim marks a batch in hand, unless the load is paused. Checking and
// marking under one lock means that once Idle is true no batch can start.
func (g *generator) claim() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.paused {
		return false
	}
	g.busy = true
	return true
}

func (g *generator) kick() {
	g.mu.Lock()
	close(g.changed)
	g.changed = make(chan struct{})
	g.mu.Unlock()
}

func (g *generator) changedC() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.changed
}

// Idle reports whether the load is paused with no batch in hand: every
// event generated so far is accepted or abandoned.
func (g *generator) Idle() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.paused && !g.busy
}

// Run generates load until ctx ends.
func (g *generator) Run(ctx context.Context) error {
	next := time.Now()
	for ctx.Err() == nil {
		changed := g.changedC()
		if g.Paused() {
			select {
			case <-ctx.Done():
			case <-changed:
			}
			next = time.Now()
			continue
		}
		if d := time.Until(next); d > 0 {
			select {
			case <-ctx.Done():
				continue
			case <-changed: // a new rate or a pause applies at once
				next = time.Now()
				continue
			case <-time.After(d):
			}
		}
		if !g.claim() {
			continue
		}
		events := g.batch()
		err := g.w.Write(ctx, events, g.Paused)
		g.mu.Lock()
		g.busy = false
		switch {
		case err == nil:
			g.batches++
		case err == errAbandoned:
			g.abandoned += int64(len(events))
		default:
			g.lastErr = err.Error()
		}
		g.mu.Unlock()
		next = next.Add(time.Duration(float64(len(events)) / g.Rate() * float64(time.Second)))
		if behind := time.Since(next); behind > time.Second {
			next = time.Now() // after a stall, do not burst to catch up
		}
	}
	return ctx.Err()
}

// batch builds the next batch: new ids (UUIDv7), random entities.
func (g *generator) batch() []*outbox.Event {
	events := make([]*outbox.Event, g.cfg.batch)
	for i := range events {
		g.n++
		k := rand.IntN(g.cfg.entities)
		payload, _ := json.Marshal(map[string]any{"n": g.n, "note": "demo event"})
		events[i] = &outbox.Event{
			ID:          uuid.Must(uuid.NewV7()).String(),
			Type:        g.cfg.eventType,
			EntityID:    fmt.Sprintf("%s-e%02d", g.cfg.prefix, k),
			UserID:      fmt.Sprintf("%s-u%d", g.cfg.prefix, k%4),
			ContentType: outbox.ContentTypeJSON,
			Payload:     payload,
		}
	}
	return events
}

// Stats are the generator's counters with the writer's.
func (g *generator) Stats() map[string]any {
	st := g.w.Stats()
	g.mu.Lock()
	st["batches"] = g.batches
	st["abandoned"] = g.abandoned
	st["last_write_error"] = g.lastErr
	st["paused"] = g.paused
	st["busy"] = g.busy
	st["idle"] = g.paused && !g.busy
	g.mu.Unlock()
	st["mode"] = g.cfg.mode
	st["rate"] = g.Rate()
	return st
}
