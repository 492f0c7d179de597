package publisher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// StreamConfig describes the stream the relay publishes to.
type StreamConfig struct {
	// Manage: create or update the stream at connect (and after every
	// reconnect). When false the stream is used as found, never changed.
	Manage          bool
	Name            string
	Replicas        int           // default 1
	Storage         string        // "file" (default) or "memory"
	DuplicateWindow time.Duration // default 2m
}

// Auth holds NATS credentials; at most one of user/password, token, nkey
// seed file and creds file is used, with TLS on top.
type Auth struct {
	User, Password string
	Token          string
	NKeySeedFile   string
	CredsFile      string
	TLSCAFile      string
	TLSCertFile    string
	TLSKeyFile     string
}

// Config is what Connect needs.
type Config struct {
	URL           string
	Name          string // connection name shown by the server
	SubjectPrefix string
	Source        string // ce-source (default outbox.DefaultSource)
	Stream        StreamConfig
	Auth          Auth
	// Retry is the relay's default backoff, carried in the headers of events
	// without a policy of their own so subscribers back off the same way.
	Retry *outbox.RetryPolicy
	// PublishTimeout bounds the wait for one ack (default 5s).
	PublishTimeout time.Duration
	// MaxPending is the most publishes awaiting an ack (default 4096).
	MaxPending int
	// ReconnectWait is the pause between reconnect attempts (default 250ms).
	ReconnectWait time.Duration
	Logger        *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Stream.Replicas == 0 {
		c.Stream.Replicas = 1
	}
	if c.Stream.Storage == "" {
		c.Stream.Storage = "file"
	}
	if c.Stream.DuplicateWindow == 0 {
		c.Stream.DuplicateWindow = 2 * time.Minute
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = 5 * time.Second
	}
	if c.MaxPending == 0 {
		c.MaxPending = 4096
	}
	if c.ReconnectWait == 0 {
		c.ReconnectWait = 250 * time.Millisecond
	}
	if c.Name == "" {
		c.Name = "fitiqcore-outbox-relay"
	}
	if c.Source == "" {
		c.Source = outbox.DefaultSource
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate checks the config, naming the bad field.
func (c *Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrInvalidConfig, field, fmt.Sprintf(format, args...))
	}
	switch {
	case c.URL == "":
		return bad("nats.url", "required")
	case c.SubjectPrefix == "" || outbox.ValidateType(c.SubjectPrefix) != nil:
		return bad("stream.subject_prefix", "%q must be dot-separated tokens of [A-Za-z0-9_-]", c.SubjectPrefix)
	case c.Stream.Name == "" || strings.ContainsAny(c.Stream.Name, ". *>\t\r\n/\\"):
		return bad("stream.name", "%q must be non-empty without spaces, dots, wildcards or slashes", c.Stream.Name)
	case c.Stream.Replicas < 1 || c.Stream.Replicas > 5:
		return bad("stream.replicas", "must be 1..5, got %d", c.Stream.Replicas)
	case c.Stream.Storage != "file" && c.Stream.Storage != "memory":
		return bad("stream.storage", "must be file or memory, got %q", c.Stream.Storage)
	case c.Stream.DuplicateWindow < 100*time.Millisecond:
		return bad("stream.duplicate_window", "must be at least 100ms, got %s", c.Stream.DuplicateWindow)
	case c.PublishTimeout <= 0:
		return bad("nats.publish_timeout", "must be positive")
	case c.MaxPending < 1:
		return bad("relay.max_in_flight", "must be at least 1")
	}
	// ce-source goes into every message's headers: outbox.HeaderAllowance
	// counts on it being at most outbox.MaxSourceLen printable bytes.
	if err := outbox.ValidateSource(c.Source); err != nil {
		return bad("stream.source", "%v", err)
	}
	return nil
}

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
	// compare the two).
	viaJetStream bool

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
		enc:   outbox.NewEncoder(cfg.SubjectPrefix, cfg.Source, cfg.Retry),
		async: newAsyncPublisher(nil, cfg.MaxPending, cfg.PublishTimeout),
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
			return nil, fmt.Errorf("%w: nats.nkey_seed_file: %v", ErrInvalidConfig, err)
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

