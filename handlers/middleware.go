package handlers

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fitiqcore/outbox"
)

// Logging logs every handled event: at Debug when it succeeds, at Warn when
// it fails, with the outcome the Router gives it (see Outcome).
func Logging(logger *slog.Logger) Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, e *outbox.Event) error {
			start := time.Now()
			err := next.Handle(ctx, e)
			d, _ := DeliveryFromContext(ctx)
			attrs := []slog.Attr{
				slog.String("id", e.ID), slog.String("type", e.Type), slog.String("entity_id", e.EntityID),
				slog.Uint64("entity_seq", e.EntitySeq), slog.Uint64("delivery", d.NumDelivered),
				slog.Duration("took", time.Since(start)), slog.String("outcome", Outcome(ctx, d, err)),
			}
			if err == nil {
				logger.LogAttrs(ctx, slog.LevelDebug, "event handled", attrs...)
				return nil
			}
			attrs = append(attrs, slog.Any("err", err))
			logger.LogAttrs(ctx, slog.LevelWarn, "handler failed", attrs...)
			return err
		})
	}
}

// Metrics counts handled events by type and outcome
// (outbox_handler_events_total{type,outcome}, outcome one of ack, retry,
// dead_letter, released) and observes handler durations by type
// (outbox_handler_duration_seconds{type}). It registers both with reg; with
// a Registerer that has them already (Metrics called twice), the registered
// ones are used. It panics if reg refuses them for another reason, as
// prometheus.MustRegister does.
func Metrics(reg prometheus.Registerer) Middleware {
	events := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "outbox_handler_events_total",
		Help: "Events handled, by event type and outcome (ack, retry, dead_letter, released).",
	}, []string{"type", "outcome"}))
	duration := register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "outbox_handler_duration_seconds",
		Help:    "Time spent in the handler, by event type.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10), // 0.5ms .. ~131s
	}, []string{"type"}))
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, e *outbox.Event) error {
			start := time.Now()
			err := next.Handle(ctx, e)
			duration.WithLabelValues(e.Type).Observe(time.Since(start).Seconds())
			d, _ := DeliveryFromContext(ctx)
			events.WithLabelValues(e.Type, Outcome(ctx, d, err)).Inc()
			return err
		})
	}
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}
