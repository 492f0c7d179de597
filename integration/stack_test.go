//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	project    = "outboxit"          // the compose project of the suite
	relayToken = "outbox-demo-token" // deploy/relay.yaml's http.token
	streamName = "OUTBOX"
)

// The suite publishes the stack on ports of its own (127.0.0.1 only), so that
// it does not collide with a stack a developer runs on the defaults.
var suitePorts = map[string]int{
	"OUTBOX_PORT_N1": 24222, "OUTBOX_PORT_N2": 24223, "OUTBOX_PORT_N3": 24224,
	"OUTBOX_PORT_N1_HTTP": 28222, "OUTBOX_PORT_N2_HTTP": 28223, "OUTBOX_PORT_N3_HTTP": 28224,
	"OUTBOX_PORT_RELAY": 27070, "OUTBOX_PORT_APP": 28080, "OUTBOX_PORT_APP_EMBEDDED": 28081,
}

var services = []string{"n1", "n2", "n3", "relay", "app", "app-embedded", "subscriber"}

// stack is one running docker-compose stack.
type stack struct {
	t        testing.TB
	c        *compose
	ids      map[string]string // service → container id
	natsnet  string            // the docker network shared with NATS
	relayURL string
	appURL   string // the app of the sidecar
	embURL   string // the app embedding the library
	hc       *http.Client
	nc       *nats.Conn
	js       jetstream.JetStream
	tail     *tailer
}

// newStack brings up a fresh stack (removing any left by an earlier run) and
// waits until events flow end to end. It is taken down, volumes included, at
// the end of the test, also when the test fails. overrides are compose files
// (relative to the repository root) applied over docker-compose.yml.
func newStack(t *testing.T, overrides ...string) *stack {
	t.Helper()
	ctx := context.Background()
	env := make([]string, 0, len(suitePorts))
	for k, v := range suitePorts {
		env = append(env, fmt.Sprintf("%s=%d", k, v))
	}
	s := &stack{
		t:        t,
		c:        &compose{bin: suite.compose, root: suite.root, project: project, files: append([]string{"docker-compose.yml"}, overrides...), env: env},
		ids:      map[string]string{},
		relayURL: fmt.Sprintf("http://127.0.0.1:%d", suitePorts["OUTBOX_PORT_RELAY"]),
		appURL:   fmt.Sprintf("http://127.0.0.1:%d", suitePorts["OUTBOX_PORT_APP"]),
		embURL:   fmt.Sprintf("http://127.0.0.1:%d", suitePorts["OUTBOX_PORT_APP_EMBEDDED"]),
		hc:       &http.Client{Timeout: 30 * time.Second},
	}
	s.down(ctx)
	t.Cleanup(func() {
		if s.tail != nil {
			s.tail.Stop()
		}
		if s.nc != nil {
			s.nc.Close()
		}
		if t.Failed() {
			s.dumpLogs(ctx)
		}
		s.down(ctx)
	})
	started := time.Now()
	if _, err := s.c.run(ctx, "up", "-d"); err != nil {
		t.Fatalf("compose up: %v", err)
	}
	for _, svc := range services {
		out, err := s.c.run(ctx, "ps", "-q", svc)
		id := strings.TrimSpace(out)
		if err != nil || id == "" {
			t.Fatalf("container of %s: %q %v", svc, out, err)
		}
		s.ids[svc] = id
	}
	out, err := docker(ctx, "inspect", "-f", `{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}`, s.ids["relay"])
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range strings.Fields(out) {
		if strings.HasSuffix(n, "natsnet") {
			s.natsnet = n
		}
	}
	if s.natsnet == "" {
		t.Fatalf("the relay is on %q, none of them natsnet", out)
	}

	urls := make([]string, 0, 3)
	for _, k := range []string{"OUTBOX_PORT_N1", "OUTBOX_PORT_N2", "OUTBOX_PORT_N3"} {
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", suitePorts[k]))
	}
	s.nc, err = nats.Connect(strings.Join(urls, ","), nats.Name("outbox-integration"), nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond), nats.RetryOnFailedConnect(true), nats.Timeout(2*time.Second))
	if err != nil {
		t.Fatalf("nats: %v", err)
	}
	s.js, err = jetstream.New(s.nc)
	if err != nil {
		t.Fatal(err)
	}
	s.waitReady()
	s.tail = startTailer(s.hc, s.appURL+"/tail")
	eventually(t, 90*time.Second, "the subscriber handles events", func() (bool, string) {
		n := s.tail.Count()
		return n > 0, fmt.Sprintf("%d handled", n)
	})
	s.checkStatus(ctx)
	t.Logf("stack up and flowing in %s", time.Since(started).Round(100*time.Millisecond))
	return s
}

