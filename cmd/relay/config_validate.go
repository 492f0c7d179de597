package main

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
)

// errConfig wraps every configuration error; the message names the key.
var errConfig = errors.New("config")

func badKey(key, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", errConfig, key, fmt.Sprintf(format, args...))
}

// The bounds of the daemon's own rules (see Validate). A bound of a
// library's setting is the library's, checked by its Validate.
const (
	// minRetentionInterval keeps the sweep from spinning (1ns took 25% of a
	// CPU on an idle relay); maxRetentionInterval keeps it useful.
	minRetentionInterval = time.Second
	maxRetentionInterval = 24 * time.Hour
	// The HTTP server's timeouts.
	minHTTPTimeout = 100 * time.Millisecond
	maxHTTPTimeout = time.Hour
	// relay.drain_timeout.
	minDrainTimeout = 100 * time.Millisecond
	maxDrainTimeout = time.Hour
	// relay.batch_size.
	maxBatchSize = 100_000
	// The HTTP API's limits.
	maxConcurrentRequests   = 100_000
	maxBodyBytes            = 1 << 30
	maxInflightBodyBytesCap = 16 << 30
)

// Validate checks every key, naming the first bad one.
//
// Each rule has one owner. A library's settings are checked by the
// library's own Validate, on the configuration serve builds for it
// (storeOptions, publisherConfig, httpOptions, relayConfig), and its error,
// which names a Go field, is reported under the yaml key that field is set
// from (libraryKeys). The daemon checks only what is its own: its addresses,
// files, auth and TLS, the embedded server's payload ceiling, the HTTP
// server's timeouts, logging; the rules that tie two libraries' settings
// together (store.idempotency_window covers stream.duplicate_window,
// http.max_body_bytes carries one event of store.max_payload); how its keys
// spell what the library spells otherwise (0s for "never forget" and "remove
// on ack", no "no limit" for the HTTP limits); and the operator's bounds of
// the settings a library takes any value of (store.stale_after,
// store.idempotency_window, store.entity_horizon, retention.completed and
// retention.interval, relay.batch_size and relay.drain_timeout, the HTTP
// limits: a value past them is a typing error, not a choice).
func (c *Config) Validate() error {
	if err := c.validateStore(); err != nil {
		return err
	}
	if err := c.validateNATS(); err != nil {
		return err
	}
	// stream.*, nats.publish_timeout, relay.max_in_flight, retry: the
	// publisher's rules.
	pc := c.publisherConfig(c.natsURL())
	if err := libraryError("publisher", pc.Validate()); err != nil {
		return err
	}
	if err := c.validateHTTP(); err != nil {
		return err
	}
	if err := c.validateRelay(); err != nil {
		return err
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return badKey("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "auto", "text", "json":
	default:
		return badKey("log.format", "must be auto, text or json, got %q", c.Log.Format)
	}
	if e := c.Tracing.OTLPEndpoint; e != "" {
		u, err := url.Parse(e)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return badKey("tracing.otlp_endpoint", "want the OTLP/HTTP endpoint as http(s)://host:port[/path], got %q", e)
		}
	}
	return nil
}

func (c *Config) validateStore() error {
	// store.max_payload, store.max_pending, store.max_bytes,
	// store.max_pending_age, retry.max_attempts: the store's rules.
	if err := libraryError("boltstore", storeOptions(c).Validate()); err != nil {
		return err
	}
	if lim := embeddedPayloadLimit(); c.NATS.URL == "" && c.Store.MaxPayload > lim {
		// The embedded server is given max_payload embeddedMaxPayload.
		return badKey("store.max_payload", "must be 1..%d bytes with the embedded NATS server, got %d (the server's max_payload, this plus %d bytes for headers and a dead letter, may be at most %d)",
			lim, c.Store.MaxPayload, embeddedMaxPayload(0), maxServerPayload)
	}
	if err := checkDuration("store.stale_after", c.Store.StaleAfter, time.Second, boltstore.MaxAge, ""); err != nil {
		return err
	}
	if err := checkDuration("store.idempotency_window", c.Store.IdempotencyWindow, c.Stream.DuplicateWindow, boltstore.MaxAge, ""); err != nil {
		return fmt.Errorf("%w (at least stream.duplicate_window: a re-post is recognised for as long as JetStream would de-duplicate it)", err)
	}
	if d := *c.Store.EntityHorizon; d != 0 {
		if err := checkDuration("store.entity_horizon", d, c.Store.IdempotencyWindow, boltstore.MaxAge, "0s (never forget) or "); err != nil {
			return fmt.Errorf("%w (at least store.idempotency_window)", err)
		}
	}
	if d := *c.Retention.Completed; d != 0 {
		if err := checkDuration("retention.completed", d, 0, boltstore.MaxAge, "0s (remove on ack) or "); err != nil {
			return err
		}
	}
	return checkDuration("retention.interval", c.Retention.Interval, minRetentionInterval, maxRetentionInterval, "")
}

