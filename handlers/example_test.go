package handlers_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/handlers"
)

// A subscriber service: one durable consumer, handlers by event type, the
// relay's retry policy honoured, failures dead-lettered, duplicates skipped.
func Example() {
	js, cleanup := exampleJetStream() // the relay's stream OUTBOX (outbox.>) with one event in it
	defer cleanup()

	r, err := handlers.NewRouter(js, "OUTBOX", "mood-service",
		handlers.WithWorkers(8), // per entity: one at a time, in stream order
		handlers.WithIdempotency("mood-service-handled", 24*time.Hour))
	if err != nil {
		log.Fatal(err)
	}
	r.Use(handlers.Logging(slog.Default()))

	ctx, stop := context.WithCancel(context.Background()) // signal.NotifyContext in a real service
	r.HandleFunc("mood.", func(ctx context.Context, e *outbox.Event) error {
		if len(e.Payload) == 0 {
			return handlers.Permanent(fmt.Errorf("mood %s: empty payload", e.ID)) // dead-lettered at once
		}
		fmt.Printf("%s for %s (#%d): %s\n", e.Type, e.EntityID, e.EntitySeq, e.Payload)
		stop()     // a real service handles events until it is told to stop
		return nil // acked; an error would be retried with the event's backoff
	})
	if err := r.Run(ctx); err != nil { // drains in-flight handlers before it returns
		log.Fatal(err)
	}
	// Output: mood.logged for user-42 (#1): {"score":7}
}

// MoodLogged is the payload of a mood.logged event, shared by its producer
// and its subscribers.
type MoodLogged struct {
	Score int    `json:"score"`
	Note  string `json:"note,omitempty"`
}

// moodLogged is the event type, declared once.
var moodLogged = outbox.NewType[MoodLogged]("mood.logged")

// A typed handler: the payload arrives decoded; one that does not decode
// into a MoodLogged is dead-lettered at once, without retries.
func ExampleHandleJSON() {
	js, cleanup := exampleJetStream()
	defer cleanup()

	r, err := handlers.NewRouter(js, "OUTBOX", "mood-scores")
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	handlers.HandleJSON(r, moodLogged, func(ctx context.Context, e *outbox.Event, m MoodLogged) error {
		fmt.Printf("%s scored %d\n", e.EntityID, m.Score)
		stop()
		return nil
	})
	if err := r.Run(ctx); err != nil {
		log.Fatal(err)
	}
	// Output: user-42 scored 7
}

// exampleJetStream starts an in-process JetStream server holding what the
// relay would have published.
func exampleJetStream() (jetstream.JetStream, func()) {
	dir, err := os.MkdirTemp("", "handlers-example")
	if err != nil {
		log.Fatal(err)
	}
	s, err := server.NewServer(&server.Options{JetStream: true, StoreDir: dir, Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		log.Fatal(err)
	}
	s.Start() // it does not block
	if !s.ReadyForConnections(5 * time.Second) {
		log.Fatal("nats-server not ready")
	}
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		log.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	for name, subject := range map[string]string{"OUTBOX": "outbox.>", "DLQ": "dlq.outbox.>"} {
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subject}}); err != nil {
			log.Fatal(err)
		}
	}
	e := &outbox.Event{Type: "mood.logged", EntityID: "user-42", EntitySeq: 1, Payload: []byte(`{"score":7}`), ContentType: outbox.ContentTypeJSON}
	if err := e.Prepare(outbox.Options{}); err != nil {
		log.Fatal(err)
	}
	if _, err := js.PublishMsg(ctx, e.Message("outbox", "", 1, nil)); err != nil {
		log.Fatal(err)
	}
	return js, func() {
		nc.Close()
		s.Shutdown()
		s.WaitForShutdown()
		os.RemoveAll(dir)
	}
}
