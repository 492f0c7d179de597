package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/fitiqcore/outbox/boltstore"
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

// checkStoreFile checks that path is a whole store file holding an outbox,
// without changing it: a backup that passes can be opened by the relay. It
// returns the number of stored events. A damaged file is an error, not a
// crash.
func checkStoreFile(path string) (int, error) {
	n, err := boltstore.CountEvents(path)
	if err != nil {
		return 0, fmt.Errorf("%s is not a readable store file: %w", path, err)
	}
	return n, nil
}
