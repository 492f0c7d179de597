package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fitiqcore/outbox/internal/poll"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fitiqcore/outbox"
)

func TestRunRecordsEveryEvent(t *testing.T) {
	s, err := server.NewServer(&server.Options{JetStream: true, StoreDir: t.TempDir(), Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Start() // it does not block
	if !s.ReadyForConnections(5 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "OUTBOX", Subjects: []string{"outbox.>"}}); err != nil {
		t.Fatal(err)
	}
	const n = 20
	for i := range n {
		e := &outbox.Event{Type: "mood.logged", EntityID: "user-" + string(rune('a'+i%4)), EntitySeq: uint64(i/4 + 1)}
		if err := e.Prepare(outbox.Options{}); err != nil {
			t.Fatal(err)
		}
		if _, err := js.PublishMsg(ctx, e.Message("outbox", "", 1, nil)); err != nil {
			t.Fatal(err)
		}
	}

	record := filepath.Join(t.TempDir(), "handled.jsonl")
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	var stdout, stderr bytes.Buffer
	go func() {
		done <- run(runCtx, []string{"--nats-url", s.ClientURL(), "--record", record, "--workers", "4"}, &stdout, &stderr)
	}()
	poll.Until(t, 10*time.Second, fmt.Sprintf("%d events in the record", n), func() bool {
		data, _ := os.ReadFile(record)
		return strings.Count(string(data), "\n") == n
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), "consuming OUTBOX") {
		t.Errorf("stdout: %q", stdout.String())
	}
}
