package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// A target is what the issues ask of one figure or ratio on a 2-core machine
// (issue 6 set them, the performance issue raised them).
type target struct {
	name  string
	phase []string // the phases the value needs
	value func(*Result) float64
	unit  string
	min   float64 // value ≥ min, when max is 0
	max   float64 // value ≤ max, when set
}

func (t target) met(r *Result) bool {
	v := t.value(r)
	if t.max > 0 {
		return v <= t.max
	}
	return v >= t.min
}

func (t target) String() string {
	if t.max > 0 {
		return "≤ " + formatNum(t.max)
	}
	return "≥ " + formatNum(t.min)
}

var targets = []target{
	{"http_ingest", []string{"http_ingest"}, func(r *Result) float64 { return r.HTTPIngest }, "events/s", 40_000, 0},
	{"rss_peak_mb", []string{"drain_1m"}, func(r *Result) float64 { return r.RSSPeakMB }, "MB", 0, 150},
	{"rss_anon_mb", []string{"drain_1m"}, func(r *Result) float64 { return r.RSSAnonMB }, "MB", 0, 100},
	{"bytes_per_event", []string{"drain_1m"}, func(r *Result) float64 { return r.BytesPerEvent }, "B", 0, 500},
	{"latency achieved_per_s", []string{"latency"}, func(r *Result) float64 { return r.Latency.Achieved }, "events/s", 990, 0},
	{"latency p99_ms", []string{"latency"}, func(r *Result) float64 { return r.Latency.P99 }, "ms", 0, 2},
	{"latency_loaded p99_ms", []string{"latency_loaded"}, func(r *Result) float64 { return r.LatencyLoaded.P99 }, "ms", 0, 10},
	{"drain/js_ceiling", []string{"drain", "js_ceiling"}, func(r *Result) float64 { return r.Ratios.DrainJS }, "", 0.85, 0},
	{"drain/baseline_fitiq", []string{"drain", "baseline_fitiq"}, func(r *Result) float64 { return r.Ratios.DrainBaseline }, "", 1000, 0},
	{"enqueue/bbolt_ceiling", []string{"enqueue", "bbolt_ceiling"}, func(r *Result) float64 { return r.Ratios.EnqueueBbolt }, "", 0.7, 0},
	{"sustained/js_ceiling", []string{"sustained", "js_ceiling"}, func(r *Result) float64 { return r.Ratios.SustainedJS }, "", 0.5, 0},
	{"drain_1m/drain", []string{"drain_1m", "drain"}, func(r *Result) float64 { return r.Ratios.Drain1MOverDrn }, "", 0.9, 0},
	{"http_ingest/js_ceiling", []string{"http_ingest", "js_ceiling"}, func(r *Result) float64 { return r.Ratios.HTTPIngestJS }, "", 0.5, 0},
}

func (r *Result) ran(phases ...string) bool {
	for _, p := range phases {
		if !slices.Contains(r.Ran, p) {
			return false
		}
	}
	return true
}

// Missed names the targets of the phases run that the figures miss, with
// the value and the target ("drain/js_ceiling 0.61 (≥ 0.85)").
func (r *Result) Missed() []string {
	var out []string
	for _, t := range targets {
		if r.ran(t.phase...) && !t.met(r) {
			out = append(out, fmt.Sprintf("%s %s (%s)", t.name, formatNum(t.value(r)), t))
		}
	}
	return out
}

