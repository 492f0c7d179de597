package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/httpapi"
	"github.com/google/uuid"
)

// cmdTestSync enqueues test events through the batch API and, with --wait,
// waits until the relay has published them all, then prints throughput and
// the latency percentiles of created_at → completed_at.
func cmdTestSync(ctx context.Context, args []string, std stdio) error {
	fs := newFlagSet("test-sync", "test-sync --type T --count N [--wait] [--batch B] [--timeout D] [--json]", std)
	cf := addCommonFlags(fs)
	typ := fs.String("type", "", "the events' type (required; allowed by event_types when that is set)")
	count := fs.Int("count", 0, "how many events to enqueue (required)")
	wait := fs.Bool("wait", false, "wait until every event is completed, then print latencies")
	batchSize := fs.Int("batch", 500, "events per batch request")
	timeout := fs.Duration("timeout", 5*time.Minute, "how long --wait waits")
	user := fs.String("user", "", "the events' user_id (default: test-sync-<run id>, which keeps the run's statistics apart)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return flagError(err)
	}
	if len(pos) > 0 {
		return fmt.Errorf("test-sync: unexpected argument %q", pos[0])
	}
	if *typ == "" || *count < 1 || *batchSize < 1 {
		fmt.Fprintln(std.errOut, "relay: test-sync: --type T and --count N (at least 1) are required")
		return exitCode(2)
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	run := uuid.Must(uuid.NewV7()).String()
	if *user == "" {
		*user = "test-sync-" + run
	}
	res := &syncResult{Type: *typ, Count: *count, UserID: *user}
	prog := newProgress(std.errOut)

	start := time.Now()
	for done := 0; done < *count; {
		n := min(*batchSize, *count-done)
		events := make([]map[string]any, n)
		for i := range events {
			payload, _ := json.Marshal(map[string]any{"test_sync": run, "n": done + i})
			events[i] = map[string]any{"type": *typ, "user_id": *user, "payload": json.RawMessage(payload)}
		}
		if err := c.do(ctx, http.MethodPost, "/v1/events/batch", nil, map[string]any{"events": events}, nil); err != nil {
			prog.done()
			return fmt.Errorf("test-sync: after %d enqueued: %w", done, err)
		}
		done += n
		prog.update("enqueued %d/%d…", done, *count)
	}
	enqueued := time.Since(start)
	res.EnqueueSeconds = enqueued.Seconds()
	res.EnqueueRate = float64(*count) / enqueued.Seconds()

	if *wait {
		if err := waitSynced(ctx, c, res, start, *timeout, prog); err != nil {
			prog.done()
			return fmt.Errorf("test-sync: %w", err)
		}
		if err := measureLatency(ctx, c, res, prog); err != nil {
			prog.done()
			return fmt.Errorf("test-sync: %w", err)
		}
	}
	prog.done()
	if cf.json {
		if err := printJSON(std.out, res); err != nil {
			return err
		}
	} else {
		res.print(std.out, *wait)
	}
	if res.Failed > 0 {
		return exitCode(1)
	}
	return nil
}

// syncResult is what test-sync measured; its JSON form is the --json output.
type syncResult struct {
	Type           string   `json:"type"`
	Count          int      `json:"count"`
	UserID         string   `json:"user_id"`
	EnqueueSeconds float64  `json:"enqueue_seconds"`
	EnqueueRate    float64  `json:"enqueue_per_second"`
	Completed      int64    `json:"completed"`
	Failed         int64    `json:"failed"`
	ElapsedSeconds float64  `json:"elapsed_seconds,omitempty"`
	Throughput     float64  `json:"completed_per_second,omitempty"`
	Latency        *latency `json:"latency_seconds,omitempty"`
	Note           string   `json:"note,omitempty"`
}

// latency holds percentiles of created_at → completed_at, in seconds.
type latency struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
	N   int     `json:"n"`
}

// waitSynced polls the run's statistics (O(1) on the relay: the run has a
// user_id of its own) until nothing is pending or processing.
func waitSynced(ctx context.Context, c *client, res *syncResult, start time.Time, timeout time.Duration, prog *progress) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	q := url.Values{"user_id": {res.UserID}}
	for {
		var st httpapi.Stats
		if err := c.do(ctx, http.MethodGet, "/v1/stats", q, nil, &st); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("not all synced after %s: %d completed, %d failed of %d", timeout, res.Completed, res.Failed, res.Count)
			}
			return err
		}
		res.Completed, res.Failed = st.Completed, st.Failed
		if st.Pending == 0 && st.Processing == 0 {
			elapsed := time.Since(start)
			res.ElapsedSeconds = elapsed.Seconds()
			if st.Completed == 0 && st.Failed == 0 && st.Total == 0 {
				// retention.completed: 0 removes events on ack.
				res.Completed = int64(res.Count)
			}
			res.Throughput = float64(res.Completed) / elapsed.Seconds()
			return nil
		}
		prog.update("waiting: %d/%d completed, %d failed…", st.Completed, res.Count, st.Failed)
		select {
		case <-ctx.Done():
			return fmt.Errorf("not all synced after %s: %d completed, %d failed of %d", timeout, st.Completed, st.Failed, res.Count)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// measureLatency reads the run's completed events back and computes the
// percentiles of created_at → completed_at.
func measureLatency(ctx context.Context, c *client, res *syncResult, prog *progress) error {
	q := url.Values{"user_id": {res.UserID}, "status": {string(outbox.StatusCompleted)}, "limit": {"1000"}}
	var ds []float64
	for {
		var page httpapi.Page
		if err := c.do(ctx, http.MethodGet, "/v1/events", q, nil, &page); err != nil {
			return err
		}
		for _, e := range page.Events {
			if !e.CompletedAt.IsZero() {
				ds = append(ds, e.CompletedAt.Sub(e.CreatedAt).Seconds())
			}
		}
		if page.NextCursor == "" {
			break
		}
		prog.update("reading latencies: %d events…", len(ds))
		q.Set("cursor", page.NextCursor)
	}
	if len(ds) == 0 {
		res.Note = "no completed events left to measure (retention.completed: 0 removes them on ack)"
		return nil
	}
	slices.Sort(ds)
	res.Latency = &latency{P50: percentile(ds, 50), P90: percentile(ds, 90), P99: percentile(ds, 99), Max: ds[len(ds)-1], N: len(ds)}
	return nil
}

// percentile is the nearest-rank percentile of sorted values.
func percentile(sorted []float64, p float64) float64 {
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func (r *syncResult) print(w io.Writer, waited bool) {
	fmt.Fprintf(w, "enqueued %d events of type %s in %s (%.0f events/s), user_id %s\n",
		r.Count, r.Type, shortDuration(seconds(r.EnqueueSeconds)), r.EnqueueRate, r.UserID)
	if !waited {
		return
	}
	fmt.Fprintf(w, "completed %d of %d in %s (%.0f events/s end to end)", r.Completed, r.Count, shortDuration(seconds(r.ElapsedSeconds)), r.Throughput)
	if r.Failed > 0 {
		fmt.Fprintf(w, ", %d FAILED (relay events list --status failed --user %s)", r.Failed, r.UserID)
	}
	fmt.Fprintln(w)
	if l := r.Latency; l != nil {
		fmt.Fprintf(w, "latency created → completed over %d events: p50 %s  p90 %s  p99 %s  max %s\n", l.N,
			shortDuration(seconds(l.P50)), shortDuration(seconds(l.P90)), shortDuration(seconds(l.P99)), shortDuration(seconds(l.Max)))
	}
	if r.Note != "" {
		fmt.Fprintln(w, r.Note)
	}
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
