package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/fitiqcore/outbox/boltstore"
	bolt "go.etcd.io/bbolt"
)

// cmdCompact rewrites the store file offline into a fresh file without free
// pages, then renames it into place. No relay may be running on the file.
func cmdCompact(ctx context.Context, args []string, std stdio) error {
	fs := newFlagSet("compact", "compact --config FILE [--json]", std)
	configPath := fs.String("config", "", "the relay's config file, for store.path (default ./data/outbox.db)")
	jsonOut := fs.Bool("json", false, "print JSON")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return flagError(err)
	}
	if len(pos) > 0 {
		return fmt.Errorf("compact: unexpected argument %q", pos[0])
	}
	cfg, err := loadConfig(*configPath)
	if err != nil {
		return err
	}
	src := cfg.Store.Path
	before, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("compact: no store file at %s (store.path): %w", src, err)
	}
	tmp := src + ".compact"
	os.Remove(tmp) // a leftover of an interrupted run
	start := time.Now()
	// A damaged file's pages may fault: an error, never a crash.
	if err := guardFaults(src, func() error { return boltstore.Compact(ctx, src, tmp) }); err != nil {
		os.Remove(tmp)
		if errors.Is(err, boltstore.ErrLocked) {
			return fmt.Errorf("compact: %w", &heldError{path: src, err: err, advice: "stop it first (compaction rewrites the file offline)"})
		}
		return fmt.Errorf("compact: %w", err)
	}
	if err := replaceLocked(src, tmp); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("compact: %w", err)
	}
	after, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	if *jsonOut {
		return printJSON(std.out, map[string]any{"path": src, "bytes_before": before.Size(), "bytes_after": after.Size()})
	}
	fmt.Fprintf(std.out, "compacted %s: %s → %s in %s\n", src, bytesize(before.Size()), bytesize(after.Size()), shortDuration(time.Since(start)))
	return nil
}

// replaceLocked renames tmp over src while holding src's lock (shared), so
// that a relay that started on src after the compaction is detected instead
// of losing what it wrote to the old file.
func replaceLocked(src, tmp string) error {
	db, err := bolt.Open(src, 0o600, &bolt.Options{ReadOnly: true, Timeout: 500 * time.Millisecond})
	if err != nil {
		return fmt.Errorf("%s was opened by another process during compaction; the file is unchanged: %w", src, err)
	}
	defer db.Close()
	return os.Rename(tmp, src)
}