// WriteTable writes the figures, the ratios and their targets as a table,
// then the notes on how each was taken.
func WriteTable(w io.Writer, r *Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	check := func(name string) (string, string) {
		for _, t := range targets {
			if t.name == name {
				if !r.ran(t.phase...) {
					return t.String(), "-"
				}
				if t.met(r) {
					return t.String(), "yes"
				}
				return t.String(), "NO"
			}
		}
		return "", ""
	}
	row := func(name, phase string, v float64, unit string) {
		value := "-"
		if r.ran(phase) {
			value = formatNum(v)
		}
		tgt, ok := check(name)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", name, value, unit, tgt, ok)
	}
	fmt.Fprintln(tw, "figure\tvalue\tunit\ttarget\tmet")
	row("js_ceiling", "js_ceiling", r.JSCeiling, "msgs/s")
	if r.ran("js_ceiling") {
		fmt.Fprintf(tw, "js_ceiling_mode\t%s\t\t\t\n", r.JSCeilingMode)
	}
	row("js_async", "js_ceiling", r.JSAsync, "msgs/s")
	row("js_atomic_batch", "js_ceiling", r.JSAtomicBatch, "msgs/s")
	row("js_fast_batch", "js_ceiling", r.JSFastBatch, "msgs/s")
	row("bbolt_ceiling", "bbolt_ceiling", r.BboltCeiling, "events/s")
	row("enqueue", "enqueue", r.Enqueue, "events/s")
	row("http_ingest", "http_ingest", r.HTTPIngest, "events/s")
	row("drain", "drain", r.Drain, "events/s")
	row("drain_1m", "drain_1m", r.Drain1M, "events/s")
	row("rss_peak_mb", "drain_1m", r.RSSPeakMB, "MB")
	row("rss_anon_mb", "drain_1m", r.RSSAnonMB, "MB")
	row("bytes_per_event", "drain_1m", r.BytesPerEvent, "B")
	row("sustained", "sustained", r.Sustained, "events/s")
	for _, l := range []struct {
		name string
		v    Latency
	}{{"latency", r.Latency}, {"latency_loaded", r.LatencyLoaded}} {
		row(l.name+" achieved_per_s", l.name, l.v.Achieved, "events/s")
		row(l.name+" p50_ms", l.name, l.v.P50, "ms")
		row(l.name+" p99_ms", l.name, l.v.P99, "ms")
		row(l.name+" p999_ms", l.name, l.v.P999, "ms")
	}
	row("baseline_fitiq", "baseline_fitiq", r.BaselineFitIQ, "events/s")
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "ratio\tvalue\t\ttarget\tmet")
	for _, t := range targets {
		if t.unit == "" {
			value := "-"
			if r.ran(t.phase...) {
				value = formatNum(t.value(r))
			}
			tgt, ok := check(t.name)
			fmt.Fprintf(tw, "%s\t%s\t\t%s\t%s\n", t.name, value, tgt, ok)
		}
	}
	// js_ceiling in another mode than before: the ratios against the old one.
	for _, old := range []struct {
		name  string
		value float64
	}{{"drain/js_async", r.Ratios.DrainJSAsync}, {"sustained/js_async", r.Ratios.SustainedJSAsync}} {
		if old.value != 0 {
			fmt.Fprintf(tw, "%s\t%s\t\t\t\n", old.name, formatNum(old.value))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Notes) > 0 {
		fmt.Fprintln(w, "\nhow:")
		for _, n := range r.Notes {
			fmt.Fprintln(w, "  - "+n)
		}
	}
	return nil
}

// WriteJSON writes the result as one JSON object.
func WriteJSON(w io.Writer, r *Result) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// formatNum writes large figures as integers with thousands separators and
// small ones with up to three or four decimals.
func formatNum(v float64) string {
	if v >= 1000 || v <= -1000 {
		s := strconv.FormatFloat(v, 'f', 0, 64)
		neg := strings.HasPrefix(s, "-")
		s = strings.TrimPrefix(s, "-")
		var b strings.Builder
		for i, c := range s {
			if i > 0 && (len(s)-i)%3 == 0 {
				b.WriteByte(',')
			}
			b.WriteRune(c)
		}
		if neg {
			return "-" + b.String()
		}
		return b.String()
	}
	if v >= 100 && v != math.Trunc(v) {
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// progress writes one line, rewritten in place: "phase 5/9: drain 43%".
// With a nil writer it does nothing.
type progress struct {
	w     io.Writer
	total int

	mu      sync.Mutex
	n       int
	name    string
	stepTxt string
	frac    float64
	written time.Time
	dirty   bool
}

func newProgress(w io.Writer, total int) *progress { return &progress{w: w, total: total} }

func (p *progress) phase(n int, name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n, p.name, p.stepTxt, p.frac = n, name, "", 0
	p.writeLocked(true)
}

// step names a part of the phase ("preload"); "" for the phase itself.
func (p *progress) step(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stepTxt, p.frac = s, 0
	p.writeLocked(true)
}

func (p *progress) set(frac float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.frac = frac
	p.writeLocked(false)
}

// follow sets the fraction from f every 100ms until the returned func is
// called.
func (p *progress) follow(f func() float64) (stop func()) {
	if p.w == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				p.set(f())
			}
		}
	})
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}

func (p *progress) writeLocked(force bool) {
	if p.w == nil || (!force && time.Since(p.written) < 100*time.Millisecond) {
		return
	}
	name := p.name
	if p.stepTxt != "" {
		name += " " + p.stepTxt
	}
	pct := int(min(max(p.frac, 0), 1) * 100)
	fmt.Fprintf(p.w, "\r\033[Kphase %d/%d: %s %d%%", p.n, p.total, name, pct)
	p.written, p.dirty = time.Now(), true
}

// clear erases the line.
func (p *progress) clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.w != nil && p.dirty {
		fmt.Fprint(p.w, "\r\033[K")
		p.dirty = false
	}
}
