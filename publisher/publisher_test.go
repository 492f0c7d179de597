package publisher_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/internal/natstest"
	"github.com/fitiqcore/outbox/publisher"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func connect(t *testing.T, url string, manage bool, edit ...func(*publisher.Config)) *publisher.Publisher {
	t.Helper()
	cfg := publisher.Config{URL: url, SubjectPrefix: "app", Stream: publisher.StreamConfig{Manage: manage, Name: "APP", DuplicateWindow: time.Minute}}
	for _, f := range edit {
		f(&cfg)
	}
	p, err := publisher.Connect(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func event(typ string) *outbox.Event {
	return &outbox.Event{ID: uuid.NewString(), Type: typ, MaxAttempts: 5, CreatedAt: time.Now()}
}

func ready(t *testing.T, p *publisher.Publisher) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Ready(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestManagedStreamAndDuplicateAck(t *testing.T) {
	ns := natstest.Start(t)
	p := connect(t, ns.URL(), true)
	ready(t, p)
	_, js := ns.Connect(t)
	st, err := js.Stream(context.Background(), "APP")
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	if len(cfg.Subjects) != 1 || cfg.Subjects[0] != "app.>" || cfg.Duplicates != time.Minute || cfg.Storage != jetstream.FileStorage {
		t.Errorf("stream config: %+v", cfg)
	}
	e := event("mood.created")
	ack1, err := p.Publish(context.Background(), e, 1)
	if err != nil || ack1.Duplicate {
		t.Fatalf("first publish: %+v %v", ack1, err)
	}
	f, err := p.PublishAsync(e, 2)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case ack := <-f.Ok():
		if !ack.Duplicate || ack.Sequence != ack1.Sequence {
			t.Errorf("re-publish of the same id: %+v, want a duplicate ack of seq %d", ack, ack1.Sequence)
		}
	case err := <-f.Err():
		t.Fatal(err)
	}
}

func TestReadyWaitsForTheServer(t *testing.T) {
	ns := natstest.Start(t)
	ns.Stop()
	p := connect(t, ns.URL(), true)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	err := p.Ready(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Ready with the server down: %v", err)
	}
	ns.Restart()
	ready(t, p)
	if !p.Connected() {
		t.Error("not connected after Ready")
	}
}

func TestUnmanagedStreamIsNeverChanged(t *testing.T) {
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "APP", Subjects: []string{"app.ok.>"}}); err != nil {
		t.Fatal(err)
	}
	p := connect(t, ns.URL(), false)
	ready(t, p)
	st, _ := js.Stream(context.Background(), "APP")
	if s := st.CachedInfo().Config.Subjects; len(s) != 1 || s[0] != "app.ok.>" {
		t.Errorf("unmanaged stream changed: %v", s)
	}
	// A subject no stream covers: a failed attempt, neither outage nor permanent.
	_, err := p.Publish(context.Background(), event("other.thing"), 1)
	if err == nil {
		t.Fatal("publish to an uncovered subject succeeded")
	}
	c := p.Classify(context.Background(), err)
	if errors.Is(c, publisher.ErrUnavailable) || errors.Is(c, publisher.ErrPermanent) {
		t.Errorf("uncovered subject classified %v, want a plain failed attempt", c)
	}
}

