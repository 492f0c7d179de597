package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"runtime/debug"
	"slices"
	"strings"
	"time"
)

// ErrInvalidOption is wrapped by every error Options.Validate returns.
var ErrInvalidOption = errors.New("bench: invalid option")

// Phases are the figures Run takes, in the order it takes them.
var Phases = []string{
	"js_ceiling", "bbolt_ceiling", "enqueue", "http_ingest",
	"drain", "drain_1m", "sustained", "latency", "latency_loaded", "baseline_fitiq",
}

// Options tune a run. The zero value is the full run on an in-process
// server.
type Options struct {
	// Events is the size of most figures: messages published, records
	// written, events enqueued or ingested, the drain's backlog (default
	// 100,000; 2,000 in quick mode).
	Events int
	// Events1M is the backlog of drain_1m (default 1,000,000; 5,000 in quick
	// mode).
	Events1M int
	// Duration is how long sustained, latency and baseline_fitiq run
	// (default 10s; 1s in quick mode).
	Duration time.Duration
	// Payload is the payload size in bytes of every message and event
	// (default 256).
	Payload int
	// NATSURL is an external JetStream server to measure against; Run starts
	// one when it is empty.
	NATSURL string
	// ServerCommand returns the command that runs ServeChild in a child
	// process storing under storeDir (`relay bench --serve-nats DIR`). When
	// nil, Run starts the server in its own process.
	ServerCommand func(storeDir string) *exec.Cmd
	// Only lists the phases to run (names from Phases); empty means all.
	Only []string
	// Quick picks small default sizes, for tests.
	Quick bool
	// Dir is where the temporary directories go (default os.TempDir()).
	Dir string
	// CPUProfile receives a CPU profile of the timed part of ProfilePhase
	// (default "drain": from the relay's start to the last completion).
	CPUProfile   io.Writer
	ProfilePhase string
}

func (o *Options) setDefaults() {
	events, events1M, duration := 100_000, 1_000_000, 10*time.Second
	if o.Quick {
		events, events1M, duration = 2_000, 5_000, time.Second
	}
	if o.Events == 0 {
		o.Events = events
	}
	if o.Events1M == 0 {
		o.Events1M = events1M
	}
	if o.Duration == 0 {
		o.Duration = duration
	}
	if o.Payload == 0 {
		o.Payload = 256
	}
	if o.ProfilePhase == "" {
		o.ProfilePhase = "drain"
	}
}

// Validate checks the options, naming the bad one.
func (o *Options) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidOption, fmt.Sprintf(format, args...))
	}
	switch {
	case o.Events < 1:
		return bad("events must be at least 1, got %d", o.Events)
	case o.Events1M < 1:
		return bad("events-1m must be at least 1, got %d", o.Events1M)
	case o.Duration < 100*time.Millisecond:
		return bad("duration must be at least 100ms, got %s", o.Duration)
	case o.Payload < 2 || o.Payload > 512<<10:
		return bad("payload must be 2 B..512 KiB, got %d", o.Payload)
	}
	for _, p := range append(slices.Clone(o.Only), o.ProfilePhase) {
		if !slices.Contains(Phases, p) {
			return bad("unknown phase %q (phases: %s)", p, strings.Join(Phases, ", "))
		}
	}
	return nil
}

// Result holds the figures of a run, in events/s (msgs/s for js_ceiling)
// unless said otherwise. A phase that was not run reads 0, and so does a
// ratio with a figure missing. Its JSON form has exactly the keys of the
// issue: the figures, "latency" and "ratios".
type Result struct {
	// JSCeiling is the fastest of the publish modes that keep per-message
	// de-duplication, JSCeilingMode its name; each mode's figure follows.
	JSCeiling     float64 `json:"js_ceiling"`
	JSCeilingMode string  `json:"js_ceiling_mode"`
	JSAsync       float64 `json:"js_async"`        // PublishMsgAsync, the js_ceiling of earlier runs
	JSAtomicBatch float64 `json:"js_atomic_batch"` // atomic batches of 1000 (ADR-50)
	JSFastBatch   float64 `json:"js_fast_batch"`   // one fast-ingest batch (ADR-50)
	BboltCeiling  float64 `json:"bbolt_ceiling"`
	Enqueue       float64 `json:"enqueue"`
	HTTPIngest    float64 `json:"http_ingest"`
	Drain         float64 `json:"drain"`
	Drain1M       float64 `json:"drain_1m"`
	RSSPeakMB     float64 `json:"rss_peak_mb"`     // MB (2^20 bytes) during drain_1m
	RSSAnonMB     float64 `json:"rss_anon_mb"`     // anonymous memory (heap, stacks) peak during drain_1m, MB
	BytesPerEvent float64 `json:"bytes_per_event"` // store file size over events at drain_1m's backlog
	Sustained     float64 `json:"sustained"`
	Latency       Latency `json:"latency"`
	// LatencyLoaded is Latency at half the sustained rate, from producers
	// enqueueing through the commit pipeline.
	LatencyLoaded Latency `json:"latency_loaded"`
	BaselineFitIQ float64 `json:"baseline_fitiq"`
	Ratios        Ratios  `json:"ratios"`

	// Ran lists the phases taken; Notes say how (settings, breakdowns) and
	// are printed under the table.
	Ran   []string `json:"-"`
	Notes []string `json:"-"`
}

