//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// suite is what TestMain found out about this machine.
var suite struct {
	compose []string // the compose command
	root    string   // the repository root
	skip    string   // why the suite cannot run here, if it cannot
}

var images = []string{"fitiqcore/relay:dev", "fitiqcore/nats-server:dev", "fitiqcore/subscriber:dev", "fitiqcore/demoapp:dev"}

func TestMain(m *testing.M) {
	if reason := setUp(); reason != "" {
		if inCI() {
			fmt.Fprintln(os.Stderr, "integration: CI=true and", reason)
			os.Exit(1)
		}
		suite.skip = reason
	}
	os.Exit(m.Run())
}

// setUp finds docker and compose and builds the images when one is missing
// (OUTBOX_IT_BUILD=1 builds them always). It returns why the suite cannot
// run, or "".
func setUp() string {
	ctx := context.Background()
	root, err := repoRoot()
	if err != nil {
		return err.Error()
	}
	suite.root = root
	if _, err := exec.LookPath("docker"); err != nil {
		return "docker is not installed"
	}
	if out, err := docker(ctx, "info", "--format", "{{.ServerVersion}}"); err != nil {
		return "the docker daemon does not answer: " + tail(out, 300)
	}
	if suite.compose, err = detectCompose(ctx); err != nil {
		return err.Error()
	}
	build := os.Getenv("OUTBOX_IT_BUILD") == "1"
	for _, img := range images {
		if _, err := docker(ctx, "image", "inspect", img); err != nil {
			build = true
		}
	}
	if build {
		fmt.Println("integration: building the images (make images)")
		if out, err := runCmd(ctx, root, nil, "make", "images"); err != nil {
			fmt.Fprintln(os.Stderr, out)
			return "make images failed: " + err.Error()
		}
	}
	return ""
}

func requireDocker(t *testing.T) {
	t.Helper()
	if suite.skip != "" {
		t.Skip("integration: " + suite.skip)
	}
}

// timeline is what happened when in a scenario.
type timeline struct {
	start   time.Time // the fault begins
	healed  time.Time // the fault is over
	paused  time.Time // the load stops
	drained time.Time // nothing pending, everything handled
	notes   []string
}

func (tl *timeline) note(format string, args ...any) {
	tl.notes = append(tl.notes, fmt.Sprintf(format, args...))
}

// Settling and recovery: load runs this long before the fault and after it.
const (
	settle   = 3 * time.Second
	recovery = 5 * time.Second
)

// runScenario brings up a fresh stack, lets the load settle, runs fault,
// lets the load run on, stops it, waits for the drain, checks the promise
// and prints the scenario's figures.
func runScenario(t *testing.T, name string, fault func(t *testing.T, s *stack, tl *timeline), overrides ...string) {
	requireDocker(t)
	s := newStack(t, overrides...)
	time.Sleep(settle)
	before := s.counters()
	tl := &timeline{start: time.Now()}
	fault(t, s, tl)
	if tl.healed.IsZero() {
		tl.healed = time.Now()
	}
	time.Sleep(recovery)
	s.setLoad(s.appURL, false)
	s.setLoad(s.embURL, false)
	tl.paused = time.Now()
	tl.drained = s.waitDrained(2 * time.Minute)
	after := s.counters()
	acc, lines, stream := s.verify()
	f := measure(name, before, after, tl, acc, lines, stream)
	fmt.Println(f.String())
	if dir := os.Getenv("OUTBOX_IT_DUMP"); dir != "" {
		dump(t, filepath.Join(dir, fmt.Sprintf("%s-%d.json", name, time.Now().Unix())), tl, acc, lines, stream)
	}
	if path := os.Getenv("OUTBOX_IT_RESULTS"); path != "" && !t.Failed() {
		if fh, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
			fmt.Fprintln(fh, f.String())
			fh.Close()
		}
	}
}

// dump writes what a scenario saw, for a closer look (OUTBOX_IT_DUMP=dir).
func dump(t *testing.T, path string, tl *timeline, acc map[string]accepted, lines []handled, stream []streamMsg) {
	type line struct {
		handled
		Seen time.Time `json:"seen"`
	}
	out := struct {
		Start, Healed, Paused, Drained time.Time
		Accepted                       map[string]accepted
		Handled                        []line
		Stream                         []streamMsg
	}{Start: tl.start, Healed: tl.healed, Paused: tl.paused, Drained: tl.drained, Accepted: acc, Stream: stream}
	for _, h := range lines {
		out.Handled = append(out.Handled, line{h, h.seen})
	}
	b, err := json.Marshal(out)
	if err == nil {
		err = os.WriteFile(path, b, 0o644)
	}
	if err != nil {
		t.Logf("dump: %v", err)
	}
}