// down removes the stack: containers, networks, volumes.
func (s *stack) down(ctx context.Context) {
	if out, err := s.c.run(ctx, "down", "-v", "--remove-orphans", "-t", "3"); err != nil {
		s.t.Logf("compose down: %v\n%s", err, out)
	}
}

// waitReady waits for the cluster, the stream (3 replicas, all current), the
// relay and both apps.
func (s *stack) waitReady() {
	t := s.t
	eventually(t, 90*time.Second, "JetStream answers", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := s.js.AccountInfo(ctx)
		return err == nil, fmt.Sprint(err)
	})
	eventually(t, 90*time.Second, "the relay is ready", func() (bool, string) {
		code, body, err := s.get(s.relayURL+"/readyz", nil)
		return err == nil && code == 200, fmt.Sprint(code, " ", body, " ", err)
	})
	eventually(t, 90*time.Second, "stream "+streamName+" has a leader and 2 current replicas", func() (bool, string) {
		info, err := s.streamInfo()
		if err != nil {
			return false, err.Error()
		}
		return clusterHealthy(info), describeCluster(info)
	})
	for _, u := range []string{s.appURL, s.embURL} {
		eventually(t, 90*time.Second, u+" has events accepted", func() (bool, string) {
			st, err := s.appStats(u)
			if err != nil {
				return false, err.Error()
			}
			return num(st["accepted"]) > 0, fmt.Sprint(st)
		})
	}
}

// checkStatus runs `relay status` inside the relay's container (an exec-form
// command: the scratch image has no shell) and requires it healthy.
func (s *stack) checkStatus(ctx context.Context) {
	out, err := s.c.run(ctx, "exec", "-T", "relay", "/relay", "status")
	if err != nil {
		s.t.Fatalf("relay status is not healthy: %v\n%s", err, out)
	}
	s.t.Logf("relay status:\n%s", strings.TrimSpace(out))
}

func clusterHealthy(info *jetstream.StreamInfo) bool {
	if info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != 2 {
		return false
	}
	for _, r := range info.Cluster.Replicas {
		if !r.Current || r.Offline {
			return false
		}
	}
	return true
}

func describeCluster(info *jetstream.StreamInfo) string {
	if info.Cluster == nil {
		return "no cluster info"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "leader %q", info.Cluster.Leader)
	for _, r := range info.Cluster.Replicas {
		fmt.Fprintf(&b, ", %s current=%v offline=%v lag=%d", r.Name, r.Current, r.Offline, r.Lag)
	}
	return b.String()
}

func (s *stack) streamInfo() (*jetstream.StreamInfo, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	st, err := s.js.Stream(ctx, streamName)
	if err != nil {
		return nil, err
	}
	return st.Info(ctx)
}

// kill sends SIGKILL to a service's container.
func (s *stack) kill(svc string) {
	s.t.Helper()
	if _, err := docker(context.Background(), "kill", "-s", "KILL", s.ids[svc]); err != nil {
		s.t.Fatalf("kill %s: %v", svc, err)
	}
}

// start starts a service's container again (the same container: its logs
// and volumes are kept). Starting a running container does nothing.
func (s *stack) start(svc string) {
	s.t.Helper()
	if _, err := docker(context.Background(), "start", s.ids[svc]); err != nil {
		s.t.Fatalf("start %s: %v", svc, err)
	}
}

// cutOff disconnects a service from the network it shares with NATS;
// reconnect undoes it.
func (s *stack) cutOff(svc string) {
	s.t.Helper()
	if _, err := docker(context.Background(), "network", "disconnect", s.natsnet, s.ids[svc]); err != nil {
		s.t.Fatalf("disconnect %s: %v", svc, err)
	}
}

func (s *stack) reconnect(svc string) {
	s.t.Helper()
	if _, err := docker(context.Background(), "network", "connect", s.natsnet, s.ids[svc]); err != nil {
		s.t.Fatalf("connect %s: %v", svc, err)
	}
}

