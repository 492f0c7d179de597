package publisher

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Classify says what a publish error means for the caller (see the package
// doc): it returns err wrapped in exactly one of outbox.ErrUnavailable,
// outbox.ErrPermanent, outbox.ErrUnknownOutcome and outbox.ErrRejected, except
// that outbox.ErrUnknownOutcome may come together with outbox.ErrUnavailable.
// An error that wraps one of them already is returned as it is; nil is nil.
// A "no response from stream" is probed: when JetStream or the stream does
// not answer either, the broker is unavailable; when the stream answers, no
// stream covers the subject and the publish is rejected.
//
// ErrUnknownOutcome is for errors that are no answer to the publish, after
// which the message may have reached the stream: a timeout, a connection lost
// with the ack pending, an unreadable ack. Errors that mean the message was
// never sent (back-pressure, a closed or reconnecting connection refusing the
// publish, a payload over max_payload) and the server's answers (a JetStream
// API error, no responders) say the stream does not hold it. An error the
// publisher does not know is rejected: a failed attempt, as it always was.
//
// A rejected error reads as the error itself ("nats: no response from
// stream"): it is what the publish got back, and the relay records it as the
// event's last_error. Safe for concurrent use.
func (p *Publisher) Classify(ctx context.Context, err error) error {
	if err == nil || classified(err) {
		return err
	}
	unavailable := func(err error) error { p.markUnready(); return fmt.Errorf("%w: %w", outbox.ErrUnavailable, err) }
	unknown := func(err error) error { return fmt.Errorf("%w: %w", outbox.ErrUnknownOutcome, err) }
	permanent := func(err error) error { return fmt.Errorf("%w: %w", outbox.ErrPermanent, err) }
	switch {
	case errors.Is(err, nats.ErrDisconnected), errors.Is(err, nats.ErrConnectionClosed):
		// A pending future fails so on a disconnect even for a message the
		// server stored.
		return unavailable(unknown(err))
	case errors.Is(err, nats.ErrConnectionReconnecting), errors.Is(err, nats.ErrConnectionDraining),
		errors.Is(err, nats.ErrReconnectBufExceeded), errors.Is(err, jetstream.ErrTooManyStalledMsgs),
		errors.Is(err, nats.ErrNoServers), errors.Is(err, nats.ErrInvalidConnection):
		return unavailable(err)
	case errors.Is(err, nats.ErrMaxPayload):
		return permanent(err)
	case errors.Is(err, jetstream.ErrAsyncPublishTimeout), errors.Is(err, nats.ErrTimeout),
		errors.Is(err, context.DeadlineExceeded):
		// A cut network leaves the connection "connected" until pings fail:
		// a timeout counts as an attempt only when the server answers a ping.
		if !p.nc.IsConnected() || p.pingProbe() != nil {
			return unavailable(unknown(err))
		}
		return unknown(err)
	case errors.Is(err, jetstream.ErrInvalidJSAck), errors.Is(err, context.Canceled):
		// An ack that cannot be read, a wait given up: sent all the same.
		return unknown(err)
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders):
		if !p.nc.IsConnected() || p.probe(ctx) != nil {
			return unavailable(err)
		}
		return rejected{err}
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case 10054, 10097, 10060, 10109: // too large, wrong stream, sealed
			return permanent(err)
		case 10008, 10158, 10163, 10023, 10077, 10076, 10039: // unavailable, in process, insufficient resources, store failed, JetStream off
			if apiErr.ErrorCode == 10023 || apiErr.ErrorCode == 10077 {
				p.log.Error("jetstream cannot store: check the server's disk and limits", "err", err)
			}
			return unavailable(err)
		}
		if apiErr.Code == 503 {
			return unavailable(err)
		}
	}
	return rejected{err}
}

// classified reports whether err wraps a classification already.
func classified(err error) bool {
	return errors.Is(err, outbox.ErrUnavailable) || errors.Is(err, outbox.ErrPermanent) ||
		errors.Is(err, outbox.ErrUnknownOutcome) || errors.Is(err, outbox.ErrRejected)
}

// rejected is a publish error classified outbox.ErrRejected. Its text is the
// error's own: what the publish got back, as an operator reads it in
// last_error.
type rejected struct{ err error }

func (r rejected) Error() string   { return r.err.Error() }
func (r rejected) Unwrap() []error { return []error{outbox.ErrRejected, r.err} }

// pingProbe asks the server for a round trip (at most every 250ms, shared
// by a burst of timeouts).
func (p *Publisher) pingProbe() error {
	p.mu.Lock()
	if time.Since(p.lastPing) < 250*time.Millisecond {
		err := p.pingErr
		p.mu.Unlock()
		return err
	}
	p.mu.Unlock()
	err := p.nc.FlushTimeout(time.Second)
	p.mu.Lock()
	p.lastPing, p.pingErr = time.Now(), err
	p.mu.Unlock()
	return err
}

func (p *Publisher) markUnready() {
	p.mu.Lock()
	p.ready = false
	p.mu.Unlock()
}

// probe asks for the stream's info, at most every 250ms.
func (p *Publisher) probe(ctx context.Context) error {
	p.mu.Lock()
	if time.Since(p.lastProbe) < 250*time.Millisecond {
		err := p.probeErr
		p.mu.Unlock()
		return err
	}
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err := p.js.Stream(ctx, p.cfg.Stream.Name)
	p.mu.Lock()
	p.lastProbe, p.probeErr = time.Now(), err
	p.mu.Unlock()
	return err
}
