package main

import (
	"errors"
	"fmt"
	"runtime/debug"

	"github.com/fitiqcore/outbox/boltstore"
	berrors "go.etcd.io/bbolt/errors"
)

// isDamaged reports whether opening the store failed because its file is
// damaged (boltstore.ErrCorrupt, or bbolt's own verdict on the meta pages),
// rather than for a reason the operator fixes elsewhere (a lock, a path).
func isDamaged(err error) bool {
	return errors.Is(err, boltstore.ErrCorrupt) || errors.Is(err, berrors.ErrInvalid) || errors.Is(err, berrors.ErrChecksum)
}

// damagedStoreError is why relay serve did not start on a damaged store
// file, and what the operator does about it.
type damagedStoreError struct {
	path, config string
	err          error
}

func damagedStore(path, configPath string, err error) error {
	if configPath == "" {
		configPath = "FILE"
	}
	return &damagedStoreError{path: path, config: configPath, err: err}
}

func (e *damagedStoreError) Error() string {
	return fmt.Sprintf(`the store file %s (store.path) is damaged; the relay did not start and changed nothing: %v
to recover, with the relay stopped:
  - keep the damaged file as it is: relay backup --offline --config %s COPY.db copies it without changing it (cp it when that fails: its pages are cut short)
  - restore a backup made earlier with relay backup: copy it over %s (events stored since that backup are lost, unless the stream holds them)
  - or rewrite the file from the pages that can still be read: relay compact --config %s (this repairs damaged free pages, not a damaged record)`,
		e.path, e.err, e.config, e.path, e.config)
}

func (e *damagedStoreError) Unwrap() error { return e.err }

// guardFaults runs fn, turning a panic or a memory fault (bbolt reading a
// page of a damaged file: past the end of a truncated one, or garbage) into
// an error wrapping boltstore.ErrCorrupt that names path. The offline
// commands read files the relay may have refused: they fail with a message,
// never a crash. fn must not start goroutines that touch the file.
func guardFaults(path string, fn func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if v := recover(); v != nil {
			err = fmt.Errorf("%w: %s: reading it failed: %v", boltstore.ErrCorrupt, path, v)
		}
	}()
	return fn()
}