func TestClassify(t *testing.T) {
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "APP", Subjects: []string{"app.>"}, MaxMsgSize: 512}); err != nil {
		t.Fatal(err)
	}
	p := connect(t, ns.URL(), false)
	ready(t, p)
	big := event("big")
	big.Payload = make([]byte, 4096)
	_, tooLarge := p.Publish(context.Background(), big, 1)
	if tooLarge == nil {
		t.Fatal("a message over the stream's max_msg_size was accepted")
	}
	tests := []struct {
		name string
		err  error
		want error // nil: a plain failed attempt
	}{
		{"disconnected", nats.ErrDisconnected, publisher.ErrUnavailable},
		{"reconnecting", nats.ErrConnectionReconnecting, publisher.ErrUnavailable},
		{"closed", nats.ErrConnectionClosed, publisher.ErrUnavailable},
		{"stalled", jetstream.ErrTooManyStalledMsgs, publisher.ErrUnavailable},
		{"503", &jetstream.APIError{Code: 503, ErrorCode: 10008}, publisher.ErrUnavailable},
		{"insufficient resources", &jetstream.APIError{Code: 503, ErrorCode: 10023}, publisher.ErrUnavailable},
		{"too large (server answer)", tooLarge, publisher.ErrPermanent},
		{"max payload", nats.ErrMaxPayload, publisher.ErrPermanent},
		{"sealed", &jetstream.APIError{Code: 400, ErrorCode: 10109}, publisher.ErrPermanent},
		{"timeout while connected", jetstream.ErrAsyncPublishTimeout, nil},
		{"no stream response, stream answers", jetstream.ErrNoStreamResponse, nil},
		{"other", errors.New("boom"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := p.Classify(context.Background(), tt.err)
			if !errors.Is(got, tt.err) {
				t.Errorf("classified error %v lost the original %v", got, tt.err)
			}
			for _, s := range []error{publisher.ErrUnavailable, publisher.ErrPermanent} {
				if errors.Is(got, s) != (tt.want == s) {
					t.Errorf("Classify(%v) = %v, want %v", tt.err, got, tt.want)
				}
			}
		})
	}
	// With the server gone, a timeout or no-response is an outage.
	ns.Stop()
	natstest.Eventually(t, 5*time.Second, "disconnected", func() bool { return !p.Connected() })
	for _, err := range []error{jetstream.ErrAsyncPublishTimeout, jetstream.ErrNoStreamResponse} {
		if got := p.Classify(context.Background(), err); !errors.Is(got, publisher.ErrUnavailable) {
			t.Errorf("while disconnected, Classify(%v) = %v", err, got)
		}
	}
}

func TestMissingStreamIsUnavailable(t *testing.T) {
	ns := natstest.Start(t)
	p := connect(t, ns.URL(), false)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := p.Ready(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Ready without the unmanaged stream: %v", err)
	}
	if got := p.Classify(context.Background(), jetstream.ErrNoStreamResponse); !errors.Is(got, publisher.ErrUnavailable) {
		t.Errorf("no stream at all: %v, want unavailable", got)
	}
}

func TestConfigValidateNamesTheField(t *testing.T) {
	tests := []struct {
		edit  func(*publisher.Config)
		field string
	}{
		{func(c *publisher.Config) { c.URL = "" }, "nats.url"},
		{func(c *publisher.Config) { c.SubjectPrefix = "a.>" }, "stream.subject_prefix"},
		{func(c *publisher.Config) { c.Stream.Name = "a b" }, "stream.name"},
		{func(c *publisher.Config) { c.Stream.Replicas = 9 }, "stream.replicas"},
		{func(c *publisher.Config) { c.Stream.Storage = "disk" }, "stream.storage"},
		{func(c *publisher.Config) { c.Stream.DuplicateWindow = time.Millisecond }, "stream.duplicate_window"},
	}
	for _, tt := range tests {
		cfg := publisher.Config{URL: "nats://127.0.0.1:1", SubjectPrefix: "app", Stream: publisher.StreamConfig{Name: "APP"}}
		tt.edit(&cfg)
		_, err := publisher.Connect(cfg)
		if !errors.Is(err, publisher.ErrInvalidConfig) || !strings.Contains(err.Error(), tt.field) {
			t.Errorf("%s: %v", tt.field, err)
		}
	}
}

func TestStoredSince(t *testing.T) {
	ns := natstest.Start(t)
	p := connect(t, ns.URL(), true)
	ready(t, p)
	var late []string
	for range 30 { // before the mark: not read back
		if _, err := p.Publish(context.Background(), event("read.back"), 1); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond)
	mid := time.Now()
	time.Sleep(50 * time.Millisecond)
	for range 2500 { // more than one fetch
		e := event("read.back")
		if _, err := p.Publish(context.Background(), e, 1); err != nil {
			t.Fatal(err)
		}
		late = append(late, e.ID)
	}
	var got []string
	err := p.StoredSince(context.Background(), mid, func(s publisher.Stored) error {
		if s.StreamSeq == 0 || s.Time.Before(mid) {
			t.Errorf("stored %+v before %v", s, mid)
		}
		got = append(got, s.ID)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(late) {
		t.Fatalf("read back %d ids since the mark, want %d", len(got), len(late))
	}
	for i := range late {
		if got[i] != late[i] {
			t.Fatalf("id %d: %s, want %s", i, got[i], late[i])
		}
	}
	n := 0
	if err := p.StoredSince(context.Background(), time.Now().Add(time.Hour), func(publisher.Stored) error { n++; return nil }); err != nil || n != 0 {
		t.Errorf("from the future: %d ids, %v", n, err)
	}
}
