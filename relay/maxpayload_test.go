package relay_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
	"github.com/fitiqcore/outbox/internal/poll"
	"github.com/fitiqcore/outbox/publisher"
	"github.com/fitiqcore/outbox/relay"
	"github.com/nats-io/nats-server/v2/server"
)

// TestRelayTellsTheStoreTheBrokersLimit is issue 9 row 2 (library side):
// until the relay has connected, the store holds events to NATS's default
// max_payload; once the publisher is ready, to what this broker (max_payload
// 64 KiB) can carry, so that it never accepts an event it could not publish.
func TestRelayTellsTheStoreTheBrokersLimit(t *testing.T) {
	const brokerMax = 64 << 10
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
		MaxPayload: brokerMax,
	})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start() // it does not block
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	store, err := boltstore.Open(filepath.Join(t.TempDir(), "outbox.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if got, want := store.MaxMessage(), outbox.MessageLimit(outbox.DefaultMaxMessage); got != want {
		t.Fatalf("before the relay connected: limit %d, want NATS's default %d", got, want)
	}
	pub, err := publisher.Connect(publisher.Config{URL: ns.ClientURL(), SubjectPrefix: "t", Stream: publisher.StreamConfig{Manage: true, Name: stream}})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	r, err := relay.New(store, pub, relay.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay.Run: %v", err)
		}
	}()
	want := outbox.MessageLimit(brokerMax)
	poll.Until(t, 10*time.Second, "the store held to the broker's limit", func() bool { return store.MaxMessage() == want })
	_, err = store.Enqueue(ctx, &outbox.Event{Type: "too.big", Payload: make([]byte, brokerMax-4<<10)})
	if !errors.Is(err, outbox.ErrPayloadTooLarge) {
		t.Errorf("a payload the broker cannot carry with its dead-letter reserve: %v, want ErrPayloadTooLarge", err)
	}
	fits := &outbox.Event{Type: "fits", Payload: make([]byte, want-outbox.HeaderAllowance-1024)}
	if _, err := store.Enqueue(ctx, fits); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, "the largest accepted event published", func() bool {
		e, err := store.Get(ctx, fits.ID)
		return err == nil && e.Status == outbox.StatusCompleted
	})
}
