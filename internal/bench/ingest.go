package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/httpapi"
	"github.com/fitiqcore/outbox/internal/rungroup"
)

// Ingest: events into the store, through the library (enqueue) and through
// the HTTP API (http_ingest).

const (
	httpClients = 8
	httpBatch   = 100 // events per POST /v1/events/batch
)

// enqueue: Store.Enqueue from 64 producers, one event per call, with the
// store's own group-commit settings.
func (r *runner) enqueue(ctx context.Context) error {
	store, dir, err := r.openStore("enqueue")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	defer store.Close()
	mk, n := r.events("enqueue"), r.o.Events
	var next, done atomic.Int64
	defer r.prog.follow(func() float64 { return float64(done.Load()) / float64(n) })()

	defer r.profile("enqueue")()
	start := time.Now()
	err = parallel(ctx, producers, func(ctx context.Context) error {
		for ctx.Err() == nil {
			i := next.Add(1) - 1
			if i >= int64(n) {
				return nil
			}
			if _, err := store.Enqueue(ctx, mk(int(i))); err != nil {
				return err
			}
			done.Add(1)
		}
		return ctx.Err()
	})
	if err != nil {
		return err
	}
	r.res.Enqueue = float64(n) / time.Since(start).Seconds()
	r.note("enqueue: %d events (own entity each, 100 users) from %d goroutines, Store.Enqueue with the store's defaults (MaxBatchSize 64, MaxBatchDelay 1ms)", n, producers)
	return nil
}

// http_ingest: POST /v1/events/batch, 100 events a request, from 8 clients
// over keep-alive connections to httpapi on a loopback listener.
func (r *runner) httpIngest(ctx context.Context) error {
	store, dir, err := r.openStore("http_ingest")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	defer store.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: httpapi.New(store, httpapi.Options{}), ReadHeaderTimeout: 10 * time.Second}
	url := "http://" + ln.Addr().String() + "/v1/events/batch"

	// The bodies are encoded before the clock starts: the clients stand for
	// other processes.
	type jsonEvent struct {
		Type     string          `json:"type"`
		EntityID string          `json:"entity_id"`
		UserID   string          `json:"user_id"`
		Payload  json.RawMessage `json:"payload"`
	}
	n, mk := r.o.Events, r.events("http_ingest")
	var bodies [][]byte
	for from := 0; from < n; from += httpBatch {
		var b struct {
			Events []jsonEvent `json:"events"`
		}
		for i := from; i < min(from+httpBatch, n); i++ {
			e := mk(i)
			b.Events = append(b.Events, jsonEvent{e.Type, e.EntityID, e.UserID, e.Payload})
		}
		body, err := json.Marshal(b)
		if err != nil {
			return err
		}
		bodies = append(bodies, body)
	}
	tr := &http.Transport{MaxIdleConns: 2 * httpClients, MaxIdleConnsPerHost: 2 * httpClients, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: time.Minute}
	var next, done atomic.Int64
	defer r.prog.follow(func() float64 { return float64(done.Load()) / float64(n) })()

	defer r.profile("http_ingest")()
	// The server and the clients are the actors of a run group: the clients
	// done (or failed) shut the server down.
	var g rungroup.Group
	g.Add(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}, func(error) { srv.Shutdown(context.Background()) }) //nolint:errcheck // no deadline: it waits for the requests
	var elapsed time.Duration
	clientsCtx, stopClients := context.WithCancel(ctx)
	g.Add(func() error {
		start := time.Now()
		err := parallel(clientsCtx, httpClients, func(ctx context.Context) error {
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(len(bodies)) {
					return nil
				}
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(bodies[i]))
				if err != nil {
					return err
				}
				req.Header.Set("Content-Type", outbox.ContentTypeJSON)
				resp, err := client.Do(req)
				if err != nil {
					return err
				}
				var head []byte
				if resp.StatusCode != http.StatusCreated {
					head, _ = io.ReadAll(io.LimitReader(resp.Body, 512))
				}
				io.Copy(io.Discard, resp.Body) //nolint:errcheck // keep the connection
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					return fmt.Errorf("POST %s: %s: %s", url, resp.Status, head)
				}
				done.Add(int64(min(httpBatch, n-int(i)*httpBatch)))
			}
			return ctx.Err()
		})
		elapsed = time.Since(start)
		return err
	}, func(error) { stopClients() })
	if err := g.Run(); err != nil {
		return err
	}
	r.res.HTTPIngest = float64(n) / elapsed.Seconds()
	r.note("http_ingest: %d events in %d requests of %d, %d keep-alive clients, answers (201, events echoed) read in full", n, len(bodies), httpBatch, httpClients)
	return nil
}
