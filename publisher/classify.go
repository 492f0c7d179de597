package publisher

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Classify wraps err in ErrUnavailable or ErrPermanent when that is what it
// means (see the package doc), and returns it unchanged otherwise. A "no
// response from stream" is probed: when JetStream or the stream does not
// answer either, the broker is unavailable; when the stream answers, no
// stream covers the subject and the attempt counts.
//
// It also wraps ErrUnknownOutcome when err is not an answer to the publish
// and the message may have reached the stream: a timeout, a connection lost
// with the ack pending, an unreadable ack. Errors that mean the message was
// never sent (back-pressure, a closed or reconnecting connection refusing the
// publish, a payload over max_payload) and the server's answers (a JetStream
// API error, no responders) say the stream does not hold it.
func (p *Publisher) Classify(ctx context.Context, err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) || errors.Is(err, ErrPermanent) {
		return err
	}
	unavailable := func(err error) error { p.markUnready(); return fmt.Errorf("%w: %w", ErrUnavailable, err) }
	unknown := func(err error) error { return fmt.Errorf("%w: %w", ErrUnknownOutcome, err) }
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
		return fmt.Errorf("%w: %w", ErrPermanent, err)
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
		return err
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case 10054, 10097, 10060, 10109: // too large, wrong stream, sealed
			return fmt.Errorf("%w: %w", ErrPermanent, err)
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
	return err
}

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
