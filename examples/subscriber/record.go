package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"

	"github.com/fitiqcore/outbox"
)

// recordLine is one handled event in the record file.
type recordLine struct {
	ID        string `json:"id"`
	Type      string `json:"type"`
	EntityID  string `json:"entity_id"`
	EntitySeq uint64 `json:"entity_seq"`
}

// recorder is the example's handler: it appends each event to a JSON-lines
// file and syncs it before the event is acked. It is idempotent on its own: an
// id already in the file (handled just before a crash, then redelivered) is
// not written again, so the file holds each event once.
type recorder struct {
	log  *slog.Logger
	mu   sync.Mutex
	f    *os.File
	size int64
	seen map[string]bool
}

// openRecord opens (or creates) the record file and reads the ids it holds. A
// torn last line, from a crash in the middle of an append, is cut off.
func openRecord(path string, log *slog.Logger) (*recorder, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("record %s: %w", path, err)
	}
	whole := data[:bytes.LastIndexByte(data, '\n')+1]
	r := &recorder{log: log, f: f, size: int64(len(whole)), seen: make(map[string]bool)}
	sc := bufio.NewScanner(bytes.NewReader(whole))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l recordLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			f.Close()
			return nil, fmt.Errorf("record %s: line %q: %w", path, sc.Text(), err)
		}
		r.seen[l.ID] = true
	}
	if len(whole) < len(data) {
		log.Warn("record: cutting off a torn last line", "bytes", len(data)-len(whole))
		if err := r.truncate(); err != nil {
			f.Close()
			return nil, err
		}
	}
	return r, nil
}

// Handle appends e to the record, unless it is there already.
func (r *recorder) Handle(_ context.Context, e *outbox.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen[e.ID] {
		r.log.Info("record: event already recorded; a redelivery", "id", e.ID)
		return nil
	}
	line, err := json.Marshal(recordLine{ID: e.ID, Type: e.Type, EntityID: e.EntityID, EntitySeq: e.EntitySeq})
	if err != nil {
		return err
	}
	line = append(line, '\n')
	if _, err := r.f.WriteAt(line, r.size); err != nil {
		return fmt.Errorf("record %s: %w", e.ID, err)
	}
	if err := r.f.Sync(); err != nil {
		_ = r.truncate() // leave no line that was not made durable; the handler is retried
		return fmt.Errorf("record %s: sync: %w", e.ID, err)
	}
	r.size += int64(len(line))
	r.seen[e.ID] = true
	return nil
}

func (r *recorder) truncate() error {
	if err := r.f.Truncate(r.size); err != nil {
		return fmt.Errorf("record: truncate: %w", err)
	}
	return nil
}

// Close closes the record file.
func (r *recorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.f.Close()
}
