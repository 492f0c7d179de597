package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
	"github.com/fitiqcore/outbox/httpapi"
	"github.com/fitiqcore/outbox/publisher"
	"github.com/fitiqcore/outbox/relay"
)

// retryPolicy is the relay's default retry policy.
func (c *Config) retryPolicy() outbox.RetryPolicy {
	return outbox.RetryPolicy{InitialInterval: c.Retry.InitialInterval, MaxInterval: c.Retry.MaxInterval, Multiplier: c.Retry.Multiplier}
}

// natsURL is the server the relay connects to: nats.url, or the embedded
// server's address (serve learns its URL once it runs).
func (c *Config) natsURL() string {
	if c.NATS.URL != "" {
		return c.NATS.URL
	}
	return "nats://" + c.NATS.EmbeddedAddr
}

// publisherConfig is the publisher's part of the configuration, connecting
// to url; serve adds its logger.
func (c *Config) publisherConfig(url string) publisher.Config {
	retry := c.retryPolicy()
	return publisher.Config{
		URL:           url,
		SubjectPrefix: c.Stream.SubjectPrefix,
		Source:        c.Stream.Source,
		Stream: publisher.StreamConfig{
			Manage: *c.Stream.Manage, Name: c.Stream.Name, Replicas: c.Stream.Replicas,
			Storage: c.Stream.Storage, DuplicateWindow: c.Stream.DuplicateWindow,
		},
		Auth:           natsAuth(c.NATS),
		Retry:          &retry,
		PublishTimeout: c.NATS.PublishTimeout,
		MaxPending:     c.Relay.MaxInFlight,
	}
}

// relayConfig is the relay's part of the configuration; serve adds its
// logger and observer.
func (c *Config) relayConfig() relay.Config {
	return relay.Config{
		BatchSize:        c.Relay.BatchSize,
		MaxInFlight:      c.Relay.MaxInFlight,
		Retry:            c.retryPolicy(),
		Jitter:           *c.Retry.Jitter,
		DrainTimeout:     c.Relay.DrainTimeout,
		DisableReconcile: !*c.Relay.Reconcile,
		DuplicateWindow:  c.Stream.DuplicateWindow,
	}
}

// httpOptions is the HTTP API's part of the configuration; serve adds the
// readiness probe, the logger, the broker's status and the metrics.
func (c *Config) httpOptions() httpapi.Options {
	return httpapi.Options{
		MaxBodyBytes:         c.HTTP.MaxBodyBytes,
		MaxInflightBodyBytes: c.HTTP.MaxInflightBodyBytes,
		MaxConcurrent:        c.HTTP.MaxConcurrentRequests,
		Token:                c.HTTP.Token,
		AllowedTypes:         allowedTypes(eventTypeNames(c.EventTypes)),
	}
}

// libraryKeys maps each field a library's Validate names, as
// "<package>.<Go field>", onto the yaml key it is set from (by storeOptions,
// publisherConfig, httpOptions, relayConfig). A field ending in "[]" is a
// list, reported with its index ("AllowedTypes[1]" under "event_types[1]").
// A section key ("retry") takes the field an outbox.ValidationError inside
// the error names ("retry.initial_interval").
var libraryKeys = map[string]string{
	"boltstore.Event.MaxPayload":  "store.max_payload",
	"boltstore.Event.MaxAttempts": "retry.max_attempts",
	"boltstore.MaxPending":        "store.max_pending",
	"boltstore.MaxBytes":          "store.max_bytes",
	"boltstore.MaxPendingAge":     "store.max_pending_age",
	"boltstore.Fairness":          "relay.fairness",

	"publisher.SubjectPrefix":          "stream.subject_prefix",
	"publisher.Source":                 "stream.source",
	"publisher.Stream.Name":            "stream.name",
	"publisher.Stream.Replicas":        "stream.replicas",
	"publisher.Stream.Storage":         "stream.storage",
	"publisher.Stream.DuplicateWindow": "stream.duplicate_window",
	"publisher.Retry":                  "retry",
	"publisher.PublishTimeout":         "nats.publish_timeout",
	"publisher.MaxPending":             "relay.max_in_flight",

	"httpapi.Token":          "http.token",
	"httpapi.AllowedTypes[]": "event_types[]",

	"relay.Jitter": "retry.jitter",
	// The relay holds these to the publisher's bounds: the publisher,
	// checked first, reports them.
	"relay.Retry":           "retry",
	"relay.DuplicateWindow": "stream.duplicate_window",
}

