package publisher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Publisher publishes events to JetStream. It is safe for concurrent use.
type Publisher struct {
	cfg   Config
	nc    *nats.Conn
	js    jetstream.JetStream
	enc   *outbox.Encoder
	async *asyncPublisher
	log   *slog.Logger
	// viaJetStream sends PublishAsync through nats.go's PublishMsgAsync
	// instead of the publisher's own async path (tests and benchmarks
	// compare the two). A goroutine per publish, of adapters, turns its
	// future into the answer PublishAsync gives; Close ends and waits for
	// them.
	viaJetStream bool
	adapters     sync.WaitGroup
	closing      chan struct{}
	closeOnce    sync.Once

	// fetchWait is how long the i-th fetch of a read-back waits for
	// messages (1s; tests shorten some to stand for a slow server).
	fetchWait func(i int) time.Duration

	mu        sync.Mutex
	readyConn uint64 // reconnect count at which the stream was last ensured
	ready     bool
	lastProbe time.Time
	probeErr  error
	lastPing  time.Time
	pingErr   error
}

// Connect dials NATS and returns at once: the connection is (re)established in
// the background, forever, so a relay started while NATS is down keeps
// accepting events and publishes them once it is up. Ready waits for it.
func Connect(cfg Config) (*Publisher, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Publisher{
		cfg: cfg, log: cfg.Logger, fetchWait: func(int) time.Duration { return time.Second },
		closing: make(chan struct{}),
		enc:     outbox.NewEncoder(cfg.SubjectPrefix, cfg.Source, cfg.Retry),
		async:   newAsyncPublisher(nil, cfg.MaxPending, cfg.PublishTimeout),
	}
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(cfg.ReconnectWait),
		nats.RetryOnFailedConnect(true),
		nats.IgnoreAuthErrorAbort(),
		// Notice a silently cut network in seconds, not nats.go's 2 minutes:
		// until then publishes time out on a "connected" connection.
		nats.PingInterval(5 * time.Second),
		nats.MaxPingsOutstanding(2),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			// Pending acks will not come: fail them, the outcome unknown.
			if err == nil { // we closed it
				p.async.failAll(nats.ErrConnectionClosed)
				return
			}
			p.log.Warn("nats disconnected", "err", err)
			p.async.failAll(nats.ErrDisconnected)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			p.log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted())
		}),
	}
	a := cfg.Auth
	switch {
	case a.CredsFile != "":
		opts = append(opts, nats.UserCredentials(a.CredsFile))
	case a.NKeySeedFile != "":
		o, err := nats.NkeyOptionFromSeed(a.NKeySeedFile)
		if err != nil {
			return nil, &outbox.FieldError{Kind: ErrInvalidConfig, Field: "Auth.NKeySeedFile", Err: err}
		}
		opts = append(opts, o)
	case a.Token != "":
		opts = append(opts, nats.Token(a.Token))
	case a.User != "":
		opts = append(opts, nats.UserInfo(a.User, a.Password))
	}
	if a.TLSCAFile != "" {
		opts = append(opts, nats.RootCAs(a.TLSCAFile))
	}
	if a.TLSCertFile != "" || a.TLSKeyFile != "" {
		opts = append(opts, nats.ClientCert(a.TLSCertFile, a.TLSKeyFile))
	}
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("publisher: connect %s: %w", cfg.URL, err)
	}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(cfg.MaxPending),
		jetstream.WithPublishAsyncTimeout(cfg.PublishTimeout),
	)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("publisher: jetstream: %w", err)
	}
	p.nc, p.js, p.async.nc = nc, js, nc
	p.async.start()
	return p, nil
}

// Close closes the connection. Publishes awaiting their answer get
// nats.ErrConnectionClosed. It may be called more than once.
func (p *Publisher) Close() {
	p.nc.Close()
	p.async.close()
	p.closeOnce.Do(func() { close(p.closing) })
	p.adapters.Wait()
}

// Conn is the NATS connection, JetStream its JetStream context.
func (p *Publisher) Conn() *nats.Conn { return p.nc }

// JetStream is the publisher's JetStream context.
func (p *Publisher) JetStream() jetstream.JetStream { return p.js }

// Config returns the config in use, defaults filled.
func (p *Publisher) Config() Config { return p.cfg }

// Connected reports whether the connection is up now.
func (p *Publisher) Connected() bool { return p.nc.IsConnected() }