// The relay is killed with SIGKILL three times under load and started
// again; then the app that embeds the library is killed once. Accepted
// events survive in the bbolt files; in-flight publishes are published again
// and JetStream's de-duplication stops the copies.
func TestRelaySIGKILL(t *testing.T) {
	runScenario(t, "relay-sigkill", func(t *testing.T, s *stack, tl *timeline) {
		// A higher rate keeps publishes in flight at the moment of the kill.
		s.setRate(s.appURL, 1000)
		s.setRate(s.embURL, 500)
		defer s.setRate(s.appURL, 200)
		defer s.setRate(s.embURL, 100)
		var back []string
		for range 3 {
			time.Sleep(4 * time.Second)
			s.kill("relay")
			time.Sleep(2 * time.Second)
			s.start("relay")
			d := eventually(t, time.Minute, "the relay to be ready again", func() (bool, string) {
				code, body, err := s.get(s.relayURL+"/readyz", nil)
				return err == nil && code == 200, fmt.Sprint(code, body, err)
			})
			back = append(back, d.Round(100*time.Millisecond).String())
		}
		tl.note("at 1000+500 events/s: relay SIGKILLed 3x, down 2s each, ready %s after start", strings.Join(back, "/"))
		time.Sleep(3 * time.Second)
		s.kill("app-embedded")
		time.Sleep(2 * time.Second)
		s.start("app-embedded")
		d := eventually(t, time.Minute, "the embedded app to answer again", func() (bool, string) {
			code, body, err := s.get(s.embURL+"/healthz", nil)
			return err == nil && code == 200, fmt.Sprint(code, body, err)
		})
		tl.note("app-embedded SIGKILLed once, up %s after start", d.Round(100*time.Millisecond))
	})
}

// The NATS node leading the stream is killed; the stream elects another
// leader and the relay fails over; the node comes back and catches up.
func TestNATSLeaderKill(t *testing.T) {
	runScenario(t, "nats-leader-kill", func(t *testing.T, s *stack, tl *timeline) {
		info, err := s.streamInfo()
		if err != nil {
			t.Fatal(err)
		}
		old := info.Cluster.Leader
		if _, ok := s.ids[old]; !ok {
			t.Fatalf("stream leader %q is not a service of the stack", old)
		}
		s.kill(old)
		var leader string
		d := eventually(t, time.Minute, "a new stream leader", func() (bool, string) {
			info, err := s.streamInfo()
			if err != nil {
				return false, err.Error()
			}
			leader = info.Cluster.Leader
			return leader != "" && leader != old, describeCluster(info)
		})
		tl.note("leader %s SIGKILLed, %s leads after %s", old, leader, d.Round(100*time.Millisecond))
		time.Sleep(8 * time.Second)
		s.start(old)
		d = eventually(t, 2*time.Minute, old+" to be back and current", func() (bool, string) {
			info, err := s.streamInfo()
			if err != nil {
				return false, err.Error()
			}
			return clusterHealthy(info), describeCluster(info)
		})
		tl.note("%s down 8s, current again %s after start", old, d.Round(100*time.Millisecond))
	})
}

// The relay loses its network to NATS for 20 s while its app goes on
// writing to it; then it is reconnected and drains the backlog.
func TestRelayPartition(t *testing.T) {
	runScenario(t, "relay-partition", func(t *testing.T, s *stack, tl *timeline) {
		st0, _ := s.appStats(s.appURL)
		s.cutOff("relay")
		time.Sleep(20 * time.Second)
		st1, _ := s.appStats(s.appURL)
		rs, err := s.relayStats()
		if err != nil {
			t.Fatalf("the relay does not answer its app while cut off from NATS: %v", err)
		}
		tl.note("cut off 20s: the relay went on accepting (%d events), %d pending at the end",
			num(st1["accepted"])-num(st0["accepted"]), rs.Pending)
		s.reconnect("relay")
		tl.healed = time.Now()
		d := eventually(t, 3*time.Minute, "the relay's backlog to be published", func() (bool, string) {
			rs, err := s.relayStats()
			if err != nil {
				return false, err.Error()
			}
			return rs.Pending < 200, fmt.Sprintf("%d pending", rs.Pending)
		})
		tl.note("backlog published %s after reconnect", d.Round(100*time.Millisecond))
	})
}

// The subscriber is killed with SIGKILL while it holds unacked messages, twice,
// and restarted; its durable consumer redelivers what it had not acked.
func TestSubscriberSIGKILL(t *testing.T) {
	runScenario(t, "subscriber-sigkill", func(t *testing.T, s *stack, tl *timeline) {
		var held []string
		for range 2 {
			time.Sleep(4 * time.Second)
			// Mid-batch: kill it the moment it holds delivered, unacked messages.
			pending := 0
			for end := time.Now().Add(5 * time.Second); pending <= 0 && time.Now().Before(end); {
				pending = s.ackPending()
			}
			s.kill("subscriber")
			held = append(held, fmt.Sprint(pending))
			time.Sleep(2 * time.Second)
			s.start("subscriber")
		}
		tl.note("subscriber SIGKILLed 2x while holding %s unacked messages, down 2s each", strings.Join(held, "/"))
	})
}

