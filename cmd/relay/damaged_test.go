package main_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
	"github.com/fitiqcore/outbox/internal/natstest"
	bolt "go.etcd.io/bbolt"
)

// makeStore writes a real store file with a few thousand events, so that
// its pages span several megabytes.
func makeStore(t *testing.T, path string) {
	t.Helper()
	store, err := boltstore.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	payload := []byte(`"` + strings.Repeat("x", 1000) + `"`)
	for b := range 5 {
		err := store.DB().Update(func(tx *bolt.Tx) error {
			events := make([]*outbox.Event, 1000)
			for i := range events {
				events[i] = &outbox.Event{Type: "damage.test", EntityID: fmt.Sprintf("e-%d", (b*1000+i)%97), Payload: payload, ContentType: outbox.ContentTypeJSON}
			}
			_, err := store.EnqueueTx(tx, events...)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
}

// truncateTo cuts the file to frac of the pages it uses (bbolt's file has a
// preallocated tail beyond them).
func truncateTo(frac float64) func(t *testing.T, path string) {
	return func(t *testing.T, path string) {
		t.Helper()
		db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		var used int64
		db.View(func(tx *bolt.Tx) error { used = tx.Size(); return nil })
		db.Close()
		if err := os.Truncate(path, int64(float64(used)*frac)); err != nil {
			t.Fatal(err)
		}
	}
}

// setMeta overwrites one key of the store's meta bucket.
func setMeta(key string, v []byte) func(t *testing.T, path string) {
	return func(t *testing.T, path string) {
		t.Helper()
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		err = db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("meta")).Put([]byte(key), v) })
		if err != nil {
			t.Fatal(err)
		}
	}
}

// runBin runs the relay binary to its end and returns its exit code and
// what it wrote.
func runBin(t *testing.T, bin string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee) && ee.Exited():
		return ee.ExitCode(), string(out)
	}
	t.Fatalf("relay %s: %v (did not exit by itself)\n%s", strings.Join(args, " "), err, out)
	return 0, ""
}

// hasAll fails the test unless s contains every want.
func hasAll(t *testing.T, what, s string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(s, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, s)
		}
	}
}

// noCrash fails the test when out shows a Go panic or a fatal runtime error.
func noCrash(t *testing.T, what, out string) {
	t.Helper()
	for _, sign := range []string{"panic:", "fatal error:", "goroutine ", "SIGBUS", "SIGSEGV"} {
		if strings.Contains(out, sign) {
			t.Errorf("%s crashed (%q):\n%s", what, sign, out)
			return
		}
	}
}

// TestServeRefusesDamagedStore (issue 9, row 8): on a truncated or corrupt
// store file relay serve exits 1 with a message naming the file and what to
// do, never with a panic or a fault; relay backup --offline and relay
// compact fail or succeed cleanly on the same files.
func TestServeRefusesDamagedStore(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the relay binary")
	}
	bin := buildRelay(t)
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, path string)
		// readable: the pages are whole, so backup --offline copies them.
		readable bool
	}{
		{"truncated to 50%", truncateTo(0.5), false},
		{"truncated to 1%", truncateTo(0.01), false},
		{"meta/version of 1 byte", setMeta("version", []byte{2}), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "outbox.db")
			makeStore(t, path)
			tc.damage(t, path)
			cfg := filepath.Join(dir, "relay.yaml")
			os.WriteFile(cfg, fmt.Appendf(nil, "store:\n  path: %s\nnats:\n  embedded_addr: 127.0.0.1:%d\n  store_dir: %s\nhttp:\n  addr: 127.0.0.1:%d\nlog:\n  format: json\n",
				path, natstest.FreePort(t), filepath.Join(dir, "nats"), natstest.FreePort(t)), 0o600)

			code, out := runBin(t, bin, "serve", "--config", cfg)
			noCrash(t, "relay serve", out)
			if code != 1 {
				t.Errorf("relay serve exited %d, want 1:\n%s", code, out)
			}
			hasAll(t, "relay serve's message", out, "the store file "+path+" (store.path) is damaged",
				"restore a backup", "relay backup --offline --config "+cfg, "relay compact --config "+cfg)

			copyPath := filepath.Join(dir, "copy.db")
			code, out = runBin(t, bin, "backup", "--offline", "--config", cfg, copyPath)
			noCrash(t, "relay backup --offline", out)
			if tc.readable {
				if code != 0 {
					t.Errorf("backup --offline of a file with whole pages exited %d, want 0:\n%s", code, out)
				}
				hasAll(t, "backup --offline", out, "backup: "+copyPath, "5000 events")
			} else {
				if code != 1 {
					t.Errorf("backup --offline of a truncated file exited %d, want 1:\n%s", code, out)
				}
				hasAll(t, "backup --offline of a truncated file", out, path)
				if _, err := os.Stat(copyPath); !os.IsNotExist(err) {
					t.Errorf("a failed backup --offline left %s: %v", copyPath, err)
				}
			}

			code, out = runBin(t, bin, "compact", "--config", cfg)
			noCrash(t, "relay compact", out)
			if code != 0 && code != 1 {
				t.Errorf("relay compact exited %d:\n%s", code, out)
			}
		})
	}
}
