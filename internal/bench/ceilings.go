package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	bolt "go.etcd.io/bbolt"
)

// The ceilings: what JetStream (each publish mode of jsmodes.go) and bbolt
// take on their own, the limits the outbox is measured against.

// recordExtra: bbolt_ceiling's record is payload + this, about an event
// record.
const recordExtra = 120

// bbolt_ceiling's group commit, tuned for 64 writers: a batch commits when
// all 64 have joined, or 1ms after the first; bbolt's defaults (1000, 10ms)
// would hold every commit for 10ms.
var (
	bboltBatchSize  = 64
	bboltBatchDelay = time.Millisecond
)

// js_ceiling: JetStream's own rate, each publish mode of jsModes in turn
// into a fresh stream: unique Nats-Msg-Ids, nothing else in the headers, from
// the first publish to the last ack. js_ceiling is the fastest mode that keeps
// per-message de-duplication (jsMode.dedup).
func (r *runner) jsCeiling(ctx context.Context) error {
	nc, err := nats.Connect(r.srv.url, nats.Name("outbox-bench-js-ceiling"))
	if err != nil {
		return err
	}
	defer nc.Close()
	defer r.profile("js_ceiling")()
	for _, mode := range jsModes {
		r.prog.step(mode.name)
		rate, err := r.jsMode(ctx, nc, mode)
		if err != nil {
			return fmt.Errorf("%s: %w", mode.name, err)
		}
		*r.res.jsMode(mode.name) = rate
		verdict := "keeps per-message de-duplication"
		if !mode.dedup {
			verdict = "does not keep per-message de-duplication, no ceiling for the relay"
		}
		r.note("%s: %s msgs/s, %d msgs of %d B, %s; %s: %s", mode.name, formatNum(math.Round(rate)), r.o.Events, r.o.Payload, mode.how, verdict, mode.duplicates)
		if mode.dedup && rate > r.res.JSCeiling {
			r.res.JSCeiling, r.res.JSCeilingMode = rate, mode.name
		}
	}
	r.prog.step("")
	r.note("js_ceiling: %s, the fastest mode that keeps per-message de-duplication (the relay sends about 15 CloudEvents headers besides Nats-Msg-Id)", r.res.JSCeilingMode)
	return nil
}

// jsMode publishes the phase's messages in one mode and returns its rate.
func (r *runner) jsMode(ctx context.Context, nc *nats.Conn, mode jsMode) (float64, error) {
	name, prefix := r.stream(mode.name)
	cfg := streamConfig(name, prefix)
	mode.stream(&cfg)
	if _, err := r.js.CreateStream(ctx, cfg); err != nil {
		return 0, err
	}
	defer r.deleteStream(name)
	n := r.o.Events
	msgs := make([]*nats.Msg, n) // made before the clock starts, as the relay's are
	payload, subject := r.payload(), prefix+".event"
	for i := range msgs {
		msgs[i] = &nats.Msg{Subject: subject, Data: payload, Header: nats.Header{jetstream.MsgIDHeader: {uuid.Must(uuid.NewV7()).String()}}}
	}
	var sent atomic.Int64
	defer r.prog.follow(func() float64 { return float64(sent.Load()) / float64(n) })()
	start := time.Now()
	if err := mode.publish(ctx, nc, msgs, &sent); err != nil {
		return 0, err
	}
	elapsed := time.Since(start)
	if got, err := r.streamMsgs(ctx, name); err != nil || got != uint64(n) {
		return 0, fmt.Errorf("stream holds %d of %d messages (%v)", got, n, err)
	}
	return float64(n) / elapsed.Seconds(), nil
}

// bbolt_ceiling: one Put of a sequence key per db.Batch call, from 64
// goroutines, records of payload+120 bytes.
func (r *runner) bboltCeiling(ctx context.Context) error {
	dir, err := r.phaseDir("bbolt_ceiling")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	db, err := bolt.Open(filepath.Join(dir, "raw.db"), 0o600, &bolt.Options{
		Timeout:         2 * time.Second,
		FreelistType:    bolt.FreelistMapType, // as boltstore opens it
		InitialMmapSize: 64 << 20,
	})
	if err != nil {
		return err
	}
	defer db.Close()
	db.MaxBatchSize, db.MaxBatchDelay = bboltBatchSize, bboltBatchDelay
	bucket := []byte("records")
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket(bucket)
		return err
	}); err != nil {
		return err
	}
	n, size := r.o.Events, r.o.Payload+recordExtra
	record := bytes.Repeat([]byte{'r'}, size)
	var next, done atomic.Int64
	defer r.prog.follow(func() float64 { return float64(done.Load()) / float64(n) })()

	defer r.profile("bbolt_ceiling")()
	start := time.Now()
	err = parallel(ctx, producers, func(ctx context.Context) error {
		for ctx.Err() == nil && next.Add(1) <= int64(n) {
			err := db.Batch(func(tx *bolt.Tx) error {
				b := tx.Bucket(bucket)
				b.FillPercent = 0.9 // as boltstore: keys are appended
				seq, err := b.NextSequence()
				if err != nil {
					return err
				}
				// bbolt keeps the value until the commit: a buffer per write.
				return b.Put(binary.BigEndian.AppendUint64(nil, seq), append(make([]byte, 0, size), record...))
			})
			if err != nil {
				return err
			}
			done.Add(1)
		}
		return ctx.Err()
	})
	if err != nil {
		return err
	}
	r.res.BboltCeiling = float64(n) / time.Since(start).Seconds()
	r.note("bbolt_ceiling: %d writes of %d B from %d goroutines, db.Batch with MaxBatchSize %d, MaxBatchDelay %s, map freelist",
		n, size, producers, bboltBatchSize, bboltBatchDelay)
	return nil
}
