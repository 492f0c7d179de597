package main_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/internal/natstest"
	"github.com/google/uuid"
)

// buildRelay compiles this command once per test binary.
func buildRelay(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "relay")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go build: %v", err)
	}
	return bin
}

type child struct {
	t      *testing.T
	bin    string
	config string
	addr   string
	cmd    *exec.Cmd
	log    *bytes.Buffer
}

func (c *child) start() {
	c.t.Helper()
	c.log = &bytes.Buffer{}
	c.cmd = exec.Command(c.bin, "serve", "--config", c.config)
	c.cmd.Stderr = c.log
	c.cmd.Stdout = io.Discard
	if err := c.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	natstest.Eventually(c.t, 15*time.Second, "relay /healthz", func() bool {
		resp, err := http.Get("http://" + c.addr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

func (c *child) kill() {
	c.t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		c.t.Fatal(err)
	}
	_ = c.cmd.Wait()
}

func (c *child) stats() map[string]int64 {
	c.t.Helper()
	resp, err := http.Get("http://" + c.addr + "/v1/stats")
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		c.t.Fatal(err)
	}
	st := map[string]int64{}
	for k, v := range raw {
		if n, ok := v.(float64); ok {
			st[k] = int64(n)
		}
	}
	return st
}

// post sends a batch; false when the relay did not answer 201.
func (c *child) post(events []*outbox.Event) bool {
	b, err := json.Marshal(map[string]any{"events": events})
	if err != nil {
		c.t.Fatal(err)
	}
	resp, err := http.Post("http://"+c.addr+"/v1/events/batch", "application/json", bytes.NewReader(b))
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode == http.StatusCreated
}

func writeConfig(t *testing.T, dir, natsURL, addr string) string {
	t.Helper()
	cfg := fmt.Sprintf(`store:
  path: %s
nats:
  url: %s
stream:
  name: CRASH
  subject_prefix: crash
http:
  addr: %s
relay:
  batch_size: 50
  max_in_flight: 200
log:
  format: json
  level: info
`, filepath.Join(dir, "outbox.db"), natsURL, addr)
	path := filepath.Join(dir, "relay.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCrashSIGKILLLosesNothingAndDuplicatesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a child process")
	}
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	dir := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", natstest.FreePort(t))
	c := &child{t: t, bin: buildRelay(t), config: writeConfig(t, dir, ns.URL(), addr), addr: addr}
	c.start()
	defer func() {
		if c.cmd.ProcessState == nil {
			c.kill()
		}
	}()

	const batches, perBatch, kills = 40, 250, 4
	var ids []string
	midStream := 0
	for b := range batches {
		events := make([]*outbox.Event, perBatch)
		for i := range events {
			id := uuid.NewString()
			events[i] = &outbox.Event{ID: id, Type: "crash.test", EntityID: fmt.Sprintf("entity-%d", (b*perBatch+i)%37), Payload: []byte(`{"n":1}`), ContentType: outbox.ContentTypeJSON}
			ids = append(ids, id)
		}
		for !c.post(events) { // the same ids again after a crash: idempotent
			c.kill()
			c.start()
		}
		if b%(batches/kills) == batches/kills-1 {
			// Mid-stream: kill while the relay is publishing the backlog.
			st := c.stats()
			if st["pending"] > 0 && st["completed"] > 0 {
				midStream++
			}
			c.kill()
			if c.log.Len() == 0 {
				t.Log("relay wrote no log before the kill")
			}
			c.start()
			if p := c.stats()["processing"]; p != 0 {
				t.Errorf("after restart %d events are processing, want 0", p)
			}
		}
	}
	t.Logf("%d of %d kills landed mid-stream", midStream, kills)
	if midStream == 0 {
		t.Errorf("no kill landed while events were pending and being published")
	}
	natstest.Eventually(t, 60*time.Second, "backlog drained", func() bool {
		st := c.stats()
		return st["pending"] == 0 && st["completed"] == int64(len(ids))
	})
	// SIGTERM drains and exits cleanly.
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Wait(); err != nil {
		t.Errorf("relay exited with %v after SIGTERM\n%s", err, c.log.String())
	}
	if !strings.Contains(c.log.String(), "relay stopped") {
		t.Errorf("no clean shutdown in the log:\n%s", c.log.String())
	}

	got := natstest.Read(t, js, "CRASH")
	seen := map[string]int{}
	last := map[string]uint64{}
	for _, e := range got {
		seen[e.ID]++
		if e.EntitySeq != last[e.EntityID]+1 {
			t.Errorf("entity %s: entity_seq %d after %d in the stream", e.EntityID, e.EntitySeq, last[e.EntityID])
		}
		last[e.EntityID] = e.EntitySeq
	}
	lost, dup := 0, 0
	for _, id := range ids {
		switch seen[id] {
		case 0:
			lost++
		case 1:
		default:
			dup++
		}
	}
	if lost != 0 || dup != 0 || len(got) != len(ids) {
		t.Errorf("after %d SIGKILLs: %d events, %d in the stream, %d lost, %d duplicated", kills, len(ids), len(got), lost, dup)
	}
}
