package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/nats-io/nats-server/v2/server"
)

// maxServerPayload is the most max_payload the embedded server is given:
// nats-server's MAX_PAYLOAD_MAX_SIZE (8 MiB), above which the server warns
// that it may refuse the setting in the future.
const maxServerPayload = server.MAX_PAYLOAD_MAX_SIZE

// embeddedMaxPayload is the max_payload the embedded server is given for a
// store.max_payload of storeMax: the largest message of an event of that
// payload with every other field at its limit (outbox.Event.WireSize), plus
// outbox.DeadLetterReserve. It is the inverse of outbox.MessageLimit: once
// connected, the store holds events to MessageLimit of it, which is exactly
// that largest message, so store.max_payload is the limit that applies.
func embeddedMaxPayload(storeMax int) int64 {
	return int64(storeMax) + int64(maxWireOverhead()) + outbox.DeadLetterReserve
}

// embeddedPayloadLimit is the largest store.max_payload the embedded server
// can carry: its max_payload stays at most maxServerPayload.
func embeddedPayloadLimit() int {
	return maxServerPayload - int(embeddedMaxPayload(0))
}

// maxWireOverhead is what an event's headers add to its payload at most: the
// WireSize of an event with no payload and every other field at its limit.
func maxWireOverhead() int {
	long := func(n int) string { return strings.Repeat("x", n) }
	e := outbox.Event{
		ID:       "00000000-0000-0000-0000-000000000000", // canonical form, as Validate leaves it
		Type:     long(outbox.MaxTypeLen),
		EntityID: long(outbox.MaxIDFieldLen), UserID: long(outbox.MaxIDFieldLen),
		Metadata:    []byte(long(outbox.MaxMetadataLen)),
		ContentType: long(outbox.MaxContentTypeLen),
	}
	return e.WireSize()
}

// startEmbedded runs the default NATS JetStream server inside the relay's
// process, storing under nats.store_dir and listening on nats.embedded_addr
// so that subscribers can connect to it, with nats.embedded_auth when set.
// It returns the server and the URL the relay connects to.
func startEmbedded(cfg *Config, log *slog.Logger) (*server.Server, string, error) {
	host, p, _ := net.SplitHostPort(cfg.NATS.EmbeddedAddr)
	port, err := strconv.Atoi(p)
	if err != nil {
		return nil, "", badKey("nats.embedded_addr", "bad port %q", p)
	}
	auth := cfg.NATS.EmbeddedAuth
	ns, err := server.NewServer(&server.Options{
		ServerName:    "outbox-embedded",
		Host:          host,
		Port:          port,
		JetStream:     true,
		StoreDir:      cfg.NATS.StoreDir,
		MaxPayload:    int32(embeddedMaxPayload(cfg.Store.MaxPayload)),
		Authorization: auth.Token,
		Username:      auth.User,
		Password:      auth.Password,
		NoSigs:        true,
		NoLog:         true,
	})
	if err != nil {
		return nil, "", fmt.Errorf("embedded nats: %w", err)
	}
	ns.Start() // it does not block
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, "", fmt.Errorf("embedded nats: not ready on %s (is the port in use? set nats.embedded_addr or nats.url)", cfg.NATS.EmbeddedAddr)
	}
	// The relay's own connection: through loopback when the server listens
	// on every interface.
	connect := host
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		connect = "127.0.0.1"
	}
	u := (&url.URL{Scheme: "nats", Host: net.JoinHostPort(connect, strconv.Itoa(ns.Addr().(*net.TCPAddr).Port))}).String()
	log.Info("embedded nats started", "url", u, "listen", cfg.NATS.EmbeddedAddr, "auth", auth.set(), "store_dir", cfg.NATS.StoreDir)
	return ns, u, nil
}

// checkEmbeddedExposure refuses an embedded server on a non-loopback address
// without auth: anyone on the network could read every payload from the
// stream and publish forged events into it.
func checkEmbeddedExposure(n NATSConfig) error {
	if n.URL != "" || n.EmbeddedAuth.set() {
		return nil
	}
	host, _, _ := net.SplitHostPort(n.EmbeddedAddr)
	if isLoopback(host) {
		return nil
	}
	return badKey("nats.embedded_auth", "required when nats.embedded_addr %q is not a loopback address (anyone on the network could read every payload and publish forged events into the stream): set nats.embedded_auth.token, or user and password, and give it to the subscribers; or listen on 127.0.0.1", n.EmbeddedAddr)
}

// isLoopback reports whether a listen host reaches this machine only:
// localhost or a loopback IP. An empty host listens on every interface.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
