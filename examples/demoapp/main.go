// Command demoapp is a small application that writes events at a steady rate,
// for the docker-compose stack and the reliability suite (integration/).
//
//	demoapp --mode=http     --relay-url=http://relay:7070   # through the sidecar's HTTP API
//	demoapp --mode=embedded --nats-url=nats://n1:4222 --db=/data/app.db   # the library in-process
//
// In http mode it posts batches to POST /v1/events/batch of a relay running
// as its sidecar. An event is accepted when the relay answered 2xx; on a
// connection error, a timeout or a 5xx it posts the same batch again with the
// same ids (an idempotent re-post, answered 200 when the first one was
// stored), so every batch ends accepted or, only on a 4xx or on a refusal
// while load is paused, not stored at all.
//
// In embedded mode it opens its own bbolt file with boltstore and, in one
// transaction per batch, writes its own record of each event (bucket
// demo_records) and enqueues the event with EnqueueTx: both commit or
// neither. It runs the relay (publisher + relay) in the same process. An event
// is accepted when that transaction committed; the list survives a crash of
// the app because it is the app's own data.
//
// Either way it serves a control API on --listen for people and the suite:
//
//	GET  /stats                 counters: accepted, re-posts, errors by kind, the last refusal ...
//	GET  /accepted              every accepted event: [{"id","entity_id","entity_seq","seq","at"}]
//	POST /pause, POST /resume   stop and restart the load (pause waits until no batch is in hand)
//	POST /rate?eps=N            change the rate (events per second)
//	GET  /outbox/stats          embedded mode: the store's statistics (pending, failed ...)
//	GET  /tail?offset=N         the bytes of --expose-file from offset N (scratch images have no
//	                            shell: this is how the suite reads the subscriber's record)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demoapp:", err)
		os.Exit(1)
	}
}

// config is the demo app's flags.
type config struct {
	mode       string
	listen     string
	rate       float64
	batch      int
	entities   int
	prefix     string
	eventType  string
	paused     bool
	exposeFile string

	// http mode
	relayURL   string
	relayToken string

	// embedded mode
	db              string
	natsURL         string
	stream          string
	subjectPrefix   string
	replicas        int
	duplicateWindow time.Duration
	publishTimeout  time.Duration
	logLevel        string
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("demoapp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.mode, "mode", "http", "http (through the relay sidecar's API) or embedded (boltstore + relay in this process)")
	fs.StringVar(&c.listen, "listen", "127.0.0.1:8080", "address of the control API")
	fs.Float64Var(&c.rate, "rate", 100, "events per second")
	fs.IntVar(&c.batch, "batch", 10, "events per batch (one POST or one transaction)")
	fs.IntVar(&c.entities, "entities", 16, "distinct entity ids the events are spread over")
	fs.StringVar(&c.prefix, "entity-prefix", "", "entity id prefix (default: the mode)")
	fs.StringVar(&c.eventType, "type", "demo.updated", "event type")
	fs.BoolVar(&c.paused, "paused", false, "start with the load paused (POST /resume starts it)")
	fs.StringVar(&c.exposeFile, "expose-file", "", "serve this file at GET /tail?offset=N (e.g. the subscriber's record on a shared volume)")
	fs.StringVar(&c.relayURL, "relay-url", "http://127.0.0.1:7070", "http mode: the relay sidecar's base URL")
	fs.StringVar(&c.relayToken, "relay-token", "", "http mode: the relay's bearer token (default $RELAY_TOKEN)")
	fs.StringVar(&c.db, "db", "./data/demoapp.db", "embedded mode: the app's bbolt file")
	fs.StringVar(&c.natsURL, "nats-url", "nats://127.0.0.1:4222", "embedded mode: NATS URL(s), comma-separated")
	fs.StringVar(&c.stream, "stream", "OUTBOX", "embedded mode: the JetStream stream")
	fs.StringVar(&c.subjectPrefix, "subject-prefix", "outbox", "embedded mode: the subject prefix")
	fs.IntVar(&c.replicas, "replicas", 1, "embedded mode: stream replicas")
	fs.DurationVar(&c.duplicateWindow, "duplicate-window", 2*time.Minute, "embedded mode: the stream's duplicate window")
	fs.DurationVar(&c.publishTimeout, "publish-timeout", 5*time.Second, "embedded mode: publish ack timeout")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	switch {
	case c.mode != "http" && c.mode != "embedded":
		return nil, fmt.Errorf("--mode: want http or embedded, got %q", c.mode)
	case c.rate <= 0:
		return nil, fmt.Errorf("--rate: must be positive, got %g", c.rate)
	case c.batch < 1 || c.batch > 1000:
		return nil, fmt.Errorf("--batch: must be 1..1000, got %d", c.batch)
	case c.entities < 1:
		return nil, fmt.Errorf("--entities: must be at least 1, got %d", c.entities)
	}
	if c.prefix == "" {
		c.prefix = c.mode
	}
	if c.relayToken == "" {
		c.relayToken = os.Getenv("RELAY_TOKEN")
	}
	c.relayURL = strings.TrimSuffix(c.relayURL, "/")
	return c, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	var w writer
	var bg func(ctx context.Context) error // the embedded relay, when there is one
	switch cfg.mode {
	case "http":
		w = newHTTPWriter(cfg, log)
	case "embedded":
		ew, err := openEmbedded(cfg, log)
		if err != nil {
			return err
		}
		defer ew.Close()
		w, bg = ew, ew.Run
	}

	gen := newGenerator(cfg, w, log)
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	srv := &http.Server{Handler: newControl(cfg, gen, w), ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(stdout, "demoapp: mode %s, %g events/s over %d entities, control API on %s\n", cfg.mode, cfg.rate, cfg.entities, ln.Addr())

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 3)
	parts := 2
	go func() { errc <- gen.Run(ctx) }()
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
			return
		}
		errc <- nil
	}()
	if bg != nil {
		parts++
		go func() { errc <- bg(ctx) }()
	}
	var first error
	for i := range parts {
		err := <-errc
		if i == 0 {
			// The first part to return stops the others.
			first = err
			cancel()
			sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = srv.Shutdown(sctx)
			scancel()
		}
	}
	if errors.Is(first, context.Canceled) {
		first = nil
	}
	return first
}
