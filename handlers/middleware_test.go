package handlers_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fitiqcore/outbox/internal/poll"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/handlers"
)

// syncBuffer is a bytes.Buffer safe for the workers' concurrent logging.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestLoggingAndMetricsMiddleware(t *testing.T) {
	v := newEnv(t, false)
	reg := prometheus.NewRegistry()
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var c calls
	r := v.router("mw")
	r.Use(handlers.Logging(logger), handlers.Metrics(reg), handlers.Metrics(reg)) // twice: the registered collectors are reused
	r.HandleFunc("mood.logged", func(ctx context.Context, e *outbox.Event) error {
		if d, ok := handlers.DeliveryFromContext(ctx); !ok || d.StreamSeq != 1 || d.MaxAttempts != 5 || d.Consumer != "mw" {
			t.Errorf("delivery in ctx: %+v %v", d, ok)
		}
		if c.add(e) == 1 {
			return errBoom
		}
		return nil
	})
	v.start(r, "mw")
	e := event(t, "mood.logged", "user-1", 1)
	e.Retry = &outbox.RetryPolicy{InitialInterval: 20 * time.Millisecond, MaxInterval: time.Second, Multiplier: 2}
	v.publish(e)
	v.settled("mw", 5*time.Second)
	poll.Until(t, 5*time.Second, "two calls", func() bool { return c.n() == 2 })

	counts := map[string]float64{}
	var observed uint64
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			switch mf.GetName() {
			case "outbox_handler_events_total":
				counts[labels["type"]+"/"+labels["outcome"]] += m.GetCounter().GetValue()
			case "outbox_handler_duration_seconds":
				observed += m.GetHistogram().GetSampleCount()
			}
		}
	}
	// Metrics is in the chain twice: every event is counted twice.
	if counts["mood.logged/retry"] != 2 || counts["mood.logged/ack"] != 2 || observed != 4 {
		t.Errorf("counts %v, %d observations", counts, observed)
	}
	out := logs.String()
	for _, want := range []string{"handler failed", "outcome=retry", "event handled", "outcome=ack", "id=" + e.ID} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}
