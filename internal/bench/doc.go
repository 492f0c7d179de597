// Package bench measures the outbox against the limits of what it is built
// on, in one run on the machine at hand: the raw JetStream and bbolt
// ceilings, the library's enqueue and HTTP ingest, the relay draining a
// backlog (100k and 1M events, with peak RSS), the relay under sustained
// load, the commit-to-ack latency at a steady rate, and a FitIQ-style poller
// as the baseline. `relay bench` is its command; Run is the whole run.
//
// # Basics
//
// Every figure gets a fresh temporary directory (one bbolt file each) and a
// fresh stream (a unique name, subjects "<unique prefix>.>", file storage,
// one replica), deleted when the figure is taken. The JetStream server is
// started by Run: in a child process when Options.ServerCommand is set (the
// realistic setting: the relay's process holds only the relay), in-process
// otherwise, or not at all with Options.NATSURL. Every figure uses the same
// payload size (Options.Payload, default 256 bytes) and the relay's in-flight
// limit (4096).
//
// Every goroutine a phase starts is waited for before the phase returns:
// where the relay runs beside producers (drain, sustained, the latency
// phases) the two are the actors of a run group (internal/rungroup), and so
// are http_ingest's server and clients; the producers' work returning stops
// the relay, which drains, and the relay failing stops the producers.
//
// js_ceiling takes JetStream's rate in each publish mode it offers (jsModes):
// async publish (js_async, the js_ceiling of earlier runs), atomic batches and
// one fast-ingest batch (ADR-50), and is the fastest of those that keep
// per-message de-duplication by Nats-Msg-Id, the relay's exactly-once. When it
// is not js_async, the ratios against js_async are printed too, so that runs
// from before and after compare.
//
// # Caveats
//
// The figures are only as quiet as the machine: close other work first. The
// ratios between figures of one run are what the targets are set on; the
// absolute figures depend on the CPU and the disk. Peak RSS is the process's
// (the relay's, and the server's only when it runs in-process), and counts the
// pages of the bbolt file that the process has mapped and touched.
package bench
