package handlers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// openBucket binds the idempotency bucket, creating it with ttl when it does
// not exist. An existing bucket is left as it is (its replicas and TTL are the
// operator's).
func openBucket(ctx context.Context, js jetstream.JetStream, bucket string, ttl time.Duration) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      bucket,
			Description: "fitiqcore outbox: ids of handled events",
			TTL:         ttl,
		})
		if errors.Is(err, jetstream.ErrBucketExists) { // created meanwhile by another process
			kv, err = js.KeyValue(ctx, bucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("handlers: idempotency bucket %s: %w", bucket, err)
	}
	return kv, nil
}

// dedupKey is <durable>.<id>; an id that is not a plain token (outbox ids are
// UUIDs) is replaced by its SHA-256.
func dedupKey(durable, id string) string {
	for _, c := range []byte(id) {
		if !(c == '-' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			sum := sha256.Sum256([]byte(id))
			return durable + "." + hex.EncodeToString(sum[:])
		}
	}
	return durable + "." + id
}

// seen reports whether the event of key was handled already.
func (s *session) seen(key string) (bool, error) {
	ctx, cancel := s.opContext()
	defer cancel()
	_, err := s.kv.Get(ctx, key)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return false, nil
	}
	return false, fmt.Errorf("handlers: idempotency get %s: %w", key, err)
}

// record notes that the event of key was handled. A failure is logged, not
// returned: the handler has run, so the message is acked anyway; only a
// later redelivery of it could then run the handler again.
func (s *session) record(key string, streamSeq uint64) {
	ctx, cancel := s.opContext()
	defer cancel()
	if _, err := s.kv.Put(ctx, key, []byte(strconv.FormatUint(streamSeq, 10))); err != nil {
		s.log.Warn("idempotency put failed; a redelivery would run the handler again", "key", key, "err", err)
	}
}