// Close closes the connection. Pending futures fail with
// nats.ErrConnectionClosed.
func (p *Publisher) Close() {
	p.nc.Close()
	p.async.close()
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

// Subject is the subject an event of type t is published on.
func (p *Publisher) Subject(t string) string { return outbox.Subject(p.cfg.SubjectPrefix, t) }

// PublishAsync sends e without waiting for its ack; attempt is the 1-based
// number of this attempt. The future resolves with JetStream's ack or an
// error; an error returned here means nothing was sent.
func (p *Publisher) PublishAsync(e *outbox.Event, attempt int) (jetstream.PubAckFuture, error) {
	m := p.enc.Message(e, attempt)
	if p.viaJetStream {
		return p.js.PublishMsgAsync(m)
	}
	return p.async.publish(m)
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

// Classify wraps err in ErrUnavailable or ErrPermanent when that is what it
// means (see the package doc), and returns it unchanged otherwise. A "no
// response from stream" is probed: when JetStream or the stream does not
// answer either, the broker is unavailable; when the stream answers, no
// stream covers the subject and the attempt counts.
//
// It also wraps ErrUnknownOutcome when err is not an answer to the publish
// and the message may have reached the stream: a timeout, a connection lost
// with the ack pending, an unreadable ack. Errors that mean the message was
// never sent (back-pressure, a closed or reconnecting connection refusing the
// publish, a payload over max_payload) and the server's answers (a JetStream
// API error, no responders) say the stream does not hold it.
func (p *Publisher) Classify(ctx context.Context, err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) || errors.Is(err, ErrPermanent) {
		return err
	}
	unavailable := func(err error) error { p.markUnready(); return fmt.Errorf("%w: %w", ErrUnavailable, err) }
	unknown := func(err error) error { return fmt.Errorf("%w: %w", ErrUnknownOutcome, err) }
	switch {
	case errors.Is(err, nats.ErrDisconnected), errors.Is(err, nats.ErrConnectionClosed):
		// A pending future fails so on a disconnect even for a message the
		// server stored.
		return unavailable(unknown(err))
	case errors.Is(err, nats.ErrConnectionReconnecting), errors.Is(err, nats.ErrConnectionDraining),
		errors.Is(err, nats.ErrReconnectBufExceeded), errors.Is(err, jetstream.ErrTooManyStalledMsgs),
		errors.Is(err, nats.ErrNoServers), errors.Is(err, nats.ErrInvalidConnection):
		return unavailable(err)
	case errors.Is(err, nats.ErrMaxPayload):
		return fmt.Errorf("%w: %w", ErrPermanent, err)
	case errors.Is(err, jetstream.ErrAsyncPublishTimeout), errors.Is(err, nats.ErrTimeout),
		errors.Is(err, context.DeadlineExceeded):
		// A cut network leaves the connection "connected" until pings fail:
		// a timeout counts as an attempt only when the server answers a ping.
		if !p.nc.IsConnected() || p.pingProbe() != nil {
			return unavailable(unknown(err))
		}
		return unknown(err)
	case errors.Is(err, jetstream.ErrInvalidJSAck), errors.Is(err, context.Canceled):
		// An ack that cannot be read, a wait given up: sent all the same.
		return unknown(err)
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders):
		if !p.nc.IsConnected() || p.probe(ctx) != nil {
			return unavailable(err)
		}
		return err
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case 10054, 10097, 10060, 10109: // too large, wrong stream, sealed
			return fmt.Errorf("%w: %w", ErrPermanent, err)
		case 10008, 10158, 10163, 10023, 10077, 10076, 10039: // unavailable, in process, insufficient resources, store failed, JetStream off
			if apiErr.ErrorCode == 10023 || apiErr.ErrorCode == 10077 {
				p.log.Error("jetstream cannot store: check the server's disk and limits", "err", err)
			}
			return unavailable(err)
		}
		if apiErr.Code == 503 {
			return unavailable(err)
		}
	}
	return err
}

// pingProbe asks the server for a round trip (at most every 250ms, shared
// by a burst of timeouts).
func (p *Publisher) pingProbe() error {
	p.mu.Lock()
	if time.Since(p.lastPing) < 250*time.Millisecond {
		err := p.pingErr
		p.mu.Unlock()
		return err
	}
	p.mu.Unlock()
	err := p.nc.FlushTimeout(time.Second)
	p.mu.Lock()
	p.lastPing, p.pingErr = time.Now(), err
	p.mu.Unlock()
	return err
}

func (p *Publisher) markUnready() {
	p.mu.Lock()
	p.ready = false
	p.mu.Unlock()
}

// probe asks for the stream's info, at most every 250ms.
func (p *Publisher) probe(ctx context.Context) error {
	p.mu.Lock()
	if time.Since(p.lastProbe) < 250*time.Millisecond {
		err := p.probeErr
		p.mu.Unlock()
		return err
	}
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err := p.js.Stream(ctx, p.cfg.Stream.Name)
	p.mu.Lock()
	p.lastProbe, p.probeErr = time.Now(), err
	p.mu.Unlock()
	return err
}
