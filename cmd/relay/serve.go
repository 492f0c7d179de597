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

	url := cfg.NATS.URL
	if url == "" {
		ns, u, err := startEmbedded(cfg, log)
		if err != nil {
			return err
		}
		defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
		url = u
	}
	pc := cfg.publisherConfig(url)
	pc.Logger = log
	pub, err := publisher.Connect(pc)
	if err != nil {
		return err
	}
	defer pub.Close()

	tp, err := newTracerProvider(cfg.Tracing, log)
	if err != nil {
		return err
	}
	if tp != nil {
		defer shutdownTracing(tp, log)
	}
	m := metrics.New(metrics.Options{Store: store, Connected: pub.Connected})
	rc := cfg.relayConfig()
	rc.Logger, rc.Observer = log, m.Observe
	if tp != nil { // an untyped nil would not be "off"
		rc.TracerProvider = tp
	}
	rl, err := relay.New(store, pub, rc)
	if err != nil {
		return err
	}
	ho := cfg.httpOptions()
	ho.Ready = func(context.Context) error {
		if !pub.Connected() {
			return errors.New("nats not connected")
		}
		return nil
	}
	ho.Logger, ho.Broker, ho.Metrics, ho.Enqueued = log, brokerStatus{pub: pub}, m.Handler(), m.Enqueued
	if cfg.schemas != nil { // none unless a type has a schema
		ho.Schemas = cfg.schemas
	}
	api := httpapi.New(store, ho)
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
