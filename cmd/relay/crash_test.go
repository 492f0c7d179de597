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
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/internal/natstest"
	"github.com/fitiqcore/outbox/internal/poll"
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
	poll.Until(c.t, 15*time.Second, "relay /healthz", func() bool {
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

// crashClient posts batches to a relay that is killed under it, one batch
// at a time: a batch whose answer is lost (the relay died) is posted again
// with the same ids until it is answered, and some answered batches are
// posted again as well. Its entities are its own, so the order of its acked
// batches is the order their entities' events must reach the stream in.
type crashClient struct {
	n        int
	addr     string
	hc       *http.Client
	acked    []*outbox.Event // in the order they were acknowledged
	tries    int             // posts that got no answer (the relay was dead or died)
	lost     int             // batches posted again after a post got no answer
	storedOK int             // of those, the ones found stored (200): the answer was lost, not the batch
	reposts  int             // re-posts of acknowledged batches, answered 200
	err      error           // a contract violation: stops the client
}

// send posts one batch until the relay answers it, and returns the status.
// A dead relay (a refused or cut connection) or a 5xx is retried.
func (c *crashClient) send(body []byte) int {
	for {
		resp, err := c.hc.Post("http://"+c.addr+"/v1/events/batch", "application/json", bytes.NewReader(body))
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode < 500 {
				return resp.StatusCode
			}
		}
		c.tries++
		time.Sleep(5 * time.Millisecond) // pace the retries while the relay restarts
	}
}

func (c *crashClient) run(stop <-chan struct{}, progress *atomic.Int64) {
	for b := 0; ; b++ {
		select {
		case <-stop:
			return
		default:
		}
		events := make([]*outbox.Event, 50)
		for i := range events {
			events[i] = &outbox.Event{ID: uuid.NewString(), Type: "crash.test", EntityID: fmt.Sprintf("c%d-e%d", c.n, (b*len(events)+i)%7),
				Payload: fmt.Appendf(nil, `{"b":%d,"i":%d}`, b, i), ContentType: outbox.ContentTypeJSON}
		}
		body, _ := json.Marshal(map[string]any{"events": events})
		triesBefore := c.tries
		status := c.send(body)
		retried := c.tries > triesBefore
		if retried {
			c.lost++
		}
		switch {
		case status == http.StatusOK && retried:
			c.storedOK++ // stored before the kill, its answer lost: stored once
		case status == http.StatusCreated:
		default:
			c.err = fmt.Errorf("client %d batch %d: answered %d, want 201 (or 200 after a lost answer)", c.n, b, status)
			return
		}
		c.acked = append(c.acked, events...)
		progress.Add(1)
		if b%4 == 3 { // re-post an acknowledged batch: it stores nothing
			if status := c.send(body); status != http.StatusOK {
				c.err = fmt.Errorf("client %d batch %d: re-post of an acknowledged batch answered %d, want 200", c.n, b, status)
				return
			}
			c.reposts++
		}
	}
}

// TestCrashSIGKILLLosesNothingAndDuplicatesNothing (issue 9, "kill it more
// often") kills a real child relay with SIGKILL 24 times while four clients
// keep posting and re-posting after lost answers. Every event acknowledged to
// a client (201, or 200 for a re-post) is in the stream exactly once, nothing
// else is, and each entity's events are there in the order they were
// acknowledged, with entity_seq 1, 2, 3, ...
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

	const kills, clients = 24, 4
	var progress atomic.Int64
	stop := make(chan struct{})
	cls := make([]*crashClient, clients)
	var wg sync.WaitGroup
	for i := range cls {
		cls[i] = &crashClient{n: i, addr: addr, hc: &http.Client{Timeout: 30 * time.Second}}
		wg.Add(1)
		go func() { defer wg.Done(); cls[i].run(stop, &progress) }()
	}
	withBacklog := 0
	for k := range kills {
		// Let the clients get some batches through, a different number each
		// time, so the kills land at different points of ingest and drain.
		at := progress.Load() + int64(1+k%5)
		poll.Until(t, 30*time.Second, fmt.Sprintf("progress before kill %d", k+1), func() bool { return progress.Load() >= at })
		if st := c.stats(); st["pending"] > 0 {
			withBacklog++
		}
		c.kill()
		c.start()
	}
	close(stop)
	wg.Wait() // each client finishes its batch against the restarted relay

	var acked []*outbox.Event
	lost, storedOK, reposts := 0, 0, 0
	for _, cl := range cls {
		if cl.err != nil {
			t.Error(cl.err)
		}
		acked = append(acked, cl.acked...)
		lost, storedOK, reposts = lost+cl.lost, storedOK+cl.storedOK, reposts+cl.reposts
	}
	t.Logf("%d kills (%d with a backlog pending): %d events acknowledged, %d answers lost and posted again (%d of them found stored), %d acknowledged batches re-posted",
		kills, withBacklog, len(acked), lost, storedOK, reposts)
	if lost == 0 {
		t.Errorf("no answer was lost to a kill: the re-post path was not exercised")
	}
	if withBacklog == 0 {
		t.Errorf("no kill landed while events were pending")
	}
	poll.Until(t, 60*time.Second, "backlog drained", func() bool {
		st := c.stats()
		return st["pending"] == 0 && st["completed"] == int64(len(acked))
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

	// Every acknowledged event once, nothing else, each entity in order.
	want := map[string][]string{} // entity → ids in the order acknowledged
	isAcked := map[string]bool{}
	for _, e := range acked {
		want[e.EntityID] = append(want[e.EntityID], e.ID)
		isAcked[e.ID] = true
	}
	got := natstest.Read(t, js, "CRASH")
	seen := map[string]int{}
	pos := map[string]int{}
	unacked, dup, disorder := 0, 0, 0
	for _, e := range got {
		seen[e.ID]++
		switch {
		case !isAcked[e.ID]:
			unacked++
			continue
		case seen[e.ID] > 1:
			dup++
			continue
		}
		i := pos[e.EntityID]
		if i >= len(want[e.EntityID]) || want[e.EntityID][i] != e.ID || e.EntitySeq != uint64(i+1) {
			if disorder < 5 {
				t.Errorf("entity %s: event %d of the stream is %s with entity_seq %d, want the %d-th acknowledged", e.EntityID, i+1, e.ID, e.EntitySeq, i+1)
			}
			disorder++
		}
		pos[e.EntityID] = i + 1
	}
	missing := 0
	for id := range isAcked {
		if seen[id] == 0 {
			missing++
		}
	}
	if missing != 0 || dup != 0 || unacked != 0 || disorder != 0 || len(got) != len(acked) {
		t.Errorf("after %d SIGKILLs: %d events acknowledged, %d in the stream: %d missing, %d duplicated, %d never acknowledged, %d out of order",
			kills, len(acked), len(got), missing, dup, unacked, disorder)
	}
}
