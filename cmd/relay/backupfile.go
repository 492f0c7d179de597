package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// writeFileAtomic writes a file through fill into a temporary file next to
// path, syncs it and renames it into place: path holds either a whole file
// or nothing. It refuses to overwrite an existing file.
func writeFileAtomic(path string, fill func(io.Writer) (int64, error)) (int64, error) {
	if _, err := os.Stat(path); err == nil {
		return 0, fmt.Errorf("%s exists already: choose another name", path)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return 0, err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	n, err := fill(f)
	if err != nil {
		return n, err
	}
	if err := f.Sync(); err != nil {
		return n, err
	}
	if err := f.Close(); err != nil {
		return n, err
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return n, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return n, err
	}
	ok = true
	return n, nil
}

// checkStoreFile opens a store file read-only and checks that it is a whole
// bbolt file holding an outbox: a backup that passes can be opened by the
// relay. It returns the number of stored events. A page it cannot read is an
// error, not a crash.
func checkStoreFile(path string) (n int, err error) {
	err = guardFaults(path, func() error {
		db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
		if err != nil {
			return fmt.Errorf("%s is not a readable store file: %w", path, err)
		}
		defer db.Close()
		err = db.View(func(tx *bolt.Tx) error {
			b := tx.Bucket([]byte("events"))
			if b == nil {
				return errors.New("no events bucket: not an outbox store")
			}
			n = b.Stats().KeyN
			return nil
		})
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		return nil
	})
	return n, err
}
