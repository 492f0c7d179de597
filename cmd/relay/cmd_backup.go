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
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
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

// offlineBackup copies the store file src into dst, page by page from one
// read transaction, without changing src: it opens it read-only with bbolt
// rather than with boltstore.Open (which writes its layout into the file and
// refuses a damaged one), so that it also keeps a copy of a file the relay
// will not start on. A damaged file whose pages cannot be read is an error,
// never a crash. It fails with a clear message when a running relay holds
// the file.
func offlineBackup(ctx context.Context, src, dst string) (n int64, err error) {
	if _, err := os.Stat(src); err != nil {
		return 0, fmt.Errorf("no store file at %s (store.path): %w", src, err)
	}
	err = guardFaults(src, func() error {
		db, err := bolt.Open(src, 0o600, &bolt.Options{ReadOnly: true, Timeout: 500 * time.Millisecond})
		if errors.Is(err, berrors.ErrTimeout) {
			return lockedError(src, fmt.Errorf("%w: %s", boltstore.ErrLocked, src))
		}
		if err != nil {
			return fmt.Errorf("open %s: %w", src, err)
		}
		defer db.Close()
		n, err = writeFileAtomic(dst, func(w io.Writer) (int64, error) {
			var n int64
			err := db.View(func(tx *bolt.Tx) error {
				var err error
				n, err = tx.WriteTo(ctxWriter{ctx, w})
				return err
			})
			return n, err
		})
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("copy %s: %w: the file ends before its last page (it was truncated); keep it with cp and restore a backup", src, boltstore.ErrCorrupt)
		}
		if err != nil {
			return fmt.Errorf("copy %s: %w", src, err)
		}
		return nil
	})
	return n, err
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
