package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
	"github.com/fitiqcore/outbox/internal/natstest"
	"github.com/fitiqcore/outbox/internal/poll"
	"github.com/fitiqcore/outbox/metrics"
	"github.com/fitiqcore/outbox/publisher"
	"github.com/fitiqcore/outbox/relay"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func openStore(t *testing.T, opts *boltstore.Options) *boltstore.Store {
	t.Helper()
	store, err := boltstore.Open(filepath.Join(t.TempDir(), "outbox.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}

// scrape returns the exposition text of m.
func scrape(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	res, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		t.Fatalf("scrape: %d %s", res.StatusCode, b)
	}
	return string(b)
}

// TestAfterPublishes runs a real relay over a real store and JetStream
// server: published events show in the counters, the latency histograms,
// the store gauges and the connection gauge.
func TestAfterPublishes(t *testing.T) {
	ns := natstest.Start(t)
	store := openStore(t, nil)
	pub, err := publisher.Connect(publisher.Config{URL: ns.URL(), SubjectPrefix: "m", Stream: publisher.StreamConfig{Manage: true, Name: "METRICS"}})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	m := metrics.New(metrics.Options{Store: store, Connected: pub.Connected})
	r, err := relay.New(store, pub, relay.Config{Observer: m.Observe})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay: %v", err)
		}
	}()

	events := []*outbox.Event{
		{Type: "mood.created", EntityID: "m1", Priority: 3}, {Type: "mood.created", EntityID: "m2"},
		{Type: "journal.created", EntityID: "j1"},
	}
	if _, err := store.Enqueue(ctx, events...); err != nil {
		t.Fatal(err)
	}
	m.Enqueued(events...)
	poll.Until(t, 10*time.Second, "events published", func() bool {
		st, err := store.Stats(ctx)
		return err == nil && st.Completed == 3
	})
	poll.Until(t, 5*time.Second, "outcomes observed", func() bool {
		return strings.Contains(scrape(t, m), `outbox_events_published_total{type="journal.created"} 1`)
	})
	text := scrape(t, m)
	for _, want := range []string{
		`outbox_events_enqueued_total{type="mood.created"} 2`,
		`outbox_events_enqueued_total{type="journal.created"} 1`,
		`outbox_events_published_total{type="mood.created"} 2`,
		`outbox_publish_latency_seconds_count 3`,
		`outbox_enqueue_to_ack_seconds_count 3`,
		`outbox_events{status="completed"} 3`,
		`outbox_events{status="pending"} 0`,
		`outbox_events{status="failed"} 0`,
		`outbox_events_stale 0`,
		`outbox_events_pending{priority="3"} 0`,
		`outbox_oldest_pending_age_seconds 0`,
		`outbox_has_issues 0`,
		`outbox_nats_connected 1`,
		"outbox_store_bytes ",
		"go_goroutines ",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("exposition lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("exposition:\n%s", text)
	}
}

func TestObserveKinds(t *testing.T) {
	now := time.Now()
	ev := &outbox.Event{Type: "a", CreatedAt: now.Add(-3 * time.Second)}
	tests := []struct {
		kind                                    relay.Kind
		published, retried, failed, unavailable float64
		acks                                    uint64
	}{
		{relay.Published, 1, 0, 0, 0, 1},
		{relay.Retried, 0, 1, 0, 0, 0},
		{relay.Failed, 0, 0, 1, 0, 0},
		{relay.Unavailable, 0, 0, 0, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.kind.String(), func(t *testing.T) {
			m := metrics.New(metrics.Options{})
			m.Observe(relay.Outcome{Kind: tt.kind, Event: ev, Attempt: 1, Sent: now.Add(-time.Second), Done: now})
			text := scrape(t, m)
			for name, want := range map[string]float64{
				"outbox_events_published_total": tt.published, "outbox_events_retried_total": tt.retried,
				"outbox_events_failed_total": tt.failed, "outbox_publish_unavailable_total": tt.unavailable,
			} {
				line := fmt.Sprintf(`%s{type="a"} %g`, name, want)
				if want != 0 && !strings.Contains(text, line) {
					t.Errorf("lacks %q", line)
				}
				if want == 0 && strings.Contains(text, name+`{type="a"}`) {
					t.Errorf("%s counted", name)
				}
			}
			if !strings.Contains(text, "outbox_publish_latency_seconds_count 1") || !strings.Contains(text, `outbox_publish_latency_seconds_bucket{le="1.024"} 1`) {
				t.Errorf("publish latency of 1s not observed:\n%s", grep(text, "publish_latency"))
			}
			if want := fmt.Sprintf("outbox_enqueue_to_ack_seconds_count %d", tt.acks); !strings.Contains(text, want) {
				t.Errorf("lacks %q", want)
			}
		})
	}
}

func TestTypeLabelIsBounded(t *testing.T) {
	m := metrics.New(metrics.Options{MaxTypes: 2})
	for _, typ := range []string{"a", "b", "c", "d", "a"} {
		m.Enqueued(&outbox.Event{Type: typ})
	}
	text := scrape(t, m)
	for _, want := range []string{
		`outbox_events_enqueued_total{type="a"} 2`,
		`outbox_events_enqueued_total{type="b"} 1`,
		`outbox_events_enqueued_total{type="_other"} 2`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("lacks %q:\n%s", want, grep(text, "enqueued"))
		}
	}
	if n := len(strings.Split(grep(text, "outbox_events_enqueued_total{"), "\n")); n != 3 {
		t.Errorf("%d enqueued series, want 3", n)
	}
}

func TestStoreGauges(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	store := openStore(t, &boltstore.Options{Now: clock, StaleAfter: time.Minute})
	ctx := context.Background()
	events := []*outbox.Event{{Type: "a", Priority: 9}, {Type: "a", Priority: 9}, {Type: "a", Priority: 2}, {Type: "b", EntityID: "x"}}
	if _, err := store.Enqueue(ctx, events...); err != nil {
		t.Fatal(err)
	}
	if err := store.Fail(ctx, []boltstore.Failure{{Seq: events[3].Seq, At: now, Err: "boom", Permanent: true}}); err != nil {
		t.Fatal(err)
	}
	m := metrics.New(metrics.Options{Store: store, Now: func() time.Time { return now.Add(90 * time.Second) }, Connected: func() bool { return false }})
	text := scrape(t, m)
	for _, want := range []string{
		`outbox_events{status="pending"} 3`,
		`outbox_events{status="failed"} 1`,
		`outbox_events_pending{priority="9"} 2`,
		`outbox_events_pending{priority="2"} 1`,
		`outbox_events_pending{priority="0"} 0`,
		`outbox_oldest_pending_age_seconds 90`,
		`outbox_has_issues 1`,
		`outbox_nats_connected 0`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("%s", grep(text, "outbox_"))
	}
}

// failingStats is a store whose Stats fails.
type failingStats struct{}

func (failingStats) Stats(context.Context) (boltstore.Stats, error) {
	return boltstore.Stats{}, errors.New("store closed")
}

func TestStoreFailureKeepsOtherMetrics(t *testing.T) {
	m := metrics.New(metrics.Options{Store: failingStats{}})
	m.Enqueued(&outbox.Event{Type: "a"})
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	res, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if !strings.Contains(string(b), `outbox_events_enqueued_total{type="a"} 1`) {
		t.Errorf("status %d; counters not served when the store fails:\n%s", res.StatusCode, b)
	}
}

func grep(text, substr string) string {
	var out []string
	for line := range strings.SplitSeq(text, "\n") {
		if strings.Contains(line, substr) && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
