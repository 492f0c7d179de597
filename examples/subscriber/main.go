// Command subscriber is an example subscriber service built on package
// handlers: it handles every event of the relay's stream and, with --record,
// appends one JSON line per handled event ({"id","type","entity_id",
// "entity_seq"}) so that a test can check that each event was handled exactly
// once and in per-entity order.
//
//	go run ./examples/subscriber --nats-url nats://127.0.0.1:4222 --record handled.jsonl
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/handlers"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "subscriber:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("subscriber", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("nats-url", nats.DefaultURL, "NATS server URL")
	stream := fs.String("stream", "OUTBOX", "the relay's stream")
	durable := fs.String("durable", "example-subscriber", "durable consumer name")
	subjectPrefix := fs.String("subject-prefix", "", "subject prefix of the events (default: read from the stream)")
	dlqPrefix := fs.String("dlq-prefix", "", `dead-letter subject prefix (default "dlq.<subject prefix>")`)
	record := fs.String("record", "", "append one JSON line per handled event to this file")
	workers := fs.Int("workers", 8, "handlers running at once (one at a time per entity)")
	dedup := fs.String("dedup-bucket", "", "JetStream KV bucket of handled event ids (off when empty)")
	ackWait := fs.Duration("ack-wait", 10*time.Second, "consumer ack wait: how soon a crashed subscriber's events come back")
	if err := fs.Parse(args); err != nil {
		return err
	}

	log := slog.New(slog.NewTextHandler(stderr, nil))
	opts := []handlers.Option{handlers.WithWorkers(*workers), handlers.WithAckWait(*ackWait), handlers.WithLogger(log)}
	if *subjectPrefix != "" {
		opts = append(opts, handlers.WithSubjectPrefix(*subjectPrefix))
	}
	if *dlqPrefix != "" {
		opts = append(opts, handlers.WithDeadLetterPrefix(*dlqPrefix))
	}
	if *dedup != "" {
		opts = append(opts, handlers.WithIdempotency(*dedup, 24*time.Hour))
	}

	var h handlers.Handler = handlers.HandlerFunc(func(context.Context, *outbox.Event) error { return nil })
	if *record != "" {
		rec, err := openRecord(*record, log)
		if err != nil {
			return err
		}
		defer rec.Close()
		h = rec
	}

	nc, err := nats.Connect(*url, nats.Name("outbox-example-subscriber"), nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("connect %s: %w", *url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	r, err := handlers.NewRouter(js, *stream, *durable, opts...)
	if err != nil {
		return err
	}
	r.Use(handlers.Logging(log))
	r.Handle(handlers.MatchAll, h)
	fmt.Fprintf(stdout, "subscriber: consuming %s as %s with %d workers\n", *stream, *durable, *workers)
	if err := r.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
