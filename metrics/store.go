package metrics

import (
	"context"
	"strconv"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/prometheus/client_golang/prometheus"
)

// storeCollector reads the store's statistics at scrape time: one O(1) read
// of counters the store keeps incrementally.
type storeCollector struct {
	store   StatsReader
	timeout time.Duration
	now     func() time.Time

	events, stale, pending, oldest, bytes, issues *prometheus.Desc
}

func newStoreCollector(store StatsReader, timeout time.Duration, now func() time.Time) *storeCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("outbox_"+name, help, labels, nil)
	}
	return &storeCollector{
		store: store, timeout: timeout, now: now,
		events:  d("events", "Stored events per status.", "status"),
		stale:   d("events_stale", "Events pending longer than store.stale_after."),
		pending: d("events_pending", "Pending events per priority (0..9, 9 most urgent).", "priority"),
		oldest:  d("oldest_pending_age_seconds", "Age of the oldest pending event; 0 when none is pending."),
		bytes:   d("store_bytes", "Bytes of stored event records."),
		issues:  d("has_issues", "1 when events are failed or stale, 0 otherwise."),
	}
}

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.events, c.stale, c.pending, c.oldest, c.bytes, c.issues} {
		ch <- d
	}
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	st, err := c.store.Stats(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.events, err)
		return
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, s := range []struct {
		status outbox.Status
		n      int64
	}{
		{outbox.StatusPending, st.Pending}, {outbox.StatusProcessing, st.Processing},
		{outbox.StatusCompleted, st.Completed}, {outbox.StatusFailed, st.Failed},
	} {
		gauge(c.events, float64(s.n), string(s.status))
	}
	gauge(c.stale, float64(st.Stale))
	for prio, n := range st.PendingByPriority {
		gauge(c.pending, float64(n), strconv.Itoa(prio))
	}
	age := 0.0
	if st.OldestPendingAt != nil {
		age = max(0, c.now().Sub(*st.OldestPendingAt).Seconds())
	}
	gauge(c.oldest, age)
	gauge(c.bytes, float64(st.Bytes))
	issues := 0.0
	if st.HasIssues {
		issues = 1
	}
	gauge(c.issues, issues)
}
