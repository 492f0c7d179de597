package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
	"github.com/fitiqcore/outbox/publisher"
	"github.com/fitiqcore/outbox/relay"
)

// recordsBucket holds the app's own data: one record per event it wrote,
// committed in the same transaction as the event.
var recordsBucket = []byte("demo_records")

// embeddedWriter is the app embedding the library: its bbolt file holds its
// own records and the outbox, and it runs the relay itself.
type embeddedWriter struct {
	cfg   *config
	log   *slog.Logger
	store *boltstore.Store
	pub   *publisher.Publisher
	relay *relay.Relay

	mu        sync.Mutex
	count     map[string]int64
	lastError string
}

func openEmbedded(cfg *config, log *slog.Logger) (*embeddedWriter, error) {
	store, err := boltstore.Open(cfg.db, &boltstore.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, err
	}
	if err := store.DB().Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(recordsBucket)
		return err
	}); err != nil {
		store.Close()
		return nil, fmt.Errorf("create %s: %w", recordsBucket, err)
	}
	pub, err := publisher.Connect(publisher.Config{
		URL:           cfg.natsURL,
		Name:          "demoapp-embedded",
		SubjectPrefix: cfg.subjectPrefix,
		Stream: publisher.StreamConfig{
			Manage: true, Name: cfg.stream, Replicas: cfg.replicas, DuplicateWindow: cfg.duplicateWindow,
		},
		PublishTimeout: cfg.publishTimeout,
		Logger:         log,
	})
	if err != nil {
		store.Close()
		return nil, err
	}
	w := &embeddedWriter{cfg: cfg, log: log, store: store, pub: pub, count: map[string]int64{}}
	w.relay, err = relay.New(store, pub, relay.Config{Logger: log, Observer: w.observe})
	if err != nil {
		pub.Close()
		store.Close()
		return nil, err
	}
	return w, nil
}

// Run runs the relay until ctx ends.
func (w *embeddedWriter) Run(ctx context.Context) error { return w.relay.Run(ctx) }

// Close closes the connection and the store; Run has returned.
func (w *embeddedWriter) Close() {
	w.pub.Close()
	w.store.Close()
}

// observe counts publish outcomes; a duplicate ack is logged so that it can be
// counted across crashes from the container's log.
func (w *embeddedWriter) observe(o relay.Outcome) {
	w.mu.Lock()
	w.count[o.Kind.String()]++
	if o.Duplicate {
		w.count["duplicate_acks"]++
	}
	w.mu.Unlock()
	if o.Duplicate {
		w.log.Info("duplicate ack: the stream had the event already", "event_id", o.Event.ID, "duplicate", true)
	}
}

// Write commits the app's records and the events in one transaction. A
// failed transaction stored nothing and is tried again.
func (w *embeddedWriter) Write(ctx context.Context, events []*outbox.Event, paused func() bool) error {
	wait := 100 * time.Millisecond
	for {
		err := w.store.DB().Update(func(tx *bolt.Tx) error {
			if _, err := w.store.EnqueueTx(tx, events...); err != nil {
				return err
			}
			b := tx.Bucket(recordsBucket)
			now := time.Now().UnixMilli()
			for _, e := range events { // entity_seq is filled in by EnqueueTx
				rec, err := json.Marshal(accepted{ID: e.ID, EntityID: e.EntityID, EntitySeq: e.EntitySeq, Seq: e.Seq, At: now})
				if err != nil {
					return err
				}
				if err := b.Put([]byte(e.ID), rec); err != nil {
					return err
				}
			}
			return nil
		})
		if err == nil {
			w.mu.Lock()
			w.count["committed_batches"]++
			w.mu.Unlock()
			return nil
		}
		w.mu.Lock()
		w.count["failed_transactions"]++
		w.lastError = err.Error()
		w.mu.Unlock()
		if errors.Is(err, outbox.ErrInvalidEvent) {
			return err
		}
		if errors.Is(err, boltstore.ErrOutboxFull) && paused() {
			return errAbandoned
		}
		w.log.Warn("transaction failed; trying again", "err", err)
		if err := sleepOrPause(ctx, wait, func() bool { return false }); err != nil {
			return err
		}
		wait = min(2*wait, time.Second)
	}
}

// Accepted reads the app's own records: what committed, crash or not.
func (w *embeddedWriter) Accepted(ctx context.Context) ([]accepted, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []accepted
	err := w.store.DB().View(func(tx *bolt.Tx) error {
		return tx.Bucket(recordsBucket).ForEach(func(_, v []byte) error {
			var a accepted
			if err := json.Unmarshal(v, &a); err != nil {
				return err
			}
			out = append(out, a)
			return nil
		})
	})
	return out, err
}

// OutboxStats are the store's statistics.
func (w *embeddedWriter) OutboxStats(ctx context.Context) (boltstore.Stats, error) {
	return w.store.Stats(ctx)
}

func (w *embeddedWriter) Stats() map[string]any {
	st := map[string]any{}
	var n int
	_ = w.store.DB().View(func(tx *bolt.Tx) error {
		n = tx.Bucket(recordsBucket).Stats().KeyN
		return nil
	})
	w.mu.Lock()
	defer w.mu.Unlock()
	st["accepted"] = n
	st["last_error"] = w.lastError
	for k, v := range w.count {
		st[k] = v
	}
	st["nats_connected"] = w.pub.Connected()
	return st
}
