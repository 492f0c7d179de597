package handlers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fitiqcore/outbox"
)

// start sets up what one Run needs: the prefixes, the durable consumer, the
// dead-letter mode and the idempotency bucket.
func (r *Router) start(ctx context.Context, t table) (*session, error) {
	o := r.opts
	if o.subjectPrefix == "" {
		p, err := prefixOf(ctx, r.js, r.stream)
		if err != nil {
			return nil, err
		}
		o.subjectPrefix = p
	}
	if o.dlqPrefix == "" {
		o.dlqPrefix = "dlq." + o.subjectPrefix
	}
	if err := checkPrefixes(o.subjectPrefix, o.dlqPrefix); err != nil {
		return nil, err
	}
	filters := filterSubjects(o.subjectPrefix, t.patterns())
	cfg := jetstream.ConsumerConfig{
		Durable:       r.durable,
		Description:   "fitiqcore outbox handlers",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       o.ackWait,
		MaxDeliver:    -1, // the Router dead-letters at the event's max_attempts
		MaxAckPending: o.maxAckPending,
	}
	if len(filters) == 1 {
		cfg.FilterSubject = filters[0]
	} else {
		cfg.FilterSubjects = filters
	}
	// The bucket before the consumer: once the consumer exists, everything a
	// delivery needs does.
	var kv jetstream.KeyValue
	if o.dedupBucket != "" {
		var err error
		if kv, err = openBucket(ctx, r.js, o.dedupBucket, o.dedupTTL); err != nil {
			return nil, err
		}
	}
	cons, err := r.js.CreateOrUpdateConsumer(ctx, r.stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("handlers: consumer %s on stream %s: %w", r.durable, r.stream, err)
	}
	s := &session{
		r: r, o: o, table: t, cons: cons, kv: kv, log: o.logger.With("consumer", r.durable),
		tokens: make(chan struct{}, o.maxAckPending),
		queues: make([]chan *inflight, o.workers),
		held:   make(map[*inflight]struct{}),
	}
	for i := range s.queues {
		s.queues[i] = make(chan *inflight, o.maxAckPending)
	}
	switch name, err := r.js.StreamNameBySubject(ctx, o.dlqPrefix+".>"); {
	case err == nil:
		s.dlqStream, s.dlqName = true, name
		if err := s.loadDLQLimit(ctx); err != nil { // a refused dead letter reads it again
			s.log.Warn("cannot read the dead-letter stream's max_msg_size", "stream", name, "err", err)
		}
	case errors.Is(err, jetstream.ErrStreamNotFound):
		s.log.Warn("no stream keeps the dead letters: they go to core NATS and are lost unless someone listens",
			"subjects", o.dlqPrefix+".>")
	default:
		return nil, fmt.Errorf("handlers: look up the dead-letter stream for %s.>: %w", o.dlqPrefix, err)
	}
	return s, nil
}

// prefixOf reads the subject prefix from a stream with the single subject
// <prefix>.>, as the relay creates it.
func prefixOf(ctx context.Context, js jetstream.JetStream, stream string) (string, error) {
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return "", fmt.Errorf("handlers: stream %s: %w", stream, err)
	}
	subs := st.CachedInfo().Config.Subjects
	if len(subs) == 1 && strings.HasSuffix(subs[0], ".>") {
		if p := strings.TrimSuffix(subs[0], ".>"); outbox.ValidateType(p) == nil {
			return p, nil
		}
	}
	return "", invalidf("cannot tell the subject prefix from the subjects %q of stream %s: use WithSubjectPrefix", subs, stream)
}

// hold waits, when the consumer has unacked messages, until they are acked or
// their ack wait has passed, so that the first fetch gets them (redeliveries
// come first, in stream order) before the later events of their entities.
// Their holder cannot extend them by more than one AckWait from now; the
// server then needs a moment to queue them for redelivery.
func (s *session) hold(ctx context.Context) error {
	if s.o.noStartupHold {
		return nil
	}
	pending := s.cons.CachedInfo().NumAckPending
	if pending == 0 {
		return nil
	}
	until := time.Now().Add(s.o.ackWait + s.o.ackWait/10 + 200*time.Millisecond)
	s.log.Info("unacked messages from an earlier delivery: waiting for them before fetching",
		"ack_pending", pending, "at_most", time.Until(until).Round(time.Millisecond))
	tick := time.NewTicker(min(250*time.Millisecond, s.o.ackWait/4))
	defer tick.Stop()
	for time.Now().Before(until) {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		info, err := s.cons.Info(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			return fmt.Errorf("handlers: consumer %s info: %w", s.r.durable, err)
		case info.NumAckPending == 0:
			return nil
		}
	}
	return nil
}