// Latency is commit → JetStream ack (completion written), in milliseconds,
// at the pace achieved (events/s).
type Latency struct {
	Achieved float64 `json:"achieved_per_s"`
	P50      float64 `json:"p50_ms"`
	P99      float64 `json:"p99_ms"`
	P999     float64 `json:"p999_ms"`
}

func (l Latency) rounded() Latency {
	return Latency{math.Round(l.Achieved), roundTo(l.P50, 3), roundTo(l.P99, 3), roundTo(l.P999, 3)}
}

// Ratios are the figures against each other that the targets are set on.
type Ratios struct {
	DrainJS        float64 `json:"drain/js_ceiling"`
	DrainBaseline  float64 `json:"drain/baseline_fitiq"`
	EnqueueBbolt   float64 `json:"enqueue/bbolt_ceiling"`
	SustainedJS    float64 `json:"sustained/js_ceiling"`
	Drain1MOverDrn float64 `json:"drain_1m/drain"`
	HTTPIngestJS   float64 `json:"http_ingest/js_ceiling"`
	// Against js_async, the js_ceiling of earlier runs, when js_ceiling was
	// taken in another mode: so that ratios of runs before and after the
	// change compare.
	DrainJSAsync     float64 `json:"drain/js_async,omitempty"`
	SustainedJSAsync float64 `json:"sustained/js_async,omitempty"`
}

// jsMode is the figure of the publish mode named name.
func (r *Result) jsMode(name string) *float64 {
	switch name {
	case "js_async":
		return &r.JSAsync
	case "js_atomic_batch":
		return &r.JSAtomicBatch
	case "js_fast_batch":
		return &r.JSFastBatch
	}
	panic("bench: unknown publish mode " + name)
}

// computeRatios rounds the figures (events/s to integers, the rest to
// microsecond or kilobyte precision) and derives the ratios from the rounded
// figures, so that a reader can check them.
func (r *Result) computeRatios() {
	for _, f := range []*float64{&r.JSCeiling, &r.JSAsync, &r.JSAtomicBatch, &r.JSFastBatch, &r.BboltCeiling, &r.Enqueue, &r.HTTPIngest, &r.Drain, &r.Drain1M, &r.Sustained, &r.BaselineFitIQ} {
		*f = math.Round(*f)
	}
	r.RSSPeakMB, r.RSSAnonMB, r.BytesPerEvent = roundTo(r.RSSPeakMB, 1), roundTo(r.RSSAnonMB, 1), math.Round(r.BytesPerEvent)
	r.Latency, r.LatencyLoaded = r.Latency.rounded(), r.LatencyLoaded.rounded()
	ratio := func(a, b float64) float64 {
		if a == 0 || b == 0 {
			return 0
		}
		return roundTo(a/b, 4)
	}
	r.Ratios = Ratios{
		DrainJS:        ratio(r.Drain, r.JSCeiling),
		DrainBaseline:  ratio(r.Drain, r.BaselineFitIQ),
		EnqueueBbolt:   ratio(r.Enqueue, r.BboltCeiling),
		SustainedJS:    ratio(r.Sustained, r.JSCeiling),
		Drain1MOverDrn: ratio(r.Drain1M, r.Drain),
		HTTPIngestJS:   ratio(r.HTTPIngest, r.JSCeiling),
	}
	if r.JSCeilingMode != "js_async" {
		r.Ratios.DrainJSAsync = ratio(r.Drain, r.JSAsync)
		r.Ratios.SustainedJSAsync = ratio(r.Sustained, r.JSAsync)
	}
}

func roundTo(v float64, decimals int) float64 {
	p := math.Pow(10, float64(decimals))
	return math.Round(v*p) / p
}

// Run takes the figures, one phase after the other, and returns them. It
// writes a progress line to progress (nil for none), updated in place with
// "\r": give it a terminal only. It returns the first error; ctx ending stops
// the run.
func Run(ctx context.Context, opts Options, progress io.Writer) (*Result, error) {
	opts.setDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	phases := Phases
	if len(opts.Only) > 0 {
		phases = slices.DeleteFunc(slices.Clone(Phases), func(p string) bool { return !slices.Contains(opts.Only, p) })
	}
	root, err := os.MkdirTemp(opts.Dir, "outbox-bench-*")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(root)

	r := &runner{o: opts, root: root, id: runID(), res: &Result{}}
	r.prog = newProgress(progress, len(phases))
	defer r.prog.clear()
	srv, err := startServer(ctx, &opts, root)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	r.srv = srv
	gogc := debug.SetGCPercent(100) // read it: there is no getter
	debug.SetGCPercent(gogc)
	r.note("server: %s; payload %d B; relay in-flight limit %d; GOGC %d", srv.desc, opts.Payload, maxInFlight, gogc)
	if err := r.connectAdmin(); err != nil {
		return nil, err
	}
	defer r.nc.Close()

	for i, p := range phases {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		r.prog.phase(i+1, p)
		if err := r.run(ctx, p); err != nil {
			return nil, fmt.Errorf("bench: %s: %w", p, err)
		}
		r.res.Ran = append(r.res.Ran, p)
	}
	r.res.computeRatios()
	return r.res, nil
}

func runID() string {
	b := make([]byte, 4)
	rand.Read(b) //nolint:errcheck // never fails (crypto/rand)
	return hex.EncodeToString(b)
}
