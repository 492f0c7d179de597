package relay

import (
	"errors"
	"time"

	"github.com/fitiqcore/outbox"
)

// The read-back mark
//
// A publish whose outcome is unknown (no answer came: a timeout, a lost
// connection, a crash) may be in the stream. The relay keeps, for each such
// publish and each one in flight, low: a lower bound of the stream's last
// sequence that it had seen before sending, so that the message is stored,
// if at all, at low+1 or later. The mark recorded with every batch is the
// least such low+1 (or the current low+1 when nothing is unknown): a
// restarted relay reads the stream back from it and completes what the
// stream holds instead of publishing it again. A stream sequence, unlike the
// send time it replaced, does not depend on the clocks of this host and the
// servers agreeing.

// unknownSend is the first publish of an event whose outcome is unknown.
type unknownSend struct {
	id  string
	low uint64
	at  time.Time
}

// The sweep drops unknown outcomes whose event is no longer pending (an
// operator deleted, completed or failed it): checked every sweepEvery for
// entries older than sweepAge, so that such an entry does not pin the mark
// forever.
const (
	sweepEvery = 5 * time.Second
	sweepAge   = 5 * time.Second
)

// raise lifts low to n when n is higher.
func (r *Relay) raise(n uint64) {
	for {
		cur := r.low.Load()
		if n <= cur || r.low.CompareAndSwap(cur, n) {
			return
		}
	}
}

// noteUnknown records s as a publish of unknown outcome when classified says
// so, and reports whether the stream may hold its event: this attempt got no
// answer, or an earlier one did not. Called under r.mu.
func (r *Relay) noteUnknown(s sent, classified error) bool {
	if _, earlier := r.unknown[s.e.Seq]; earlier {
		return true
	}
	// A publish that PublishAsync refused never reached the broker.
	if s.unsent || !errors.Is(classified, outbox.ErrUnknownOutcome) {
		return false
	}
	r.unknown[s.e.Seq] = unknownSend{id: s.e.ID, low: s.low, at: s.at}
	return true
}

// nextUnknown is when to publish again an event whose attempt s has an
// unknown outcome: after the usual backoff, but no later than half the
// duplicate window after the send, so that JetStream still knows the id and
// answers the re-send with a duplicate ack when it stored the first.
func (r *Relay) nextUnknown(s sent, now time.Time) time.Time {
	next := now.Add(r.Backoff(s.e, s.attempt))
	if by := s.at.Add(r.cfg.DuplicateWindow / 2); next.After(by) {
		next = by
	}
	if next.Before(now) {
		next = now
	}
	return next
}

// markLocked is the read-back mark: the least low+1 of the publishes in
// flight (except those of batch, whose outcomes are being recorded) and of
// those of unknown outcome, or the current low+1. Called under r.mu.
func (r *Relay) markLocked(batch []result) uint64 {
	m := r.low.Load() + 1
	var skip map[uint64]bool
	if len(batch) > 0 {
		skip = make(map[uint64]bool, len(batch))
		for _, res := range batch {
			skip[res.e.Seq] = true
		}
	}
	for seq, low := range r.inflight {
		if low+1 < m && !skip[seq] {
			m = low + 1
		}
	}
	for _, u := range r.unknown {
		if u.low+1 < m {
			m = u.low + 1
		}
	}
	return m
}

// staleFrom returns where to read the stream back from before publishing
// events again (0: no need): when one of them has an unknown outcome sent so
// long ago that JetStream may have forgotten its id by the time the re-send
// lands (past three quarters of the duplicate window), only the stream can
// tell whether it holds it. Called under r.mu.
func (r *Relay) staleFrom(events []*outbox.Event, now time.Time) uint64 {
	if r.cfg.DisableReconcile || len(r.unknown) == 0 {
		return 0
	}
	var from uint64
	for _, e := range events {
		u, ok := r.unknown[e.Seq]
		if !ok || now.Sub(u.at) < r.cfg.DuplicateWindow*3/4 {
			continue
		}
		if from == 0 || u.low+1 < from {
			from = u.low + 1
		}
	}
	return from
}