// volumeUsage is how full a volume's file system is, as "used/size MiB",
// read on the host (best effort: "?" when the mount point is not visible).
func (s *stack) volumeUsage(volume string) string {
	out, err := docker(context.Background(), "volume", "inspect", "-f", "{{.Mountpoint}}", project+"_"+volume)
	if err != nil {
		return "?"
	}
	var fs syscall.Statfs_t
	if err := syscall.Statfs(strings.TrimSpace(out), &fs); err != nil {
		return "?"
	}
	size := fs.Blocks * uint64(fs.Bsize)
	used := size - fs.Bfree*uint64(fs.Bsize)
	return fmt.Sprintf("%.1f/%.0f MiB used", float64(used)/(1<<20), float64(size)/(1<<20))
}

// logs is a service's log since its container was created (all restarts).
func (s *stack) logs(svc string) string {
	out, err := docker(context.Background(), "logs", s.ids[svc])
	if err != nil {
		s.t.Logf("logs of %s: %v", svc, err)
	}
	return out
}

func (s *stack) dumpLogs(ctx context.Context) {
	for _, svc := range services {
		if id := s.ids[svc]; id != "" {
			out, _ := docker(ctx, "logs", "--tail", "40", id)
			s.t.Logf("--- last log lines of %s:\n%s", svc, out)
		}
	}
}

// get does a GET; the relay's token is sent to the relay.
func (s *stack) get(url string, out any) (int, string, error) {
	return s.do(http.MethodGet, url, nil, out)
}

func (s *stack) do(method, url string, body []byte, out any) (int, string, error) {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	if strings.HasPrefix(url, s.relayURL) {
		req.Header.Set("Authorization", "Bearer "+relayToken)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, "", err
	}
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, string(b), fmt.Errorf("decode %s: %w", url, err)
		}
	}
	return resp.StatusCode, string(b), nil
}

// relayStats is GET /v1/stats of the relay.
type relayStats struct {
	Total, Pending, Processing, Completed, Failed, Bytes int64
}

func (s *stack) relayStats() (relayStats, error) {
	var st relayStats
	code, body, err := s.get(s.relayURL+"/v1/stats", &st)
	if err == nil && code != 200 {
		err = fmt.Errorf("GET /v1/stats: %d %s", code, body)
	}
	return st, err
}

// embeddedStats is GET /outbox/stats of the app embedding the library.
func (s *stack) embeddedStats() (relayStats, error) {
	var st relayStats
	code, body, err := s.get(s.embURL+"/outbox/stats", &st)
	if err == nil && code != 200 {
		err = fmt.Errorf("GET /outbox/stats: %d %s", code, body)
	}
	return st, err
}

func (s *stack) appStats(base string) (map[string]any, error) {
	st := map[string]any{}
	code, body, err := s.get(base+"/stats", &st)
	if err == nil && code != 200 {
		err = fmt.Errorf("GET %s/stats: %d %s", base, code, body)
	}
	return st, err
}

// accepted is an event an app had accepted (examples/demoapp).
type accepted struct {
	ID        string `json:"id"`
	EntityID  string `json:"entity_id"`
	EntitySeq uint64 `json:"entity_seq"`
	At        int64  `json:"at"`
}

func (s *stack) accepted(base string) ([]accepted, error) {
	var list []accepted
	code, body, err := s.get(base+"/accepted", &list)
	if err == nil && code != 200 {
		err = fmt.Errorf("GET %s/accepted: %d %s", base, code, tail(body, 300))
	}
	return list, err
}

// setLoad pauses or resumes an app's load; a pause waits until no batch is
// in hand.
func (s *stack) setLoad(base string, on bool) {
	s.t.Helper()
	path := "/pause?wait=120s"
	if on {
		path = "/resume"
	}
	code, body, err := s.do(http.MethodPost, base+path, nil, nil)
	if err != nil || code != 200 {
		s.t.Fatalf("POST %s%s: %d %s %v", base, path, code, body, err)
	}
}

func (s *stack) setRate(base string, eps int) {
	s.t.Helper()
	code, body, err := s.do(http.MethodPost, fmt.Sprintf("%s/rate?eps=%d", base, eps), nil, nil)
	if err != nil || code != 200 {
		s.t.Fatalf("POST %s/rate: %d %s %v", base, code, body, err)
	}
}

// eventually polls cond every 100ms until it holds, failing the test with
// cond's last word after timeout.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	var last string
	for {
		ok, msg := cond()
		if ok {
			return time.Since(start)
		}
		last = msg
		if time.Since(start) > timeout {
			t.Fatalf("after %s, still waiting for %s: %s", timeout, what, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// num reads a JSON number out of a decoded map.
func num(v any) int64 {
	f, _ := v.(float64)
	return int64(f)
}

func inCI() bool { return os.Getenv("CI") == "true" }
