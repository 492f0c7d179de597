// Package natstest runs real in-process NATS JetStream servers for tests.
package natstest

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Server is an in-process JetStream server that can be stopped and started
// again on the same port with the same store.
type Server struct {
	tb   testing.TB
	opts server.Options
	*server.Server
}

// Start runs a JetStream server on a free loopback port, storing under a
// temporary directory; it is shut down at the end of the test.
func Start(tb testing.TB) *Server {
	tb.Helper()
	s := &Server{tb: tb, opts: server.Options{
		Host:       "127.0.0.1",
		Port:       FreePort(tb),
		JetStream:  true,
		StoreDir:   tb.TempDir(),
		NoSigs:     true,
		NoLog:      true,
		MaxPayload: 2 << 20,
	}}
	s.start()
	tb.Cleanup(s.Stop)
	return s
}

func (s *Server) start() {
	s.tb.Helper()
	opts := s.opts
	ns, err := server.NewServer(&opts)
	if err != nil {
		s.tb.Fatalf("natstest: %v", err)
	}
	ns.Start() // it does not block
	if !ns.ReadyForConnections(10 * time.Second) {
		s.tb.Fatalf("natstest: server not ready on port %d", s.opts.Port)
	}
	s.Server = ns
}

// Stop shuts the server down (idempotent).
func (s *Server) Stop() {
	if s.Server != nil {
		s.Server.Shutdown()
		s.Server.WaitForShutdown()
		s.Server = nil
	}
}

// Restart starts the server again on the same port with the same store.
func (s *Server) Restart() {
	s.tb.Helper()
	s.Stop()
	s.start()
}

// URL is the client URL, stable across restarts.
func (s *Server) URL() string {
	return "nats://" + net.JoinHostPort(s.opts.Host, strconv.Itoa(s.opts.Port))
}

// Connect returns a client connection closed at the end of the test.
func (s *Server) Connect(tb testing.TB) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	nc, err := nats.Connect(s.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		tb.Fatalf("natstest: connect: %v", err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatalf("natstest: %v", err)
	}
	return nc, js
}

// FreePort returns a TCP port free on 127.0.0.1 now.
func FreePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("natstest: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Read returns every event in the stream, in stream order, decoded.
func Read(tb testing.TB, js jetstream.JetStream, stream string) []*outbox.Event {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		tb.Fatalf("natstest: stream %s: %v", stream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		tb.Fatalf("natstest: stream info: %v", err)
	}
	want := info.State.Msgs
	var out []*outbox.Event
	if want == 0 {
		return out
	}
	c, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		tb.Fatalf("natstest: ordered consumer: %v", err)
	}
	for uint64(len(out)) < want {
		batch, err := c.Fetch(int(min(want-uint64(len(out)), 1000)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			tb.Fatalf("natstest: fetch: %v", err)
		}
		n := 0
		for m := range batch.Messages() {
			e, err := outbox.FromMessage(m.Headers(), m.Data())
			if err != nil {
				tb.Fatalf("natstest: decode message on %s: %v", m.Subject(), err)
			}
			out = append(out, e)
			n++
		}
		if batch.Error() != nil {
			tb.Fatalf("natstest: fetch: %v", batch.Error())
		}
		if n == 0 {
			tb.Fatalf("natstest: read %d of %d messages", len(out), want)
		}
	}
	return out
}
