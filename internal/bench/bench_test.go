package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fitiqcore/outbox/internal/bench"
	"go.uber.org/goleak"
)

// childEnv makes the test binary the child JetStream server (see
// Options.ServerCommand): it names the store directory.
const childEnv = "OUTBOX_BENCH_TEST_NATS_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		if err := bench.ServeChild(context.Background(), dir, os.Stdin, os.Stdout); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// childServer runs the server in a child process, as `relay bench` does.
func childServer(storeDir string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+storeDir)
	return cmd
}

// TestRunQuick takes every figure at quick sizes and checks the result's
// shape: every figure positive, the JSON keys exactly those of issue 6, the
// ratios derived from the figures.
func TestRunQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about 10s")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := bench.Run(ctx, bench.Options{Quick: true, ServerCommand: childServer, Dir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Ran, bench.Phases) {
		t.Errorf("ran %v, want %v", res.Ran, bench.Phases)
	}
	for name, v := range map[string]float64{
		"js_ceiling": res.JSCeiling, "js_async": res.JSAsync, "js_atomic_batch": res.JSAtomicBatch, "js_fast_batch": res.JSFastBatch,
		"bbolt_ceiling": res.BboltCeiling, "enqueue": res.Enqueue,
		"http_ingest": res.HTTPIngest, "drain": res.Drain, "drain_1m": res.Drain1M, "rss_peak_mb": res.RSSPeakMB,
		"sustained": res.Sustained, "latency.p50_ms": res.Latency.P50, "latency.p99_ms": res.Latency.P99,
		"latency.p999_ms": res.Latency.P999, "latency.achieved_per_s": res.Latency.Achieved,
		"latency_loaded.p50_ms": res.LatencyLoaded.P50, "latency_loaded.p99_ms": res.LatencyLoaded.P99,
		"latency_loaded.achieved_per_s": res.LatencyLoaded.Achieved, "baseline_fitiq": res.BaselineFitIQ,
		"rss_anon_mb": res.RSSAnonMB, "bytes_per_event": res.BytesPerEvent,
	} {
		if !(v > 0) {
			t.Errorf("%s = %v, want > 0", name, v)
		}
	}
	for _, l := range []bench.Latency{res.Latency, res.LatencyLoaded} {
		if !(l.P50 <= l.P99 && l.P99 <= l.P999) {
			t.Errorf("latency percentiles out of order: %+v", l)
		}
	}

	var buf bytes.Buffer
	if err := bench.WriteJSON(&buf, res); err != nil {
		t.Fatal(err)
	}
	var obj map[string]any
	if err := json.Unmarshal(buf.Bytes(), &obj); err != nil {
		t.Fatalf("%v in %s", err, buf.Bytes())
	}
	// js_ceiling is the fastest mode that keeps per-message de-duplication.
	if want := max(res.JSAsync, res.JSFastBatch); res.JSCeiling != want || (res.JSCeilingMode == "js_async") != (want == res.JSAsync) {
		t.Errorf("js_ceiling %v in mode %s, want %v: the faster of js_async %v and js_fast_batch %v",
			res.JSCeiling, res.JSCeilingMode, want, res.JSAsync, res.JSFastBatch)
	}
	wantKeys := []string{"baseline_fitiq", "bbolt_ceiling", "bytes_per_event", "drain", "drain_1m", "enqueue", "http_ingest",
		"js_async", "js_atomic_batch", "js_ceiling", "js_ceiling_mode", "js_fast_batch", "latency", "latency_loaded", "ratios",
		"rss_anon_mb", "rss_peak_mb", "sustained"}
	if got := sortedKeys(obj); !slices.Equal(got, wantKeys) {
		t.Errorf("JSON keys %v, want %v", got, wantKeys)
	}
	for _, k := range []string{"latency", "latency_loaded"} {
		lat, _ := obj[k].(map[string]any)
		if got, want := sortedKeys(lat), []string{"achieved_per_s", "p50_ms", "p999_ms", "p99_ms"}; !slices.Equal(got, want) {
			t.Errorf("%s keys %v, want %v", k, got, want)
		}
	}
	ratios, _ := obj["ratios"].(map[string]any)
	num := func(k string) float64 { f, _ := obj[k].(float64); return f }
	wantRatios := map[string]float64{
		"drain/js_ceiling":       num("drain") / num("js_ceiling"),
		"drain/baseline_fitiq":   num("drain") / num("baseline_fitiq"),
		"enqueue/bbolt_ceiling":  num("enqueue") / num("bbolt_ceiling"),
		"sustained/js_ceiling":   num("sustained") / num("js_ceiling"),
		"drain_1m/drain":         num("drain_1m") / num("drain"),
		"http_ingest/js_ceiling": num("http_ingest") / num("js_ceiling"),
	}
	if obj["js_ceiling_mode"] != "js_async" { // the ratios against the old js_ceiling too
		wantRatios["drain/js_async"] = num("drain") / num("js_async")
		wantRatios["sustained/js_async"] = num("sustained") / num("js_async")
	}
	if got := sortedKeys(ratios); !slices.Equal(got, sortedKeys(wantRatios)) {
		t.Errorf("ratio keys %v, want %v", got, sortedKeys(wantRatios))
	}
	for k, want := range wantRatios {
		got, ok := ratios[k].(float64)
		if !ok || math.Abs(got-want) > 0.00005+1e-9*want {
			t.Errorf("ratio %s = %v, want %v (from the figures)", k, ratios[k], want)
		}
	}

	buf.Reset()
	if err := bench.WriteTable(&buf, res); err != nil {
		t.Fatal(err)
	}
	for _, k := range append(wantKeys[:len(wantKeys)-1], sortedKeys(wantRatios)...) {
		if k != "ratios" && !strings.Contains(buf.String(), k) {
			t.Errorf("table lacks %s:\n%s", k, buf.String())
		}
	}
	t.Logf("\n%s", buf.String())
}

// TestRunOnlyInProcess runs one phase on an in-process server and checks the
// progress line and that the phases not run read 0.
func TestRunOnlyInProcess(t *testing.T) {
	var progress bytes.Buffer
	res, err := bench.Run(context.Background(), bench.Options{Quick: true, Only: []string{"js_ceiling"}, Dir: t.TempDir()}, &progress)
	if err != nil {
		t.Fatal(err)
	}
	if res.JSCeiling <= 0 || res.Drain != 0 || res.Ratios.DrainJS != 0 {
		t.Errorf("js_ceiling %v, drain %v, drain/js_ceiling %v; want >0, 0, 0", res.JSCeiling, res.Drain, res.Ratios.DrainJS)
	}
	if !strings.Contains(progress.String(), "\r\033[Kphase 1/1: js_ceiling") {
		t.Errorf("progress %q lacks the phase line", progress.String())
	}
	if !strings.HasSuffix(progress.String(), "\r\033[K") {
		t.Errorf("progress %q does not end by erasing its line", progress.String())
	}
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		opts bench.Options
	}{
		{"unknown phase", bench.Options{Only: []string{"drain", "nope"}}},
		{"unknown profile phase", bench.Options{ProfilePhase: "nope"}},
		{"negative events", bench.Options{Events: -1}},
		{"short duration", bench.Options{Duration: time.Millisecond}},
		{"payload too small", bench.Options{Payload: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := bench.Run(context.Background(), tt.opts, nil)
			if !errors.Is(err, bench.ErrInvalidOption) {
				t.Errorf("Run: %v, want ErrInvalidOption", err)
			}
		})
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