// ackPending is the subscriber's durable's count of delivered, unacked
// messages (-1 when it cannot be read).
func (s *stack) ackPending() int {
	info, err := s.consumerInfo()
	if err != nil {
		return -1
	}
	return info.NumAckPending
}

func (s *stack) consumerInfo() (*jetstream.ConsumerInfo, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := s.js.Consumer(ctx, streamName, "demo-subscriber")
	if err != nil {
		return nil, err
	}
	return c.Info(ctx)
}

// The relay, cut off from NATS, takes events until its store reaches its
// quota (store.max_bytes below the size of its tmpfs): ingest then answers
// 503 with Retry-After and stores nothing. Reconnected, it drains, removes
// what was acked, and ingest resumes.
func TestDiskQuota(t *testing.T) {
	runScenario(t, "disk-quota", func(t *testing.T, s *stack, tl *timeline) {
		s.cutOff("relay")
		s.setRate(s.appURL, 3000)
		start := time.Now()
		var st map[string]any
		d := eventually(t, 2*time.Minute, "ingest to refuse", func() (bool, string) {
			var err error
			st, err = s.appStats(s.appURL)
			if err != nil {
				return false, err.Error()
			}
			return num(st["refused_503"]) > 0 || num(st["server_errors"]) > 0, fmt.Sprint(st)
		})
		rs, _ := s.relayStats()
		tl.note("cut off and loaded at 3000/s: refused after %s with %d pending, %d bytes of records, tmpfs %s",
			d.Round(100*time.Millisecond), rs.Pending, rs.Bytes, s.volumeUsage("relay-data"))
		if num(st["refused_503"]) == 0 {
			t.Fatalf("ingest failed without the 503 of admission control: %v", st["last_answer"])
		}
		// A refusal as a client sees it.
		code, body, err := s.do("POST", s.relayURL+"/v1/events", []byte(`{"type":"demo.probe","entity_id":"probe"}`), nil)
		if err != nil || code != 503 {
			t.Fatalf("POST /v1/events while full: %d %s %v", code, body, err)
		}
		tl.note("POST answered %d %s", code, strings.TrimSpace(body))
		time.Sleep(3 * time.Second)
		s.reconnect("relay")
		s.setRate(s.appURL, 200)
		tl.healed = time.Now()
		healed := tl.healed.UnixMilli()
		d = eventually(t, 2*time.Minute, "ingest to resume", func() (bool, string) {
			st, err := s.appStats(s.appURL)
			if err != nil {
				return false, err.Error()
			}
			return num(st["last_accepted_at"]) > healed, fmt.Sprint(st["last_refusal"])
		})
		tl.note("freed by reconnecting (acked events are removed): ingest resumed %s later, %s after the fill began",
			d.Round(100*time.Millisecond), time.Since(start).Round(time.Second))
	})
}

// Without admission control the relay's store fills the tmpfs itself. What
// should happen: ingest refuses with a clear error, and once the relay can
// publish again it drains, frees space and ingest resumes. What happens
// today (see docs/RELIABILITY.md): ingest answers 500 "no space left on
// device", and the relay can no longer record any ack: it re-publishes the
// same heads in a loop and never drains. Skipped unless OUTBOX_IT_DISKFULL=1,
// until the relay handles a full disk.
func TestDiskFullWithoutQuota(t *testing.T) {
	if os.Getenv("OUTBOX_IT_DISKFULL") != "1" {
		t.Skip("a full disk wedges the relay (docs/RELIABILITY.md, known problems); OUTBOX_IT_DISKFULL=1 runs it")
	}
	runScenario(t, "disk-full-no-quota", func(t *testing.T, s *stack, tl *timeline) {
		s.cutOff("relay")
		s.setRate(s.appURL, 3000)
		var st map[string]any
		d := eventually(t, 2*time.Minute, "ingest to refuse", func() (bool, string) {
			var err error
			st, err = s.appStats(s.appURL)
			if err != nil {
				return false, err.Error()
			}
			return num(st["refused_503"]) > 0 || num(st["server_errors"]) > 0, fmt.Sprint(st)
		})
		tl.note("refused after %s: 503 x%d, 5xx x%d, last answer %v, tmpfs %s", d.Round(100*time.Millisecond),
			num(st["refused_503"]), num(st["server_errors"]), st["last_answer"], s.volumeUsage("relay-data"))
		s.reconnect("relay")
		s.setRate(s.appURL, 200)
		tl.healed = time.Now()
		healed := tl.healed.UnixMilli()
		d = eventually(t, 3*time.Minute, "ingest to resume", func() (bool, string) {
			st, err := s.appStats(s.appURL)
			if err != nil {
				return false, err.Error()
			}
			return num(st["last_accepted_at"]) > healed, fmt.Sprint(st["last_answer"])
		})
		tl.note("ingest resumed %s after reconnecting", d.Round(100*time.Millisecond))
	}, "integration/testdata/diskfull.yml")
}
