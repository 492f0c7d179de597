package publisher_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/internal/natstest"
	"github.com/fitiqcore/outbox/internal/poll"
	"github.com/fitiqcore/outbox/publisher"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The publisher's own async path (PublishAsync) against a real server, case
// by case as nats.go's PublishMsgAsync answers them; each case also runs
// through nats.go's path, so the two are seen to agree. Cases where they
// differ on purpose say so.

// resolve waits for the answer to a PublishAsync, at most d; err is its Err.
func resolve(t *testing.T, answer <-chan outbox.PublishResult, d time.Duration) (ack outbox.PublishResult, err error) {
	t.Helper()
	select {
	case ack = <-answer:
		return ack, ack.Err
	case <-time.After(d):
		t.Fatalf("publish unanswered after %s", d)
		return ack, nil
	}
}

var paths = []struct {
	name string
	set  func(*publisher.Publisher)
}{
	{"own", func(*publisher.Publisher) {}},
	{"nats.go", publisher.ViaJetStream},
}

// TestPublishAsyncAnswers: an ack, a duplicate ack, a server error (over the
// stream's max_msg_size) and no stream on the subject come back as nats.go
// gives them, and Classify reads them the same.
func TestPublishAsyncAnswers(t *testing.T) {
	for _, path := range paths {
		t.Run(path.name, func(t *testing.T) {
			ns := natstest.Start(t)
			_, js := ns.Connect(t)
			if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "APP", Subjects: []string{"app.ok.>"}, MaxMsgSize: 1024}); err != nil {
				t.Fatal(err)
			}
			p := connect(t, ns.URL(), false)
			path.set(p)
			ready(t, p)

			e := event("ok.created")
			f, err := p.PublishAsync(e, 1)
			if err != nil {
				t.Fatal(err)
			}
			first, err := resolve(t, f, 5*time.Second)
			if err != nil || first.Stream != "APP" || first.StreamSeq != 1 || first.Duplicate {
				t.Fatalf("ack: %+v %v, want stream APP seq 1", first, err)
			}
			st, err := js.Stream(context.Background(), "APP")
			if err != nil {
				t.Fatal(err)
			}
			if m, err := st.GetMsg(context.Background(), first.StreamSeq); err != nil || m.Header.Get(jetstream.MsgIDHeader) != e.ID {
				t.Errorf("the message stored at the ack's sequence is not the one sent (Nats-Msg-Id %q, %v)", m.Header.Get(jetstream.MsgIDHeader), err)
			}
			f, _ = p.PublishAsync(e, 2)
			if dup, err := resolve(t, f, 5*time.Second); err != nil || !dup.Duplicate || dup.StreamSeq != 1 || dup.Stream != "APP" {
				t.Errorf("duplicate: %+v %v, want a duplicate ack of seq 1", dup, err)
			}

			big := event("ok.big")
			big.Payload = make([]byte, 2048)
			f, _ = p.PublishAsync(big, 1)
			_, err = resolve(t, f, 5*time.Second)
			var apiErr *jetstream.APIError
			if !errors.As(err, &apiErr) || apiErr.ErrorCode != jetstream.JSErrCodeStreamMessageExceedsMaximum || apiErr.Code != 400 || apiErr.Description == "" {
				t.Errorf("over max_msg_size: %v, want API error 10054", err)
			}
			if c := p.Classify(context.Background(), err); !errors.Is(c, publisher.ErrPermanent) || errors.Is(c, publisher.ErrUnknownOutcome) {
				t.Errorf("over max_msg_size classified %v, want permanent", c)
			}

			start := time.Now()
			f, _ = p.PublishAsync(event("nowhere"), 1) // app.nowhere: no stream
			_, err = resolve(t, f, 5*time.Second)
			if !errors.Is(err, jetstream.ErrNoStreamResponse) {
				t.Errorf("no stream: %v, want ErrNoStreamResponse", err)
			}
			if d := time.Since(start); d < 2*jetstream.DefaultPubRetryWait {
				t.Errorf("no stream answered after %s: not retried twice %s apart", d, jetstream.DefaultPubRetryWait)
			}
			if c := p.Classify(context.Background(), err); errors.Is(c, publisher.ErrUnavailable) || errors.Is(c, publisher.ErrPermanent) || errors.Is(c, publisher.ErrUnknownOutcome) || !errors.Is(c, outbox.ErrRejected) {
				t.Errorf("no stream, the stream answering: %v, want rejected: a failed attempt", c)
			}
			if n := p.PublishAsyncPending(); n != 0 {
				t.Errorf("%d publishes pending after every answer", n)
			}
		})
	}
}

