package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/fitiqcore/outbox/boltstore"
)

// cmdBackup writes a consistent copy of the store file: through a running
// relay (POST /v1/backup), or with --offline by opening the file itself.
func cmdBackup(ctx context.Context, args []string, std stdio) error {
	fs := newFlagSet("backup", "backup [--addr HOST:PORT | --offline --config FILE] FILE", std)
	cf := addCommonFlags(fs)
	offline := fs.Bool("offline", false, "open the store file named by --config's store.path directly (no relay may be running on it)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return flagError(err)
	}
	if len(pos) != 1 {
		fs.Usage()
		return exitCode(2)
	}
	dst := pos[0]
	var (
		n   int64
		src string
	)
	if *offline {
		cfg, err := cf.loadConfig()
		if err != nil {
			return err
		}
		src = cfg.Store.Path
		n, err = offlineBackup(ctx, src, dst)
		if err != nil {
			return fmt.Errorf("backup --offline: %w", err)
		}
	} else {
		c, err := cf.client()
		if err != nil {
			return err
		}
		src = c.String()
		if n, err = onlineBackup(ctx, c, dst); err != nil {
			return fmt.Errorf("backup: %w", err)
		}
	}
	events, err := checkStoreFile(dst)
	if err != nil {
		return fmt.Errorf("backup: the copy does not check: %w", err)
	}
	if cf.json {
		return printJSON(std.out, map[string]any{"path": dst, "bytes": n, "events": events, "source": src})
	}
	fmt.Fprintf(std.out, "backup: %s (%s, %d events) from %s\n", dst, bytesize(n), events, src)
	return nil
}

// onlineBackup streams the relay's hot copy into dst.
func onlineBackup(ctx context.Context, c *client, dst string) (int64, error) {
	return writeFileAtomic(dst, func(w io.Writer) (int64, error) {
		resp, err := c.request(ctx, http.MethodPost, "/v1/backup", nil, nil)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		n, err := io.Copy(w, resp.Body)
		if err != nil {
			return n, fmt.Errorf("transfer cut after %d bytes: %w", n, err)
		}
		return n, nil
	})
}

// offlineBackup opens the store file itself and copies it into dst. It
// fails with a clear message when a running relay holds the file.
func offlineBackup(ctx context.Context, src, dst string) (int64, error) {
	store, err := openOffline(src)
	if err != nil {
		return 0, err
	}
	defer store.Close()
	return writeFileAtomic(dst, func(w io.Writer) (int64, error) { return store.Backup(ctx, w) })
}

// openOffline opens an existing store file for an offline command, waiting
// briefly for its lock.
func openOffline(path string) (*boltstore.Store, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("no store file at %s (store.path): %w", path, err)
	}
	store, err := boltstore.Open(path, &boltstore.Options{Timeout: 500 * time.Millisecond})
	if errors.Is(err, boltstore.ErrLocked) {
		return nil, lockedError(path, err)
	}
	return store, err
}

// heldError explains that a running relay holds the store file; it wraps
// boltstore.ErrLocked without repeating its text.
type heldError struct {
	path, advice string
	err          error
}

func (e *heldError) Error() string {
	return fmt.Sprintf("%s is held by a running relay: %s", e.path, e.advice)
}

func (e *heldError) Unwrap() error { return e.err }

// lockedError is the heldError of an offline backup.
func lockedError(path string, err error) error {
	return &heldError{path: path, err: err,
		advice: "take the backup through its API instead (relay backup --addr HOST:PORT FILE), or stop the relay first"}
}