func (c *Config) validateNATS() error {
	n := c.NATS
	if n.URL == "" {
		if _, _, err := net.SplitHostPort(n.EmbeddedAddr); err != nil {
			return badKey("nats.embedded_addr", "%v", err)
		}
		// The client keys are for nats.url: a token set here would not
		// protect the embedded server, whatever its reader believes.
		for key, v := range map[string]string{
			"nats.user": n.User, "nats.password": n.Password, "nats.token": n.Token,
			"nats.nkey_seed_file": n.NKeySeedFile, "nats.creds_file": n.CredsFile,
			"nats.tls.ca_file": n.TLS.CAFile, "nats.tls.cert_file": n.TLS.CertFile, "nats.tls.key_file": n.TLS.KeyFile,
		} {
			if v != "" {
				return badKey(key, "applies to the server of nats.url, which is not set (the embedded server is used): to protect the embedded server set nats.embedded_auth")
			}
		}
		a := n.EmbeddedAuth
		switch {
		case a.Token != "" && (a.User != "" || a.Password != ""):
			return badKey("nats.embedded_auth", "set either token or user and password, not both")
		case a.User != "" && a.Password == "":
			return badKey("nats.embedded_auth.password", "required with nats.embedded_auth.user")
		case a.Password != "" && a.User == "":
			return badKey("nats.embedded_auth.user", "required with nats.embedded_auth.password")
		}
		for key, v := range map[string]string{"nats.embedded_auth.token": a.Token, "nats.embedded_auth.user": a.User, "nats.embedded_auth.password": a.Password} {
			if strings.ContainsAny(v, " \t\r\n") {
				return badKey(key, "must not contain white space")
			}
		}
	} else if n.EmbeddedAuth.set() {
		return badKey("nats.embedded_auth", "applies to the embedded server only, and nats.url is set: use nats.user/password, nats.token, nats.nkey_seed_file or nats.creds_file for that server")
	}
	return nil
}

func (c *Config) validateHTTP() error {
	h := c.HTTP
	if _, _, err := net.SplitHostPort(h.Addr); err != nil {
		return badKey("http.addr", "%v", err)
	}
	switch {
	case h.TLS.CertFile != "" && h.TLS.KeyFile == "":
		return badKey("http.tls.key_file", "required with http.tls.cert_file")
	case h.TLS.KeyFile != "" && h.TLS.CertFile == "":
		return badKey("http.tls.cert_file", "required with http.tls.key_file")
	}
	for _, t := range []struct {
		key string
		d   time.Duration
	}{
		{"http.read_header_timeout", h.ReadHeaderTimeout}, {"http.read_timeout", h.ReadTimeout},
		{"http.write_timeout", h.WriteTimeout}, {"http.idle_timeout", h.IdleTimeout},
	} {
		if err := checkDuration(t.key, t.d, minHTTPTimeout, maxHTTPTimeout, ""); err != nil {
			return err
		}
	}
	if h.ReadHeaderTimeout > h.ReadTimeout {
		return badKey("http.read_header_timeout", "must be at most http.read_timeout (%s), got %s", h.ReadTimeout, h.ReadHeaderTimeout)
	}
	if h.MaxConcurrentRequests < 1 || h.MaxConcurrentRequests > maxConcurrentRequests {
		return badKey("http.max_concurrent_requests", "must be 1..%d, got %d", maxConcurrentRequests, h.MaxConcurrentRequests)
	}
	if lo := minBodyBytes(c.Store.MaxPayload); h.MaxBodyBytes < lo || h.MaxBodyBytes > maxBodyBytes {
		return badKey("http.max_body_bytes", "must be %d..%d bytes, got %d (at least one event of store.max_payload %d, as payload_base64 with metadata at its limit)",
			lo, int64(maxBodyBytes), h.MaxBodyBytes, c.Store.MaxPayload)
	}
	if h.MaxInflightBodyBytes < h.MaxBodyBytes || h.MaxInflightBodyBytes > maxInflightBodyBytesCap {
		return badKey("http.max_inflight_body_bytes", "must be from http.max_body_bytes (%d) to %d bytes, got %d",
			h.MaxBodyBytes, int64(maxInflightBodyBytesCap), h.MaxInflightBodyBytes)
	}
	// http.token, event_types: the API's rules.
	o := c.httpOptions()
	return libraryError("httpapi", o.Validate())
}

func (c *Config) validateRelay() error {
	if c.Relay.BatchSize < 1 || c.Relay.BatchSize > maxBatchSize {
		return badKey("relay.batch_size", "must be 1..%d, got %d", maxBatchSize, c.Relay.BatchSize)
	}
	if err := checkDuration("relay.drain_timeout", c.Relay.DrainTimeout, minDrainTimeout, maxDrainTimeout, ""); err != nil {
		return err
	}
	// retry.jitter, and the relay's hold on the retry policy and the
	// duplicate window (reported by the publisher first): the relay's rules.
	rc := c.relayConfig()
	return libraryError("relay", rc.Validate())
}

// minBodyBytes is the smallest request body limit that carries one event
// with a payload of maxPayload bytes: as payload_base64, with its metadata at
// outbox.MaxMetadataLen and room for the other fields.
func minBodyBytes(maxPayload int) int64 {
	return int64(base64.StdEncoding.EncodedLen(maxPayload)) + outbox.MaxMetadataLen + 16<<10
}

// checkDuration checks lo <= d <= hi; zero, when not empty, says what 0
// means for the key ("0s (no limit) or ").
func checkDuration(key string, d, lo, hi time.Duration, zero string) error {
	if d < lo || d > hi {
		return badKey(key, "must be %sfrom %s to %s, got %s", zero, fmtDuration(lo), fmtDuration(hi), d)
	}
	return nil
}

// fmtDuration writes whole hours as "8784h" rather than "8784h0m0s".
func fmtDuration(d time.Duration) string {
	if d >= time.Hour && d%time.Hour == 0 {
		return fmt.Sprintf("%dh", d/time.Hour)
	}
	return d.String()
}
