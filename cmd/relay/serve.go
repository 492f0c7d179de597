package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/fitiqcore/outbox/boltstore"
	"github.com/fitiqcore/outbox/httpapi"
	"github.com/fitiqcore/outbox/metrics"
	"github.com/fitiqcore/outbox/publisher"
	"github.com/fitiqcore/outbox/relay"
	"github.com/lmittmann/tint"
)

func serve(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "config file (YAML); see config.example.yaml")
	if err := fs.Parse(args); err != nil {
		return exitCode(2)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve: unexpected argument %q", fs.Arg(0))
	}
	cfg, err := loadConfig(*configPath)
	if err != nil {
		return err
	}
	if err := checkExposure(cfg.HTTP); err != nil {
		return err
	}
	if err := checkEmbeddedExposure(cfg.NATS); err != nil {
		return err
	}
	tlsConfig, err := loadServerTLS(cfg.HTTP.TLS)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, stderr)

	store, err := boltstore.Open(cfg.Store.Path, storeOptions(cfg))
	if err != nil {
		if isDamaged(err) {
			return damagedStore(cfg.Store.Path, *configPath, err)
		}
		return err
	}
	defer store.Close()

	url, auth := cfg.NATS.URL, natsAuth(cfg.NATS)
	if url == "" {
		ns, u, err := startEmbedded(cfg, log)
		if err != nil {
			return err
		}
		defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
		url = u
	}
	retry := cfg.retryPolicy()
	pub, err := publisher.Connect(publisher.Config{
		URL:           url,
		SubjectPrefix: cfg.Stream.SubjectPrefix,
		Source:        cfg.Stream.Source,
		Stream: publisher.StreamConfig{
			Manage: *cfg.Stream.Manage, Name: cfg.Stream.Name, Replicas: cfg.Stream.Replicas,
			Storage: cfg.Stream.Storage, DuplicateWindow: cfg.Stream.DuplicateWindow,
		},
		Auth:           auth,
		Retry:          &retry,
		PublishTimeout: cfg.NATS.PublishTimeout,
		MaxPending:     cfg.Relay.MaxInFlight,
		Logger:         log,
	})
	if err != nil {
		return err
	}
	defer pub.Close()

	m := metrics.New(metrics.Options{Store: store, Connected: pub.Connected})
	rl, err := relay.New(store, pub, relay.Config{
		BatchSize:        cfg.Relay.BatchSize,
		MaxInFlight:      cfg.Relay.MaxInFlight,
		Retry:            retry,
		Jitter:           *cfg.Retry.Jitter,
		DrainTimeout:     cfg.Relay.DrainTimeout,
		DisableReconcile: !*cfg.Relay.Reconcile,
		DuplicateWindow:  cfg.Stream.DuplicateWindow,
		Logger:           log,
		Observer:         m.Observe,
	})
	if err != nil {
		return err
	}
	api := httpapi.New(store, httpapi.Options{
		MaxBodyBytes:         cfg.HTTP.MaxBodyBytes,
		MaxInflightBodyBytes: cfg.HTTP.MaxInflightBodyBytes,
		MaxConcurrent:        cfg.HTTP.MaxConcurrentRequests,
		Ready: func(context.Context) error {
			if !pub.Connected() {
				return errors.New("nats not connected")
			}
			return nil
		},
		Logger:       log,
		Token:        cfg.HTTP.Token,
		AllowedTypes: allowedTypes(cfg.EventTypes),
		Broker:       brokerStatus{pub: pub},
		Metrics:      m.Handler(),
		Enqueued:     m.Enqueued,
	})
	ln, err := net.Listen("tcp", cfg.HTTP.Addr)
	if err != nil {
		return fmt.Errorf("http.addr: %w", err)
	}
	srv := httpServer(cfg.HTTP, api, tlsConfig, log)
	log.Info("relay serving", "http", ln.Addr().String(), "tls", tlsConfig != nil, "nats", url, "store", cfg.Store.Path, "stream", cfg.Stream.Name)

	return services{
		http: srv, listener: ln, tls: tlsConfig != nil,
		relay: rl,
		retention: func(ctx context.Context) error {
			return store.RunRetention(ctx, cfg.Retention.Interval)
		},
		log: log,
	}.run(ctx)
}

// verifyType is the type of the probe event of relay verify; it is always
// allowed, whatever event_types says.
const verifyType = "outbox.verify"

// checkExposure refuses to serve the API on a non-loopback address without
// a token: anyone reaching it could read, retry and delete events.
func checkExposure(c HTTPConfig) error {
	if c.Token != "" {
		return nil
	}
	host, _, _ := net.SplitHostPort(c.Addr)
	if isLoopback(host) {
		return nil
	}
	// TLS without a token is not auth: it hides the traffic, not the API.
	return badKey("http.token", "required when http.addr %q is not a loopback address (anyone who reaches it could read and delete events): set http.token, or listen on 127.0.0.1", c.Addr)
}

func newLogger(c LogConfig, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
	}
	return slog.New(tint.NewHandler(w, &tint.Options{Level: level, TimeFormat: time.TimeOnly, NoColor: c.Format == "text" || !isTerminal(w)}))
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
