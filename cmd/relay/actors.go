package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/fitiqcore/outbox/internal/rungroup"
)

// services are what `relay serve` runs once everything is open: the API
// server, the relay loop and the retention sweep, each an actor of one
// run group with ctx's end as a fourth.
type services struct {
	http     *http.Server
	listener net.Listener
	tls      bool // serve the listener with http's TLSConfig
	relay    interface {
		Run(ctx context.Context) error
	}
	// retention runs the sweep until ctx ends; an error stops the sweep
	// only, logged, and serve goes on without it.
	retention func(ctx context.Context) error
	log       *slog.Logger
}

// httpShutdownTimeout bounds how long serve waits for the requests in
// progress when it stops.
const httpShutdownTimeout = 10 * time.Second

// run serves until ctx ends or an actor stops: the relay failing (a store
// that cannot record outcomes), the API server failing. The first to return
// stops the others, and run returns the first error once every one has
// returned; the caller then closes the store. They are interrupted in the
// order added: ingest stops first (Shutdown waits for the requests in
// progress), then the relay drains its in-flight publishes, so that nothing
// accepted is left behind unstored, and what is unpublished stays pending
// for the next start.
func (s services) run(ctx context.Context) error {
	var g rungroup.Group
	g.Add(httpActor(s.http, s.listener, s.tls))
	// The relay and the sweep outlive ctx: only their interrupt stops them.
	relayCtx, stopRelay := context.WithCancel(context.WithoutCancel(ctx))
	g.Add(func() error { return s.relay.Run(relayCtx) }, func(error) { stopRelay() })
	retentionCtx, stopRetention := context.WithCancel(context.WithoutCancel(ctx))
	g.Add(func() error {
		if err := s.retention(retentionCtx); err != nil && retentionCtx.Err() == nil {
			s.log.Error("retention sweep stopped; completed events are no longer removed", "err", err)
		}
		<-retentionCtx.Done()
		return nil
	}, func(error) { stopRetention() })
	signalCtx, stopSignal := context.WithCancel(ctx)
	g.Add(func() error {
		<-signalCtx.Done()
		if ctx.Err() != nil {
			s.log.Info("shutting down: closing ingest, draining in-flight publishes")
		}
		return nil
	}, func(error) { stopSignal() })
	err := g.Run()
	s.log.Info("relay stopped")
	return err
}

// httpActor is the API server as an actor: execute serves ln (with TLS when
// tls is set) until interrupt shuts the server down, and returns when
// Shutdown has, with Shutdown's error; an error of Serve itself (the
// listener failing) is returned as it is.
func httpActor(srv *http.Server, ln net.Listener, tls bool) (execute func() error, interrupt func(error)) {
	shutdown := make(chan error, 1)
	execute = func() error {
		var err error
		if tls {
			err = srv.ServeTLS(ln, "", "")
		} else {
			err = srv.Serve(ln)
		}
		if errors.Is(err, http.ErrServerClosed) { // Shutdown has begun
			return <-shutdown
		}
		return err
	}
	interrupt = func(error) {
		ctx, cancel := context.WithTimeout(context.Background(), httpShutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			shutdown <- fmt.Errorf("http shutdown: %w", err)
			return
		}
		shutdown <- nil
	}
	return execute, interrupt
}
