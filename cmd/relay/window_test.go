package main_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
	"github.com/fitiqcore/outbox/internal/natstest"
	"github.com/fitiqcore/outbox/internal/poll"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
)

// TestCrashPastDuplicateWindow kills a relay with publishes in flight whose
// acks were lost, and starts it again 5 s later, past the stream's 1 s
// duplicate window, so JetStream's de-duplication can no longer help. With
// the start-up read-back (relay.reconcile, the default) the stream still
// holds every event once; the control run without it shows the duplicates
// that the read-back prevents.
func TestCrashPastDuplicateWindow(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a child process")
	}
	bin := buildRelay(t)
	for _, tc := range []struct {
		name      string
		reconcile bool
	}{{"reconcile", true}, {"control without reconcile", false}} {
		t.Run(tc.name, func(t *testing.T) {
			ns := natstest.Start(t)
			_, js := ns.Connect(t)
			dir := t.TempDir()
			addr := fmt.Sprintf("127.0.0.1:%d", natstest.FreePort(t))
			cfg := filepath.Join(dir, "relay.yaml")
			os.WriteFile(cfg, fmt.Appendf(nil, `store:
  path: %s
nats:
  url: %s
stream:
  name: WINDOW
  subject_prefix: window
  duplicate_window: 1s
http:
  addr: %s
relay:
  batch_size: 1000
  max_in_flight: 4096
  reconcile: %v
log:
  format: json
`, filepath.Join(dir, "outbox.db"), ns.URL(), addr, tc.reconcile), 0o600)
			c := &child{t: t, bin: bin, config: cfg, addr: addr}
			c.start()

			// Load, kill mid-stream, until the kill lands with events the
			// stream stored but the relay never recorded as completed.
			var ids []string
			var stored, completed int64
			for try := 0; ; try++ {
				if try == 10 {
					t.Fatal("no kill landed with acks in flight in 10 tries")
				}
				for range 10 {
					events := make([]*outbox.Event, 1000)
					for i := range events {
						events[i] = &outbox.Event{ID: uuid.NewString(), Type: "window.test", EntityID: fmt.Sprintf("w-%d", len(ids)%500), Payload: []byte(`{}`), ContentType: outbox.ContentTypeJSON}
						ids = append(ids, events[i].ID)
					}
					if !c.post(events) {
						t.Fatal("batch refused")
					}
				}
				poll.Until(t, 20*time.Second, "publishing under way", func() bool {
					st := c.stats()
					return st["completed"] > int64(try*5000)
				})
				if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				c.cmd.Wait()
				// The server may still be storing what the dead relay sent:
				// wait until the count settles.
				stored = -1
				for n := streamMsgs(t, js, "WINDOW"); n != stored; n = streamMsgs(t, js, "WINDOW") {
					stored = n
					time.Sleep(300 * time.Millisecond)
				}
				completed = storeCompleted(t, filepath.Join(dir, "outbox.db"))
				if stored > completed {
					break
				}
				c.start()
			}
			t.Logf("at the kill: %d events accepted, %d in the stream, %d recorded completed: %d acks lost", len(ids), stored, completed, stored-completed)

			time.Sleep(5 * time.Second) // past the 1 s duplicate window
			c.start()
			poll.Until(t, 60*time.Second, "backlog drained", func() bool {
				st := c.stats()
				return st["pending"] == 0 && st["completed"] == int64(len(ids))
			})
			c.cmd.Process.Signal(syscall.SIGTERM)
			c.cmd.Wait()

			seen := map[string]int{}
			for _, e := range natstest.Read(t, js, "WINDOW") {
				seen[e.ID]++
			}
			lost, dup := 0, 0
			for _, id := range ids {
				switch n := seen[id]; {
				case n == 0:
					lost++
				case n > 1:
					dup += n - 1
				}
			}
			t.Logf("after the restart: %d lost, %d duplicates", lost, dup)
			if lost != 0 {
				t.Errorf("%d events lost", lost)
			}
			if tc.reconcile {
				if dup != 0 {
					t.Errorf("%d duplicates in the stream despite the read-back", dup)
				}
				if !strings.Contains(c.log.String(), `"msg":"stream read back"`) {
					t.Errorf("no read-back in the log:\n%s", c.log.String())
				}
			} else if int64(dup) != stored-completed {
				t.Errorf("control: %d duplicates, want the %d events whose acks were lost", dup, stored-completed)
			}
		})
	}
}

func streamMsgs(t *testing.T, js jetstream.JetStream, name string) int64 {
	t.Helper()
	st, err := js.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return int64(info.State.Msgs)
}

// storeCompleted opens the dead relay's store file and counts what it had
// recorded as completed.
func storeCompleted(t *testing.T, path string) int64 {
	t.Helper()
	s, err := boltstore.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, err := s.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st.Completed
}