// Ready waits until the connection is up and the stream answers, creating or
// updating it first when the publisher manages it. It is called before the
// first publish and after every outage; it returns early only when ctx ends.
func (p *Publisher) Ready(ctx context.Context) error {
	delay := 50 * time.Millisecond
	for {
		err := p.checkReady(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		p.log.Debug("waiting for nats", "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, time.Second)
	}
}

func (p *Publisher) checkReady(ctx context.Context) error {
	if !p.nc.IsConnected() {
		return fmt.Errorf("%w: not connected to %s", ErrUnavailable, p.cfg.URL)
	}
	reconnects := p.nc.Stats().Reconnects
	p.mu.Lock()
	if p.ready && p.readyConn == reconnects {
		p.mu.Unlock()
		return nil
	}
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := p.ensureStream(ctx); err != nil {
		return err
	}
	p.mu.Lock()
	p.ready, p.readyConn = true, reconnects
	p.mu.Unlock()
	return nil
}

// StreamConfig is the JetStream config the publisher manages.
func (p *Publisher) StreamConfig() jetstream.StreamConfig {
	s := p.cfg.Stream
	storage := jetstream.FileStorage
	if s.Storage == "memory" {
		storage = jetstream.MemoryStorage
	}
	return jetstream.StreamConfig{
		Name:        s.Name,
		Subjects:    []string{p.cfg.SubjectPrefix + ".>"},
		Replicas:    s.Replicas,
		Storage:     storage,
		Duplicates:  s.DuplicateWindow,
		Description: "FitIQCore Outbox events",
	}
}

func (p *Publisher) ensureStream(ctx context.Context) error {
	if !p.cfg.Stream.Manage {
		if _, err := p.js.Stream(ctx, p.cfg.Stream.Name); err != nil {
			if errors.Is(err, jetstream.ErrStreamNotFound) {
				p.log.Error("stream not found and stream.manage is false", "stream", p.cfg.Stream.Name)
			}
			return fmt.Errorf("%w: stream %s: %v", ErrUnavailable, p.cfg.Stream.Name, err)
		}
		return nil
	}
	sc := p.StreamConfig()
	if _, err := p.js.CreateOrUpdateStream(ctx, sc); err != nil {
		return fmt.Errorf("%w: ensure stream %s: %v", ErrUnavailable, sc.Name, err)
	}
	return nil
}

// PublishAsync sends e without waiting for its ack; attempt is the 1-based
// number of this attempt. The channel receives exactly one answer:
// JetStream's ack, or the error that ended the wait for it (Classify says
// what it means). An error returned here means nothing was sent. The
// channel is buffered: an answer nobody reads holds nothing up.
func (p *Publisher) PublishAsync(e *outbox.Event, attempt int) (<-chan outbox.PublishResult, error) {
	m := p.enc.Message(e, attempt)
	if p.viaJetStream {
		f, err := p.js.PublishMsgAsync(m)
		if err != nil {
			return nil, err
		}
		return p.adapt(f), nil
	}
	return p.async.publish(m)
}

// adapt turns a future of nats.go's into the answer PublishAsync gives. At
// Close a future not yet resolved is answered nats.ErrConnectionClosed, as
// the publisher's own path answers it (nats.go's would wait for its
// timeout).
func (p *Publisher) adapt(f jetstream.PubAckFuture) <-chan outbox.PublishResult {
	done := make(chan outbox.PublishResult, 1)
	p.adapters.Go(func() {
		select {
		case ack := <-f.Ok():
			done <- outbox.PublishResult{Stream: ack.Stream, StreamSeq: ack.Sequence, Duplicate: ack.Duplicate}
		case err := <-f.Err():
			done <- outbox.PublishResult{Err: err}
		case <-p.closing:
			done <- outbox.PublishResult{Err: nats.ErrConnectionClosed}
		}
	})
	return done
}

// PublishAsyncPending is the number of PublishAsync calls awaiting their ack.
func (p *Publisher) PublishAsyncPending() int {
	if p.viaJetStream {
		return p.js.PublishAsyncPending()
	}
	return p.async.pendingCount()
}

// Publish sends e and waits for its ack (the slow path: tools and probes).
func (p *Publisher) Publish(ctx context.Context, e *outbox.Event, attempt int) (*jetstream.PubAck, error) {
	return p.js.PublishMsg(ctx, p.enc.Message(e, attempt))
}

// MaxPayload is the server's max_payload, or 0 while never connected.
func (p *Publisher) MaxPayload() int64 { return p.nc.MaxPayload() }
