package metrics

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
	"github.com/fitiqcore/outbox/relay"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// StatsReader is what the metrics need of the store: its statistics, read
// at every scrape. *boltstore.Store implements it; it must be cheap and safe
// for concurrent use.
type StatsReader interface {
	Stats(ctx context.Context) (boltstore.Stats, error)
}

var _ StatsReader = (*boltstore.Store)(nil)

// Options configure New. The zero value works: no store gauges, no NATS
// gauge.
type Options struct {
	// Store, when set, provides the store gauges at scrape time.
	Store StatsReader
	// Connected, when set, reports the NATS connection for
	// outbox_nats_connected.
	Connected func() bool
	// MaxTypes bounds the distinct values of the type label (default 256);
	// later types are counted as "_other".
	MaxTypes int
	// ScrapeTimeout bounds the Stats call of one scrape (default 5s).
	ScrapeTimeout time.Duration
	// Now is the clock for ages (default time.Now).
	Now func() time.Time
}

// OtherType is the type label of types past Options.MaxTypes.
const OtherType = "_other"

// Metrics holds the outbox's collectors in a registry of its own. Its
// methods are safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	enqueued, published, retried, failed, unavailable *prometheus.CounterVec

	publishLatency, ackLatency prometheus.Histogram

	maxTypes int
	mu       sync.Mutex
	types    map[string]struct{}
}

// New returns the metrics, registered in a new registry.
func New(opts Options) *Metrics {
	if opts.MaxTypes <= 0 {
		opts.MaxTypes = 256
	}
	if opts.ScrapeTimeout <= 0 {
		opts.ScrapeTimeout = 5 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "outbox", Name: name, Help: help}, []string{"type"})
	}
	m := &Metrics{
		reg:         prometheus.NewRegistry(),
		enqueued:    counter("events_enqueued_total", "Events stored by ingest, by type."),
		published:   counter("events_published_total", "Events acked by JetStream (duplicates included), by type."),
		retried:     counter("events_retried_total", "Failed publish attempts that will be retried, by type."),
		failed:      counter("events_failed_total", "Events that became failed for good, by type."),
		unavailable: counter("publish_unavailable_total", "Publishes whose outcome was unknown because the broker was unavailable (no attempt consumed), by type."),
		publishLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "outbox", Name: "publish_latency_seconds",
			Help:    "Time from a publish being sent to its outcome being committed.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16), // 0.5ms … 16s
		}),
		ackLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "outbox", Name: "enqueue_to_ack_seconds",
			Help:    "Time from an event's creation to its ack being committed.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 12), // 1ms … 70min
		}),
		maxTypes: opts.MaxTypes,
		types:    make(map[string]struct{}),
	}
	m.reg.MustRegister(m.enqueued, m.published, m.retried, m.failed, m.unavailable, m.publishLatency, m.ackLatency,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if opts.Store != nil {
		m.reg.MustRegister(newStoreCollector(opts.Store, opts.ScrapeTimeout, opts.Now))
	}
	if opts.Connected != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "outbox", Name: "nats_connected",
			Help: "1 while the relay's NATS connection is up, 0 otherwise.",
		}, func() float64 {
			if opts.Connected() {
				return 1
			}
			return 0
		}))
	}
	return m
}

// Handler serves the registry in the Prometheus exposition format. A failing
// collector (the store closed) is reported in the log of the scrape and the
// other metrics are still served.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Enqueued counts events newly stored by ingest (httpapi.Options.Enqueued).
func (m *Metrics) Enqueued(events ...*outbox.Event) {
	for _, e := range events {
		m.enqueued.WithLabelValues(m.typeLabel(e.Type)).Inc()
	}
}

// Observe counts one publish outcome; it is a relay.Observer
// (relay.Config.Observer = m.Observe). It never blocks.
func (m *Metrics) Observe(o relay.Outcome) {
	typ := m.typeLabel(o.Event.Type)
	if !o.Sent.IsZero() && !o.Done.IsZero() {
		m.publishLatency.Observe(o.Done.Sub(o.Sent).Seconds())
	}
	switch o.Kind {
	case relay.Published:
		m.published.WithLabelValues(typ).Inc()
		if !o.Event.CreatedAt.IsZero() && !o.Done.IsZero() {
			m.ackLatency.Observe(max(0, o.Done.Sub(o.Event.CreatedAt).Seconds()))
		}
	case relay.Retried:
		m.retried.WithLabelValues(typ).Inc()
	case relay.Failed:
		m.failed.WithLabelValues(typ).Inc()
	case relay.Unavailable:
		m.unavailable.WithLabelValues(typ).Inc()
	}
}

// typeLabel bounds the type label's values.
func (m *Metrics) typeLabel(t string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.types[t]; ok {
		return t
	}
	if len(m.types) >= m.maxTypes {
		return OtherType
	}
	m.types[t] = struct{}{}
	return t
}
