package boltstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Backup writes a consistent copy of the whole file (the events and the
// application's own buckets) to w, from one read transaction: writers are
// not blocked meanwhile, but a long backup delays the reuse of the pages
// they free. The copy is a bbolt file that Open reads. It stops with ctx's
// error when ctx ends. It returns the bytes written.
func (s *Store) Backup(ctx context.Context, w io.Writer) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var n int64
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(ctxWriter{ctx, w})
		return err
	})
	if err != nil {
		return n, fmt.Errorf("boltstore: backup: %w", err)
	}
	return n, nil
}

// ctxWriter stops a copy when its context ends.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

// Write writes p unless the context has ended.
func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

// compactTxSize is how many bytes Compact copies per transaction.
const compactTxSize = 64 << 20

// Compact rewrites the store file src into a new file dst, without the free
// pages src accumulated (bbolt never shrinks a file). It is an offline
// operation: src must not be open elsewhere (a running relay holds it:
// ErrLocked after one second), and dst must not exist. The caller replaces
// src with dst afterwards. ctx is checked before the copy starts.
func Compact(ctx context.Context, src, dst string) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := os.Stat(dst); err == nil {
		return fmt.Errorf("boltstore: compact: %s: %w", dst, os.ErrExist)
	}
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("boltstore: compact: %w", err)
	}
	from, err := bolt.Open(src, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if errors.Is(err, berrors.ErrTimeout) {
		return fmt.Errorf("%w: %s (is a relay running on it?)", ErrLocked, src)
	}
	if err != nil {
		return fmt.Errorf("boltstore: compact: open %s: %w", src, err)
	}
	defer from.Close()
	to, err := bolt.Open(dst, 0o600, &bolt.Options{Timeout: time.Second, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return fmt.Errorf("boltstore: compact: create %s: %w", dst, err)
	}
	defer func() {
		if cerr := to.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("boltstore: compact: close %s: %w", dst, cerr)
		}
		if err != nil {
			os.Remove(dst)
		}
	}()
	if err := bolt.Compact(to, from, compactTxSize); err != nil {
		return fmt.Errorf("boltstore: compact %s into %s: %w", src, dst, err)
	}
	return nil
}

// CountEvents opens the store file at path read-only, without changing it
// and without taking more than a shared lock, and returns how many events it
// holds: a file that passes is a whole store file that Open reads (a backup,
// say). A damaged file is an error wrapping ErrCorrupt, never a crash; a
// bbolt file that holds no outbox is ErrNotStore.
func CountEvents(path string) (n int, err error) {
	if err := CheckFile(path); err != nil {
		return 0, err
	}
	if _, err := os.Stat(path); err != nil {
		return 0, fmt.Errorf("boltstore: %w", err)
	}
	defer recoverCorrupt(&err, path)()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if errors.Is(err, berrors.ErrTimeout) {
		return 0, fmt.Errorf("%w: %s (is a relay running on it?)", ErrLocked, path)
	}
	if err != nil {
		return 0, fmt.Errorf("boltstore: open %s: %w", path, err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bEvents)
		if b == nil || tx.Bucket(bMeta) == nil {
			return fmt.Errorf("%w: %s", ErrNotStore, path)
		}
		n = b.Stats().KeyN
		return nil
	})
	return n, err
}
