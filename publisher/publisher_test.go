package publisher_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/internal/natstest"
	"github.com/fitiqcore/outbox/internal/poll"
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
	ack, err := resolve(t, f, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !ack.Duplicate || ack.StreamSeq != ack1.Sequence {
		t.Errorf("re-publish of the same id: %+v, want a duplicate ack of seq %d", ack, ack1.Sequence)
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
	if errors.Is(c, publisher.ErrUnavailable) || errors.Is(c, publisher.ErrPermanent) || !errors.Is(c, outbox.ErrRejected) {
		t.Errorf("uncovered subject classified %v, want rejected: a failed attempt", c)
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
	// unknown: the error is no answer from the stream, which may hold the
	// message (publisher.ErrUnknownOutcome): the relay never fails an event
	// for such an attempt. want is the one other classification (nil: none,
	// for an unknown outcome alone).
	tests := []struct {
		name    string
		err     error
		want    error
		unknown bool
	}{
		{"disconnected", nats.ErrDisconnected, publisher.ErrUnavailable, true},
		{"closed", nats.ErrConnectionClosed, publisher.ErrUnavailable, true},
		{"reconnecting", nats.ErrConnectionReconnecting, publisher.ErrUnavailable, false},
		{"stalled", jetstream.ErrTooManyStalledMsgs, publisher.ErrUnavailable, false},
		{"reconnect buffer full", nats.ErrReconnectBufExceeded, publisher.ErrUnavailable, false},
		{"503", &jetstream.APIError{Code: 503, ErrorCode: 10008}, publisher.ErrUnavailable, false},
		{"insufficient resources", &jetstream.APIError{Code: 503, ErrorCode: 10023}, publisher.ErrUnavailable, false},
		{"too large (server answer)", tooLarge, publisher.ErrPermanent, false},
		{"max payload", nats.ErrMaxPayload, publisher.ErrPermanent, false},
		{"sealed", &jetstream.APIError{Code: 400, ErrorCode: 10109}, publisher.ErrPermanent, false},
		{"timeout while connected", jetstream.ErrAsyncPublishTimeout, nil, true},
		{"request timeout while connected", nats.ErrTimeout, nil, true},
		{"deadline while connected", context.DeadlineExceeded, nil, true},
		{"unreadable ack", jetstream.ErrInvalidJSAck, nil, true},
		{"no stream response, stream answers", jetstream.ErrNoStreamResponse, outbox.ErrRejected, false},
		{"wrong last sequence (server answer)", &jetstream.APIError{Code: 400, ErrorCode: 10071}, outbox.ErrRejected, false},
		{"other", errors.New("boom"), outbox.ErrRejected, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := p.Classify(context.Background(), tt.err)
			if !errors.Is(got, tt.err) {
				t.Errorf("classified error %v lost the original %v", got, tt.err)
			}
			for _, s := range []error{outbox.ErrUnavailable, outbox.ErrPermanent, outbox.ErrRejected} {
				if errors.Is(got, s) != (tt.want == s) {
					t.Errorf("Classify(%v) = %v, want %v", tt.err, got, tt.want)
				}
			}
			if errors.Is(got, outbox.ErrUnknownOutcome) != tt.unknown {
				t.Errorf("Classify(%v) = %v: unknown outcome %v, want %v", tt.err, got, !tt.unknown, tt.unknown)
			}
			if tt.want == nil && !tt.unknown {
				t.Errorf("test case %s classifies as nothing", tt.name)
			}
			// A rejection reads as what the publish got back: it is the
			// event's last_error.
			if tt.want == outbox.ErrRejected && got.Error() != tt.err.Error() {
				t.Errorf("rejected %q reads %q", tt.err, got)
			}
			// Classifying again changes nothing.
			if again := p.Classify(context.Background(), got); again != got {
				t.Errorf("Classify(Classify(%v)) = %v, want %v", tt.err, again, got)
			}
		})
	}
	// With the server gone, a timeout or no-response is an outage.
	ns.Stop()
	poll.Until(t, 5*time.Second, "disconnected", func() bool { return !p.Connected() })
	for _, err := range []error{jetstream.ErrAsyncPublishTimeout, jetstream.ErrNoStreamResponse} {
		if got := p.Classify(context.Background(), err); !errors.Is(got, publisher.ErrUnavailable) {
			t.Errorf("while disconnected, Classify(%v) = %v", err, got)
		}
	}
	if got := p.Classify(context.Background(), jetstream.ErrAsyncPublishTimeout); !errors.Is(got, publisher.ErrUnknownOutcome) {
		t.Errorf("while disconnected, a timeout is still of unknown outcome: %v", got)
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

// TestConfigValidateNamesTheField: a config error names the Go field (the
// daemon names its yaml key).
func TestConfigValidateNamesTheField(t *testing.T) {
	tests := []struct {
		edit  func(*publisher.Config)
		field string
	}{
		{func(c *publisher.Config) { c.URL = "" }, "URL"},
		{func(c *publisher.Config) { c.SubjectPrefix = "a.>" }, "SubjectPrefix"},
		{func(c *publisher.Config) { c.Stream.Name = "a b" }, "Stream.Name"},
		{func(c *publisher.Config) { c.Stream.Replicas = 9 }, "Stream.Replicas"},
		{func(c *publisher.Config) { c.Stream.Storage = "disk" }, "Stream.Storage"},
		{func(c *publisher.Config) { c.Stream.DuplicateWindow = time.Millisecond }, "Stream.DuplicateWindow"},
		// ce-source travels in every header block: outbox.HeaderAllowance
		// counts on outbox.ValidateSource's bounds.
		{func(c *publisher.Config) { c.Source = "urn:a b" }, "Source"},
		{func(c *publisher.Config) { c.Source = "urn:\x00" }, "Source"},
		{func(c *publisher.Config) { c.Source = "urn:" + strings.Repeat("x", outbox.MaxSourceLen) }, "Source"},
	}
	for _, tt := range tests {
		cfg := publisher.Config{URL: "nats://127.0.0.1:1", SubjectPrefix: "app", Stream: publisher.StreamConfig{Name: "APP"}}
		tt.edit(&cfg)
		p, err := publisher.Connect(cfg)
		if err == nil {
			p.Close()
		}
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
	// mid lies strictly between the server's times of the 30th message and
	// of the next (the server shares this process's clock).
	last := lastStored(t, p)
	poll.Until(t, time.Second, "the clock past the 30th message", func() bool { return time.Now().After(last) })
	mid := time.Now()
	poll.Until(t, time.Second, "the clock past mid", func() bool { return time.Now().After(mid) })
	for range 2500 { // more than one fetch
		e := event("read.back")
		if _, err := p.Publish(context.Background(), e, 1); err != nil {
			t.Fatal(err)
		}
		late = append(late, e.ID)
	}
	var got []string
	err := p.StoredSince(context.Background(), mid, func(id string, streamSeq uint64, at time.Time) error {
		if streamSeq == 0 || at.Before(mid) {
			t.Errorf("stored %s at seq %d, %v: before %v", id, streamSeq, at, mid)
		}
		got = append(got, id)
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
	if err := p.StoredSince(context.Background(), time.Now().Add(time.Hour), func(string, uint64, time.Time) error { n++; return nil }); err != nil || n != 0 {
		t.Errorf("from the future: %d ids, %v", n, err)
	}
}

func TestConfigDefaultSource(t *testing.T) {
	ns := natstest.Start(t)
	p := connect(t, ns.URL(), true)
	if got := p.Config().Source; got != outbox.DefaultSource {
		t.Errorf("default source %q, want %q", got, outbox.DefaultSource)
	}
	p = connect(t, ns.URL(), true, func(c *publisher.Config) { c.Source = "urn:fitiq:api" })
	if got := p.Config().Source; got != "urn:fitiq:api" {
		t.Errorf("source %q, want the configured one", got)
	}
}

// publishN publishes n events with the real publisher and returns their ids
// and the stream sequence of the first.
func publishN(t *testing.T, p *publisher.Publisher, n int) (ids []string, first uint64) {
	t.Helper()
	for i := range n {
		e := event("read.back")
		ack, err := p.Publish(context.Background(), e, 1)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = ack.Sequence
		}
		ids = append(ids, e.ID)
	}
	return ids, first
}

// stored is one message StoredFrom reported.
type stored struct {
	ID        string
	StreamSeq uint64
	Time      time.Time
}

func storedFrom(t *testing.T, p *publisher.Publisher, from uint64) []stored {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got []stored
	err := p.StoredFrom(ctx, from, func(id string, seq uint64, at time.Time) error {
		got = append(got, stored{id, seq, at})
		return nil
	})
	if err != nil {
		t.Fatalf("StoredFrom(%d): %v", from, err)
	}
	return got
}

// lastStored is the server's time of the stream's last message.
func lastStored(t *testing.T, p *publisher.Publisher) time.Time {
	t.Helper()
	st, err := p.JetStream().Stream(context.Background(), "APP")
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.LastTime
}

func TestStoredFromAndLastSeq(t *testing.T) {
	ns := natstest.Start(t)
	p := connect(t, ns.URL(), true)
	ready(t, p)
	if n, err := p.LastSeq(context.Background()); err != nil || n != 0 {
		t.Fatalf("LastSeq of an empty stream: %d, %v", n, err)
	}
	if got := storedFrom(t, p, 1); len(got) != 0 {
		t.Fatalf("an empty stream read back %d messages", len(got))
	}
	before, _ := publishN(t, p, 30)
	_, js := ns.Connect(t)
	if _, err := js.Publish(context.Background(), "other.subject", nil); err == nil {
		t.Fatal("a subject outside the stream was stored")
	}
	mark, err := p.LastSeq(context.Background())
	if err != nil || mark != 30 {
		t.Fatalf("LastSeq after 30 publishes: %d, %v", mark, err)
	}
	late, first := publishN(t, p, 2500) // more than one fetch
	if first != mark+1 {
		t.Fatalf("first publish after LastSeq %d stored at %d, want %d", mark, first, mark+1)
	}
	tests := []struct {
		name string
		from uint64
		want []string
	}{
		{"from the mark on", mark + 1, late},
		{"from the start (0)", 0, append(slices.Clone(before), late...)},
		{"from 1", 1, append(slices.Clone(before), late...)},
		{"the last one", mark + 2500, late[2499:]},
		{"past the end", mark + 2501, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := storedFrom(t, p, tt.from)
			if len(got) != len(tt.want) {
				t.Fatalf("read back %d ids from %d, want %d", len(got), tt.from, len(tt.want))
			}
			for i := range got {
				if got[i].ID != tt.want[i] || got[i].StreamSeq < max(tt.from, 1) {
					t.Fatalf("message %d: %+v, want id %s at seq >= %d", i, got[i], tt.want[i], tt.from)
				}
			}
		})
	}
}

// TestReadBackOutlastsEmptyFetches settles a suspected defect (issue 9): the
// read-back ended at its first empty fetch, so a server slow to answer a
// fetch ended it early and the relay published again what the stream held.
// Every other fetch expires after a nanosecond, before the server can answer:
// it comes back empty while messages remain, as from a slow server, and the
// read-back must still deliver every message once, in order, up to the last.
func TestReadBackOutlastsEmptyFetches(t *testing.T) {
	ns := natstest.Start(t)
	p := connect(t, ns.URL(), true)
	ready(t, p)
	ids, _ := publishN(t, p, 3000)
	publisher.SetFetchWait(p, func(i int) time.Duration {
		if i%2 == 0 {
			return time.Nanosecond
		}
		return time.Second
	})
	for _, read := range []struct {
		name string
		run  func(fn func(string, uint64, time.Time) error) error
	}{
		{"StoredFrom", func(fn func(string, uint64, time.Time) error) error { return p.StoredFrom(context.Background(), 1, fn) }},
		{"StoredSince", func(fn func(string, uint64, time.Time) error) error {
			return p.StoredSince(context.Background(), time.Now().Add(-time.Hour), fn)
		}},
	} {
		t.Run(read.name, func(t *testing.T) {
			var got []string
			if err := read.run(func(id string, _ uint64, _ time.Time) error { got = append(got, id); return nil }); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, ids) {
				t.Fatalf("read back %d of %d messages", len(got), len(ids))
			}
		})
	}
}

// TestReadBackEndsWhenNothingIsPending: when the stream's last message is not
// on the publisher's subjects, the read-back never sees it and ends because
// the consumer has nothing left to deliver.
func TestReadBackEndsWhenNothingIsPending(t *testing.T) {
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "APP", Subjects: []string{"app.>", "other.>"}}); err != nil {
		t.Fatal(err)
	}
	p := connect(t, ns.URL(), false)
	ready(t, p)
	ids, _ := publishN(t, p, 10)
	if _, err := js.Publish(context.Background(), "other.thing", nil); err != nil {
		t.Fatal(err)
	}
	publisher.SetFetchWait(p, func(i int) time.Duration { return 50 * time.Millisecond })
	var got []string
	if err := p.StoredFrom(t.Context(), 1, func(id string, _ uint64, _ time.Time) error { got = append(got, id); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, ids) {
		t.Errorf("read back %v, want %v", got, ids)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.StoredFrom(ctx, 1, func(string, uint64, time.Time) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("with ctx done: %v", err)
	}
}