// TestPublishAsyncRetriesNoResponders: a subject with no stream when it is
// published, and one a moment later (a leader election, say), is acked:
// the no-responders answer is retried, as nats.go does.
func TestPublishAsyncRetriesNoResponders(t *testing.T) {
	for _, path := range paths {
		t.Run(path.name, func(t *testing.T) {
			ns := natstest.Start(t)
			_, js := ns.Connect(t)
			if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "APP", Subjects: []string{"app.ok.>"}}); err != nil {
				t.Fatal(err)
			}
			p := connect(t, ns.URL(), false)
			path.set(p)
			ready(t, p)
			f, err := p.PublishAsync(event("late.created"), 1)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "LATE", Subjects: []string{"app.late.>"}}); err != nil {
				t.Fatal(err)
			}
			if ack, err := resolve(t, f, 5*time.Second); err != nil || ack.Stream != "LATE" {
				t.Errorf("published before its stream existed: %+v %v, want an ack from LATE", ack, err)
			}
		})
	}
}

// swallow subscribes on subject like a stream that never answers (a leader
// that cannot reply), or answers after delay with a real ack of stream
// "SLOW" when delay > 0. answered counts the answers sent and flushed to the
// server.
func swallow(t *testing.T, ns *natstest.Server, subject string, delay time.Duration) (answered func() int) {
	t.Helper()
	nc, _ := ns.Connect(t)
	var n atomic.Int32
	_, err := nc.Subscribe(subject, func(m *nats.Msg) {
		if delay > 0 {
			time.AfterFunc(delay, func() {
				if m.Respond([]byte(`{"stream":"SLOW","seq":1}`)) == nil && nc.Flush() == nil {
					n.Add(1)
				}
			})
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return func() int { return int(n.Load()) }
}

// TestPublishAsyncTimeout: an ack that does not come within PublishTimeout
// fails the future with jetstream.ErrAsyncPublishTimeout, of unknown
// outcome; one that comes after it changes nothing.
func TestPublishAsyncTimeout(t *testing.T) {
	for _, path := range paths {
		t.Run(path.name, func(t *testing.T) {
			ns := natstest.Start(t)
			_, js := ns.Connect(t)
			if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "APP", Subjects: []string{"app.ok.>"}}); err != nil {
				t.Fatal(err)
			}
			swallow(t, ns, "app.never.>", 0)
			lateAnswers := swallow(t, ns, "app.late.>", 600*time.Millisecond)
			p := connect(t, ns.URL(), false, func(c *publisher.Config) { c.PublishTimeout = 300 * time.Millisecond })
			path.set(p)
			ready(t, p)
			for _, typ := range []string{"never.created", "late.created"} {
				start := time.Now()
				f, err := p.PublishAsync(event(typ), 1)
				if err != nil {
					t.Fatal(err)
				}
				_, err = resolve(t, f, 5*time.Second)
				if !errors.Is(err, jetstream.ErrAsyncPublishTimeout) {
					t.Fatalf("%s: %v, want ErrAsyncPublishTimeout", typ, err)
				}
				if d := time.Since(start); d < 300*time.Millisecond || d > 3*time.Second {
					t.Errorf("%s: timed out after %s, want about 300ms", typ, d)
				}
				if c := p.Classify(context.Background(), err); !errors.Is(c, publisher.ErrUnknownOutcome) || errors.Is(c, publisher.ErrUnavailable) {
					t.Errorf("%s: a timeout with the server up classified %v, want unknown outcome, not unavailable", typ, c)
				}
			}
			// The late ack arrives now: it is dropped, and the publisher goes on.
			poll.Until(t, 5*time.Second, "the late ack sent", func() bool { return lateAnswers() == 1 })
			if err := p.Conn().Flush(); err != nil { // the late ack is in before the next publish
				t.Fatal(err)
			}
			f, _ := p.PublishAsync(event("ok.after"), 1)
			if ack, err := resolve(t, f, 5*time.Second); err != nil || ack.Stream != "APP" {
				t.Errorf("after a late ack: %+v %v", ack, err)
			}
			if n := p.PublishAsyncPending(); n != 0 {
				t.Errorf("%d publishes pending", n)
			}
		})
	}
}

// TestPublishAsyncMaxPending: past MaxPending publishes awaiting an ack,
// PublishAsync waits about 200ms for a slot and fails with
// ErrTooManyStalledMsgs, nothing sent; a slot freed meanwhile lets it
// through.
func TestPublishAsyncMaxPending(t *testing.T) {
	for _, path := range paths {
		t.Run(path.name, func(t *testing.T) {
			ns := natstest.Start(t)
			_, js := ns.Connect(t)
			if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "APP", Subjects: []string{"app.ok.>"}}); err != nil {
				t.Fatal(err)
			}
			swallow(t, ns, "app.never.>", 0)
			swallow(t, ns, "app.late.>", 100*time.Millisecond) // acks from "SLOW"
			p := connect(t, ns.URL(), false, func(c *publisher.Config) { c.MaxPending = 3; c.PublishTimeout = time.Minute })
			path.set(p)
			ready(t, p)
			for range 3 {
				if _, err := p.PublishAsync(event("never.x"), 1); err != nil {
					t.Fatal(err)
				}
			}
			start := time.Now()
			_, err := p.PublishAsync(event("ok.x"), 1)
			if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
				t.Fatalf("past max pending: %v, want ErrTooManyStalledMsgs", err)
			}
			if d := time.Since(start); d < 150*time.Millisecond {
				t.Errorf("refused after %s, want a wait of about 200ms", d)
			}
			if c := p.Classify(context.Background(), err); !errors.Is(c, publisher.ErrUnavailable) || errors.Is(c, publisher.ErrUnknownOutcome) {
				t.Errorf("stalled classified %v, want unavailable, nothing sent", c)
			}
			if n := p.PublishAsyncPending(); n != 3 {
				t.Errorf("%d pending, want 3", n)
			}
		})
	}
	for _, path := range paths {
		t.Run(path.name+"/a slot freed", func(t *testing.T) {
			ns := natstest.Start(t)
			swallow(t, ns, "app.late.>", 100*time.Millisecond)
			p := connect(t, ns.URL(), false, func(c *publisher.Config) { c.MaxPending = 1; c.PublishTimeout = time.Minute })
			path.set(p)
			// Ready would need a stream: the slow subscriber stands for it.
			poll.Until(t, 5*time.Second, "connected", p.Connected)
			f1, err := p.PublishAsync(event("late.a"), 1)
			if err != nil {
				t.Fatal(err)
			}
			f2, err := p.PublishAsync(event("late.b"), 1) // waits for f1's ack, 100ms < 200ms
			if err != nil {
				t.Fatalf("a slot freed within the stall wait: %v", err)
			}
			for _, f := range []<-chan outbox.PublishResult{f1, f2} {
				if ack, err := resolve(t, f, 5*time.Second); err != nil || ack.Stream != "SLOW" {
					t.Errorf("%+v %v", ack, err)
				}
			}
		})
	}
}