// libraryError turns the error of library lib's Validate, an
// *outbox.FieldError naming a Go field, into a config error naming the yaml
// key that field is set from ("config: stream.name: <reason>"). An error
// naming no field of libraryKeys (the table test keeps it from happening) is
// wrapped as it is.
func libraryError(lib string, err error) error {
	if err == nil {
		return nil
	}
	fe, ok := errors.AsType[*outbox.FieldError](err)
	if !ok {
		return fmt.Errorf("%w: %w", errConfig, err)
	}
	field, index, list := strings.Cut(fe.Field, "[")
	if list {
		field += "[]"
	}
	key, ok := libraryKeys[lib+"."+field]
	if !ok {
		return fmt.Errorf("%w: %w", errConfig, err)
	}
	if list {
		key = strings.TrimSuffix(key, "[]") + "[" + index
	}
	if _, ok := errors.AsType[*outbox.ValidationError](fe.Err); ok && !strings.ContainsAny(key, ".[") {
		return ownedKey(key, fe.Err) // a section: the owner names the key in it
	}
	return badKey(key, "%v", fe.Err)
}

// ownedKey turns the validation error of the package that owns a rule into
// a config error naming the yaml key: key itself, or key's section followed
// by the field the owner named ("retry" and "retry.initial_interval" give
// retry.initial_interval; "stream.source" and "source" give stream.source).
func ownedKey(key string, err error) error {
	var ve *outbox.ValidationError
	if !errors.As(err, &ve) {
		return badKey(key, "%v", err)
	}
	section, _, _ := strings.Cut(key, ".")
	switch {
	case strings.HasPrefix(ve.Field, section+"."):
		key = ve.Field
	case !strings.Contains(key, "."):
		key += "." + ve.Field
	}
	return badKey(key, "%s", ve.Reason)
}

// storeOptions maps the config onto the store's options.
func storeOptions(cfg *Config) *boltstore.Options {
	horizon := *cfg.Store.EntityHorizon
	if horizon == 0 {
		horizon = -1 // store.entity_horizon 0s: never forget (the store's negative)
	}
	return &boltstore.Options{
		Timeout:           time.Second,
		Event:             outbox.Options{MaxAttempts: cfg.Retry.MaxAttempts, MaxPayload: cfg.Store.MaxPayload},
		StaleAfter:        cfg.Store.StaleAfter,
		Retention:         *cfg.Retention.Completed,
		RemoveOnAck:       *cfg.Retention.Completed == 0,
		MaxPending:        cfg.Store.MaxPending,
		MaxBytes:          cfg.Store.MaxBytes,
		MaxPendingAge:     cfg.Store.MaxPendingAge,
		IdempotencyWindow: cfg.Store.IdempotencyWindow,
		EntityHorizon:     horizon,
		Fairness:          boltstore.Fairness(cfg.Relay.Fairness),
	}
}

// natsAuth is the relay's own credentials: nats.embedded_auth for the
// embedded server, the client keys for the server of nats.url.
func natsAuth(n NATSConfig) publisher.Auth {
	if n.URL == "" {
		return publisher.Auth{User: n.EmbeddedAuth.User, Password: n.EmbeddedAuth.Password, Token: n.EmbeddedAuth.Token}
	}
	return publisher.Auth{
		User: n.User, Password: n.Password, Token: n.Token,
		NKeySeedFile: n.NKeySeedFile, CredsFile: n.CredsFile,
		TLSCAFile: n.TLS.CAFile, TLSCertFile: n.TLS.CertFile, TLSKeyFile: n.TLS.KeyFile,
	}
}

// allowedTypes is the ingest allowlist: event_types, plus the probe type of
// relay verify; empty (any type) when event_types is.
func allowedTypes(types []string) []string {
	if len(types) == 0 || slices.Contains(types, verifyType) {
		return types
	}
	return append(slices.Clone(types), verifyType)
}
