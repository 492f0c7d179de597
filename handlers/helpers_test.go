package handlers_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/fitiqcore/outbox/internal/poll"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/handlers"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	prefix    = "fitiq.events"
	dlqPrefix = "dlq.fitiq.events"
	stream    = "EVENTS"
	dlqStream = "DLQ"
)

// quietLogger keeps the Router's warnings out of the test output unless -v.
func quietLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return slog.New(slog.DiscardHandler)
}

// env is a JetStream server with the event stream and, unless noDLQ, the
// dead-letter stream.
type env struct {
	t  testing.TB
	nc *nats.Conn
	js jetstream.JetStream
}

func newEnv(t testing.TB, noDLQ bool) *env {
	t.Helper()
	return newEnvWith(t, noDLQ, nil)
}

// newEnvWith is newEnv on a server whose options opts may change (nil for
// the defaults).
func newEnvWith(t testing.TB, noDLQ bool, opts func(*server.Options)) *env {
	t.Helper()
	so := &server.Options{JetStream: true, StoreDir: t.TempDir(), Port: -1, NoLog: true, NoSigs: true}
	if opts != nil {
		opts(so)
	}
	s, err := server.NewServer(so)
	if err != nil {
		t.Fatal(err)
	}
	s.Start() // it does not block
	if !s.ReadyForConnections(5 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		nc.Close()
		s.Shutdown()
		s.WaitForShutdown()
	})
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{prefix + ".>"}}); err != nil {
		t.Fatal(err)
	}
	if !noDLQ {
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: dlqStream, Subjects: []string{dlqPrefix + ".>"}}); err != nil {
			t.Fatal(err)
		}
	}
	return &env{t: t, nc: nc, js: js}
}

// event returns a prepared event (UUIDv7 id, defaults filled).
func event(t testing.TB, typ, entity string, entitySeq uint64) *outbox.Event {
	t.Helper()
	e := &outbox.Event{Type: typ, EntityID: entity, EntitySeq: entitySeq, Payload: []byte(`{"n":1}`), ContentType: outbox.ContentTypeJSON}
	if err := e.Prepare(outbox.Options{}); err != nil {
		t.Fatal(err)
	}
	return e
}

// publish publishes e exactly as the relay does.
func (v *env) publish(e *outbox.Event) {
	v.t.Helper()
	if _, err := v.js.PublishMsg(context.Background(), e.Message(prefix, "", 1, nil)); err != nil {
		v.t.Fatal(err)
	}
}

func (v *env) router(durable string, opts ...handlers.Option) *handlers.Router {
	v.t.Helper()
	opts = append([]handlers.Option{handlers.WithLogger(quietLogger())}, opts...)
	r, err := handlers.NewRouter(v.js, stream, durable, opts...)
	if err != nil {
		v.t.Fatal(err)
	}
	return r
}

// start runs r until the returned stop is called (or the test ends) and
// returns Run's error from stop. It returns once the durable consumer exists.
func (v *env) start(r *handlers.Router, durable string) (stop func() error) {
	t := v.t
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				err = errors.New("Run did not return 30s after its ctx ended")
			}
		})
		return err
	}
	t.Cleanup(func() {
		if err := stop(); err != nil && !errors.Is(err, handlers.ErrShutdownTimeout) {
			t.Errorf("Run: %v", err)
		}
	})
	poll.Until(t, 5*time.Second, "consumer "+durable+" created", func() bool {
		select {
		case err := <-done:
			t.Fatalf("Run: %v", err)
		default:
		}
		_, err := v.js.Consumer(context.Background(), stream, durable)
		return err == nil
	})
	return stop
}

func (v *env) consumerInfo(durable string) *jetstream.ConsumerInfo {
	v.t.Helper()
	c, err := v.js.Consumer(context.Background(), stream, durable)
	if err != nil {
		v.t.Fatal(err)
	}
	info, err := c.Info(context.Background())
	if err != nil {
		v.t.Fatal(err)
	}
	return info
}

// settled waits until the consumer has nothing pending and nothing unacked.
func (v *env) settled(durable string, within time.Duration) {
	v.t.Helper()
	var info *jetstream.ConsumerInfo
	poll.Until(v.t, within, "consumer settled (nothing pending, nothing unacked)", func() bool {
		info = v.consumerInfo(durable)
		return info.NumPending == 0 && info.NumAckPending == 0
	})
}

// deadLetters returns the messages in the dead-letter stream.
func (v *env) deadLetters() []*jetstream.RawStreamMsg {
	v.t.Helper()
	ctx := context.Background()
	st, err := v.js.Stream(ctx, dlqStream)
	if err != nil {
		v.t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		v.t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			v.t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

func (v *env) dlqCount() uint64 {
	v.t.Helper()
	st, err := v.js.Stream(context.Background(), dlqStream)
	if err != nil {
		v.t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		v.t.Fatal(err)
	}
	return info.State.Msgs
}

// calls records handler invocations.
type calls struct {
	mu    sync.Mutex
	times []time.Time
	ids   []string
}

func (c *calls) add(e *outbox.Event) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.times = append(c.times, time.Now())
	c.ids = append(c.ids, e.ID)
	return len(c.times)
}

func (c *calls) n() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.times)
}

func (c *calls) at() []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Time(nil), c.times...)
}

var errBoom = fmt.Errorf("boom: the backend said 503")

func jetstreamConfig(name string, subjects ...string) jetstream.StreamConfig {
	return jetstream.StreamConfig{Name: name, Subjects: subjects}
}

func jetstreamNew(nc *nats.Conn) (jetstream.JetStream, error) { return jetstream.New(nc) }