// TestPublishAsyncServerShutdown: with thousands of acks pending the server
// stops; every publish is answered, acked or failed with
// nats.ErrDisconnected (unavailable, outcome unknown), none left to its
// timeout.
func TestPublishAsyncServerShutdown(t *testing.T) {
	for _, path := range paths {
		t.Run(path.name, func(t *testing.T) {
			ns := natstest.Start(t)
			p := connect(t, ns.URL(), true, func(c *publisher.Config) { c.MaxPending = 20000; c.PublishTimeout = 20 * time.Second })
			path.set(p)
			ready(t, p)
			const n = 20000
			futures := make([]<-chan outbox.PublishResult, 0, n)
			for range n {
				f, err := p.PublishAsync(event("load.created"), 1)
				if err != nil {
					t.Fatal(err)
				}
				futures = append(futures, f)
			}
			ns.Stop()
			acked, disconnected := 0, 0
			for _, f := range futures {
				_, err := resolve(t, f, 10*time.Second)
				switch {
				case err == nil:
					acked++
				case errors.Is(err, nats.ErrDisconnected):
					disconnected++
					if c := p.Classify(context.Background(), err); !errors.Is(c, publisher.ErrUnavailable) || !errors.Is(c, publisher.ErrUnknownOutcome) {
						t.Fatalf("disconnected classified %v", c)
					}
				default:
					t.Fatalf("publish failed with %v, want an ack or ErrDisconnected", err)
				}
			}
			t.Logf("%d published: %d acked, %d failed disconnected", len(futures), acked, disconnected)
			if disconnected == 0 {
				t.Error("no publish failed with the server gone")
			}
			if n := p.PublishAsyncPending(); n != 0 {
				t.Errorf("%d pending after the disconnect", n)
			}
		})
	}
}

// TestPublishAsyncClose: closing the publisher with acks pending fails them
// at once with nats.ErrConnectionClosed, where nats.go's futures wait for
// their timeout (they fail then with ErrAsyncPublishTimeout); both are
// classified unavailable with an unknown outcome. Through nats.go's path
// (ViaJetStream) the publisher answers them at Close too.
func TestPublishAsyncClose(t *testing.T) {
	for _, path := range paths {
		t.Run(path.name, func(t *testing.T) {
			ns := natstest.Start(t)
			_, js := ns.Connect(t)
			if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "APP", Subjects: []string{"app.ok.>"}}); err != nil {
				t.Fatal(err)
			}
			swallow(t, ns, "app.never.>", 0)
			p := connect(t, ns.URL(), false, func(c *publisher.Config) { c.PublishTimeout = time.Minute })
			path.set(p)
			ready(t, p)
			f, err := p.PublishAsync(event("never.x"), 1)
			if err != nil {
				t.Fatal(err)
			}
			p.Close()
			if _, err := resolve(t, f, time.Second); !errors.Is(err, nats.ErrConnectionClosed) {
				t.Errorf("pending at close: %v, want nats.ErrConnectionClosed", err)
			}
			if c := p.Classify(context.Background(), nats.ErrConnectionClosed); !errors.Is(c, publisher.ErrUnavailable) || !errors.Is(c, publisher.ErrUnknownOutcome) {
				t.Errorf("closed classified %v", c)
			}
			if _, err := p.PublishAsync(event("ok.x"), 1); !errors.Is(err, nats.ErrConnectionClosed) {
				t.Errorf("publish after close: %v", err)
			}
		})
	}
}
