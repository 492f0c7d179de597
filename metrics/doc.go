// Package metrics exposes the outbox's Prometheus metrics: what the relay
// publishes (from relay.Outcome), what ingest stores, the store's state and
// the NATS connection. A Metrics has its own prometheus.Registry (no global
// state), served by Handler.
//
// # Metrics
//
//	outbox_events_enqueued_total{type}          events stored by ingest (counter)
//	outbox_events_published_total{type}         events acked by JetStream, duplicates included (counter)
//	outbox_events_retried_total{type}           failed attempts that will be retried (counter)
//	outbox_events_failed_total{type}            events that became failed for good (counter)
//	outbox_publish_unavailable_total{type}      publishes whose outcome was unknown because the broker was unavailable; no attempt consumed (counter)
//	outbox_publish_latency_seconds              publish sent → outcome committed (histogram)
//	outbox_enqueue_to_ack_seconds               event created → ack committed (histogram)
//	outbox_events{status}                       stored events per status: pending, processing, completed, failed (gauge)
//	outbox_events_stale                         events pending longer than store.stale_after (gauge)
//	outbox_events_pending{priority}             pending events per priority 0..9 (gauge)
//	outbox_oldest_pending_age_seconds           age of the oldest pending event, 0 when none (gauge)
//	outbox_store_bytes                          bytes of stored event records (gauge)
//	outbox_has_issues                           1 when events are failed or stale (gauge)
//	outbox_nats_connected                       1 while the NATS connection is up, 0 otherwise (gauge)
//
// plus the Go runtime's and the process's standard collectors.
//
// The store gauges are read from Stats at scrape time: the store keeps its
// counters incrementally, so a scrape costs O(1) whatever the store holds.
//
// # Caveats
//
// The type label takes the event's type. Without an event type allowlist,
// types are free strings: past Options.MaxTypes distinct types, further
// ones are counted under type="_other" to bound the series.
package metrics
