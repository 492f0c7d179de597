package boltstore_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
)

// storeFile writes a closed store file holding a few thousand events and
// returns its path and the bytes its pages use (bbolt grows the file ahead
// of them).
func storeFile(t *testing.T) (string, int64) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "outbox.db")
	s, err := boltstore.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.DB().NoSync = true
	payload := make([]byte, 700)
	enqueueMany(t, s, 4000, func(i int) *outbox.Event {
		e := userEv([]string{"a", "b"}[i%2], "", i%10)
		e.Payload = payload
		return e
	})
	var used int64
	if err := s.DB().View(func(tx *bolt.Tx) error { used = tx.Size(); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path, used
}

// damaged copies the store file at src, lets damage change it, and returns
// the copy's path.
func damaged(t *testing.T, src string, damage func(f *os.File, size int64)) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "damaged.db")
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	n, err := io.Copy(out, in)
	if err != nil {
		t.Fatal(err)
	}
	damage(out, n)
	return dst
}

// TestDamagedFileIsAnError: a truncated or overwritten store file made the
// process crash when opened (truncated to 50%: "fatal error: fault" from a
// SIGBUS; to 1%: panic "invalid freelist page"; issue 9 row 8). Open now
// checks the file before bbolt maps it and returns an error wrapping
// ErrCorrupt that names the file.
func TestDamagedFileIsAnError(t *testing.T) {
	src, used := storeFile(t)
	garbage := func(off int64, n int) func(f *os.File, size int64) {
		return func(f *os.File, _ int64) {
			b := make([]byte, n)
			for i := range b {
				b[i] = byte(i*7 + 3)
			}
			if _, err := f.WriteAt(b, off); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name   string
		damage func(f *os.File, size int64)
	}{
		{"truncated to 50%", func(f *os.File, _ int64) { f.Truncate(used / 2) }},
		{"truncated to 10%", func(f *os.File, _ int64) { f.Truncate(used / 10) }},
		{"truncated to 1%", func(f *os.File, _ int64) { f.Truncate(used / 100) }},
		{"truncated to 100 bytes", func(f *os.File, _ int64) { f.Truncate(100) }},
		{"both meta pages overwritten", func(f *os.File, _ int64) {
			garbage(0, 200)(f, 0)
			garbage(4096, 200)(f, 0)
		}},
		{"not a bbolt file", func(f *os.File, size int64) { garbage(0, int(size))(f, size) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := damaged(t, src, tt.damage)
			s, err := boltstore.Open(path, nil)
			if err == nil {
				s.Close()
				t.Fatal("opened a damaged file")
			}
			if !errors.Is(err, boltstore.ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
			if cerr := boltstore.CheckFile(path); !errors.Is(cerr, boltstore.ErrCorrupt) {
				t.Errorf("CheckFile: %v", cerr)
			}
		})
	}
	if err := boltstore.CheckFile(src); err != nil {
		t.Errorf("CheckFile of the intact file: %v", err)
	}
}

// TestDamagedKeysAreErrors: bytes the store wrote, changed behind its back,
// are errors wrapping ErrCorrupt, never a panic: a one-byte meta/version
// panicked with "index out of range" (issue 9 row 8), a ready entry whose
// record is missing made Due dereference nil (row 14).
func TestDamagedKeysAreErrors(t *testing.T) {
	ctx := context.Background()
	put := func(bucket string, k, v []byte) func(tx *bolt.Tx) error {
		return func(tx *bolt.Tx) error { return tx.Bucket([]byte(bucket)).Put(k, v) }
	}
	tests := []struct {
		name  string
		edit  func(tx *bolt.Tx, e *outbox.Event) error
		check func(s *boltstore.Store, e *outbox.Event) error // nil: Open itself must fail
	}{
		{"meta/version of one byte", func(tx *bolt.Tx, _ *outbox.Event) error {
			return put("meta", []byte("version"), []byte{2})(tx)
		}, nil},
		{"meta/stats cut short", func(tx *bolt.Tx, _ *outbox.Event) error {
			return put("meta", []byte("stats"), []byte{1, 2, 3})(tx)
		}, nil},
		{"ready entry without its record", func(tx *bolt.Tx, e *outbox.Event) error {
			return tx.Bucket([]byte("events")).Delete(binary.BigEndian.AppendUint64(nil, e.Seq))
		}, func(s *boltstore.Store, _ *outbox.Event) error {
			_, _, err := s.Due(ctx, t0, 10, nil)
			return err
		}},
		{"ready key cut short", func(tx *bolt.Tx, _ *outbox.Event) error {
			return tx.Bucket([]byte("ready")).Put([]byte{1, 2}, []byte{})
		}, func(s *boltstore.Store, _ *outbox.Event) error {
			_, _, err := s.Due(ctx, t0, 10, nil)
			return err
		}},
		{"record cut short", func(tx *bolt.Tx, e *outbox.Event) error {
			return put("events", binary.BigEndian.AppendUint64(nil, e.Seq), []byte{3, 0, 0})(tx)
		}, func(s *boltstore.Store, e *outbox.Event) error {
			_, err := s.Get(ctx, e.ID)
			return err
		}},
		{"ids entry of 3 bytes", func(tx *bolt.Tx, e *outbox.Event) error {
			u := uuid.MustParse(e.ID)
			return put("ids", u[:], []byte{1, 2, 3})(tx)
		}, func(s *boltstore.Store, e *outbox.Event) error {
			_, err := s.Get(ctx, e.ID)
			return err
		}},
		{"entities entry of 3 bytes", func(tx *bolt.Tx, e *outbox.Event) error {
			return put("entity", append(append([]byte{0, byte(len(e.EntityID))}, e.EntityID...), 0x00), []byte{1, 2, 3})(tx)
		}, func(s *boltstore.Store, e *outbox.Event) error {
			_, err := s.Enqueue(ctx, ev("t", e.EntityID, 0))
			return err
		}},
		{"user_counts entry of 3 bytes", func(tx *bolt.Tx, _ *outbox.Event) error {
			return put("user", []byte{0, 1, 'u', 0xff}, []byte{1, 2, 3})(tx)
		}, func(s *boltstore.Store, _ *outbox.Event) error {
			_, err := s.UserStats(ctx, "u")
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "outbox.db")
			s, err := boltstore.Open(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			e := ev("t", "ent", 0)
			mustEnqueue(t, s, e)
			if err := s.DB().Update(func(tx *bolt.Tx) error { return tt.edit(tx, e) }); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s, err = boltstore.Open(path, nil)
			if tt.check == nil {
				if !errors.Is(err, boltstore.ErrCorrupt) {
					t.Fatalf("open: %v, want ErrCorrupt", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			defer s.Close()
			if err := tt.check(s, e); !errors.Is(err, boltstore.ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
		})
	}
}
