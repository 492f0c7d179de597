package relay

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/fitiqcore/outbox"
)

// Kind says what happened to one publish.
type Kind int

const (
	Published   Kind = iota // acked by JetStream (Duplicate tells a de-duplicated one)
	Retried                 // attempt failed or its outcome is unknown; retried at Next
	Failed                  // attempt failed for good; the event is failed
	Unavailable             // broker unreachable; no attempt consumed
)

func (k Kind) String() string {
	return [...]string{"published", "retried", "failed", "unavailable"}[k]
}

// Outcome reports one publish to an Observer.
type Outcome struct {
	Kind      Kind
	Event     *outbox.Event
	Attempt   int
	Sent      time.Time // when the publish was sent
	Done      time.Time // when its outcome was committed
	Duplicate bool
	// Unknown: no answer came for this attempt or an earlier one, so the
	// stream may hold the event; it is never failed for its attempts.
	Unknown bool
	// Err is the publish error as the publisher classified it: it wraps
	// outbox.ErrUnavailable, ErrPermanent, ErrUnknownOutcome or ErrRejected.
	Err  error
	Next time.Time // next attempt, for Retried
}

// Observer receives every publish outcome after it is committed (metrics,
// tests). It is called from the completer goroutine and must not block.
type Observer func(Outcome)

// commit records the outcomes of a batch, with the read-back mark, in one
// transaction, then tells the log and the Observer.
func (r *Relay) commit(ctx context.Context, batch []result) error {
	// Classify may probe the broker: not under r.mu.
	classified := make([]error, len(batch))
	for i, res := range batch {
		if res.err != nil {
			classified[i] = r.pub.Classify(ctx, res.err)
		}
	}
	now := r.cfg.Now()
	var acks []outbox.Ack
	var fails []outbox.Failure
	outcomes := make([]Outcome, 0, len(batch))
	r.mu.Lock()
	for i, res := range batch {
		o := r.outcome(res, classified[i], now)
		switch seq := res.e.Seq; {
		case o.Kind == Published:
			acks = append(acks, outbox.Ack{Seq: seq, At: res.at})
		case o.Kind == Failed:
			fails = append(fails, outbox.Failure{Seq: seq, At: res.at, Err: o.Err.Error(), Permanent: true})
		case o.Kind == Retried:
			fails = append(fails, outbox.Failure{Seq: seq, At: res.at, Err: o.Err.Error(), NextAttemptAt: o.Next, Unknown: o.Unknown})
		}
		outcomes = append(outcomes, o)
	}
	mark := r.markLocked(batch)
	r.mu.Unlock()
	if r.tracer != nil { // the outcomes are known: the spans end, whatever Record does
		for i, o := range outcomes {
			endSpan(batch[i].span, o)
		}
	}
	if err := r.store.Record(ctx, acks, fails, mark); err != nil {
		return err
	}
	done := r.cfg.Now()
	for _, o := range outcomes {
		o.Done = done
		r.logOutcome(o)
		if r.cfg.Observer != nil {
			r.cfg.Observer(o)
		}
	}
	return nil
}

// outcome decides what the answer to one publish makes of its event, from
// the publisher's classification of its error (nil for an ack), and keeps
// the relay's account of unknown outcomes and outages. Called under r.mu.
func (r *Relay) outcome(res result, err error, now time.Time) Outcome {
	o := Outcome{Event: res.e, Attempt: res.attempt, Sent: res.at}
	if res.err == nil {
		o.Kind, o.Duplicate = Published, res.duplicate
		delete(r.unknown, res.e.Seq)
		return o
	}
	o.Err = err
	o.Unknown = r.noteUnknown(res.sent, err)
	switch {
	case errors.Is(err, outbox.ErrUnavailable):
		// No attempt consumed, whatever else it says: publish again once
		// the publisher is ready.
		r.paused = true
		o.Kind = Unavailable
	case errors.Is(err, outbox.ErrPermanent):
		o.Kind = Failed
		delete(r.unknown, res.e.Seq)
	case o.Unknown:
		// Never failed for its attempts: the stream may hold it. The
		// re-send lands inside the duplicate window, where JetStream
		// answers it for sure.
		o.Kind, o.Next = Retried, r.nextUnknown(res.sent, now)
	case res.attempt >= res.e.MaxAttempts: // outbox.ErrRejected, or no classification
		o.Kind = Failed
	default:
		o.Kind, o.Next = Retried, now.Add(r.Backoff(res.e, res.attempt))
	}
	return o
}

func (r *Relay) logOutcome(o Outcome) {
	attrs := []any{"event_id", o.Event.ID, "type", o.Event.Type, "attempt", o.Attempt}
	switch {
	case o.Kind == Published:
		if r.log.Enabled(context.Background(), slog.LevelDebug) {
			r.log.Debug("event published", append(attrs, "duplicate", o.Duplicate)...)
		}
	case o.Kind == Retried && o.Unknown:
		r.log.Warn("publish outcome unknown (the stream may hold it); will publish again within the duplicate window",
			append(attrs, "err", o.Err, "next_attempt_at", o.Next)...)
	case o.Kind == Retried:
		r.log.Warn("publish failed, will retry", append(attrs, "err", o.Err, "next_attempt_at", o.Next)...)
	case o.Kind == Failed:
		r.log.Error("publish failed for good; event is failed", append(attrs, "err", o.Err, "max_attempts", o.Event.MaxAttempts)...)
	case o.Kind == Unavailable:
		r.log.Debug("broker unavailable; event stays pending", append(attrs, "err", o.Err)...)
	}
}
