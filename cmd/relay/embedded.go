package main

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// startEmbedded runs the default NATS JetStream server inside the relay's
// process, storing under nats.store_dir and listening on nats.embedded_addr
// so that subscribers can connect to it.
func startEmbedded(cfg *Config, log *slog.Logger) (*server.Server, error) {
	host, p, _ := net.SplitHostPort(cfg.NATS.EmbeddedAddr)
	port, err := strconv.Atoi(p)
	if err != nil {
		return nil, badKey("nats.embedded_addr", "bad port %q", p)
	}
	ns, err := server.NewServer(&server.Options{
		ServerName: "outbox-embedded",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   cfg.NATS.StoreDir,
		MaxPayload: int32(cfg.Store.MaxPayload + headerRoom),
		NoSigs:     true,
		NoLog:      true,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded nats: not ready on %s (is the port in use? set nats.embedded_addr or nats.url)", cfg.NATS.EmbeddedAddr)
	}
	log.Info("embedded nats started", "url", ns.ClientURL(), "store_dir", cfg.NATS.StoreDir)
	return ns, nil
}
