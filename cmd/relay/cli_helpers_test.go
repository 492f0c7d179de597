package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/httpapi"
	"github.com/fitiqcore/outbox/internal/natstest"
	"github.com/fitiqcore/outbox/internal/poll"
)

// relayOpts shape the config of an in-process relay serve.
type relayOpts struct {
	natsURL       string // "" embedded NATS on a free port
	natsAddr      string // the embedded server's nats.embedded_addr (default 127.0.0.1:<free port>)
	streamName    string // default OUTBOX
	manageStream  *bool
	token         string
	maxAttempts   int
	maxPending    int
	retention     string // retention.completed
	eventTypes    []string
	initialRetry  string
	subjectPrefix string
	// httpExtra and natsExtra are more lines of the http and nats sections
	// (each indented by two spaces, ending in a newline).
	httpExtra string
	natsExtra string
	// files are written into the relay's directory, beside its config
	// file, before it starts (the schema files of eventTypes entries such
	// as "{name: a.b, payload_schema: a.json}"), by their relative paths.
	files map[string]string
	// extra is more top-level sections of the config (ending in a newline).
	extra string
	// tls serves HTTPS with this certificate; the test talks to it with a
	// client that trusts its CA.
	tls *testCert
}

// testRelay is a `relay serve` running in-process on free ports.
type testRelay struct {
	t       *testing.T
	dir     string
	config  string
	addr    string
	base    string       // http://addr, or https://addr with tls
	hc      *http.Client // trusts the test CA with tls
	natsURL string
	log     *lockedWriter
	logBuf  *bytes.Buffer
	cancel  context.CancelFunc
	done    chan error
	stopped bool
}

func startRelay(t *testing.T, o relayOpts) *testRelay {
	t.Helper()
	dir := t.TempDir()
	r := &testRelay{t: t, dir: dir, addr: fmt.Sprintf("127.0.0.1:%d", natstest.FreePort(t)), logBuf: &bytes.Buffer{}}
	r.log = &lockedWriter{w: r.logBuf}
	var b strings.Builder
	fmt.Fprintf(&b, "store:\n  path: %s\n", filepath.Join(dir, "outbox.db"))
	if o.maxPending > 0 {
		fmt.Fprintf(&b, "  max_pending: %d\n", o.maxPending)
	}
	if o.retention != "" {
		fmt.Fprintf(&b, "retention:\n  completed: %s\n  interval: 1s\n", o.retention)
	}
	if o.natsURL == "" {
		natsAddr := orDefault(o.natsAddr, fmt.Sprintf("127.0.0.1:%d", natstest.FreePort(t)))
		fmt.Fprintf(&b, "nats:\n  embedded_addr: %s\n  store_dir: %s\n  publish_timeout: 2s\n", natsAddr, filepath.Join(dir, "nats"))
		_, port, _ := net.SplitHostPort(natsAddr)
		r.natsURL = "nats://127.0.0.1:" + port
	} else {
		fmt.Fprintf(&b, "nats:\n  url: %s\n  publish_timeout: 2s\n", o.natsURL)
		r.natsURL = o.natsURL
	}
	b.WriteString(o.natsExtra)
	fmt.Fprintf(&b, "stream:\n  name: %s\n", orDefault(o.streamName, "OUTBOX"))
	if o.subjectPrefix != "" {
		fmt.Fprintf(&b, "  subject_prefix: %s\n", o.subjectPrefix)
	}
	if o.manageStream != nil {
		fmt.Fprintf(&b, "  manage: %v\n", *o.manageStream)
	}
	fmt.Fprintf(&b, "http:\n  addr: %s\n", r.addr)
	if o.token != "" {
		fmt.Fprintf(&b, "  token: %s\n", o.token)
	}
	b.WriteString(o.httpExtra)
	r.base, r.hc = "http://"+r.addr, http.DefaultClient
	if o.tls != nil {
		fmt.Fprintf(&b, "  tls:\n    cert_file: %s\n    key_file: %s\n    ca_file: %s\n", o.tls.certFile, o.tls.keyFile, o.tls.certFile)
		r.base, r.hc = "https://"+r.addr, o.tls.client()
	}
	fmt.Fprintf(&b, "retry:\n  initial_interval: %s\n  max_interval: 10m\n  multiplier: 2\n", orDefault(o.initialRetry, "50ms"))
	if o.maxAttempts > 0 {
		fmt.Fprintf(&b, "  max_attempts: %d\n", o.maxAttempts)
	}
	b.WriteString("log:\n  format: json\n  level: info\n")
	b.WriteString(o.extra)
	if len(o.eventTypes) > 0 {
		b.WriteString("event_types:\n")
		for _, typ := range o.eventTypes {
			fmt.Fprintf(&b, "  - %s\n", typ)
		}
	}
	for name, body := range o.files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r.config = filepath.Join(dir, "relay.yaml")
	if err := os.WriteFile(r.config, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan error, 1)
	go func() { r.done <- run(ctx, []string{"serve", "--config", r.config}, io.Discard, r.log) }()
	t.Cleanup(func() {
		r.stop()
		if t.Failed() {
			r.log.mu.Lock()
			t.Logf("relay log:\n%s", r.logBuf.String())
			r.log.mu.Unlock()
		}
	})
	poll.Until(t, 20*time.Second, "relay /readyz", func() bool {
		select {
		case err := <-r.done:
			r.stopped = true
			t.Fatalf("relay serve returned early: %v", err)
		default:
		}
		res, err := r.hc.Get(r.base + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == 200
	})
	// NATS is connected once ready; the stream is created (when managed) by
	// the relay loop a moment later. Tests start from a settled state.
	poll.Until(t, 20*time.Second, "stream found", func() bool {
		req, _ := http.NewRequest(http.MethodGet, r.base+"/v1/status", nil)
		if o.token != "" {
			req.Header.Set("Authorization", "Bearer "+o.token)
		}
		res, err := r.hc.Do(req)
		if err != nil {
			return false
		}
		defer res.Body.Close()
		var rep httpapi.Report
		if json.NewDecoder(res.Body).Decode(&rep) != nil || rep.Stream == nil {
			return false
		}
		return !strings.Contains(rep.Stream.Error, "not found")
	})
	return r
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// stop shuts serve down and checks that it returned cleanly.
func (r *testRelay) stop() {
	r.t.Helper()
	if r.stopped {
		return
	}
	r.stopped = true
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			r.t.Errorf("relay serve returned %v", err)
		}
	case <-time.After(30 * time.Second):
		r.t.Error("relay serve did not stop")
	}
}

// api calls the relay's HTTP API directly (setting up test data).
func (r *testRelay) api(method, path, body string, out any) int {
	r.t.Helper()
	req, err := http.NewRequest(method, r.base+path, strings.NewReader(body))
	if err != nil {
		r.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := r.hc.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			r.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return res.StatusCode
}

// post stores one event through the API.
func (r *testRelay) post(body string) *outbox.Event {
	r.t.Helper()
	var e outbox.Event
	if st := r.api(http.MethodPost, "/v1/events", body, &e); st != http.StatusCreated {
		r.t.Fatalf("POST /v1/events %s: status %d", body, st)
	}
	return &e
}

// waitStatus waits until the event has the status.
func (r *testRelay) waitStatus(id string, want outbox.Status) *outbox.Event {
	r.t.Helper()
	var e outbox.Event
	poll.Until(r.t, 20*time.Second, "event "+id+" "+string(want), func() bool {
		r.api(http.MethodGet, "/v1/events/"+id, "", &e)
		return e.Status == want
	})
	return &e
}

// cliResult is what one CLI run printed and its exit status.
type cliResult struct {
	stdout, stderr string
	err            error
	code           int
}

// cli runs the relay command in-process, as main would, with stdin.
func cli(t *testing.T, stdin string, args ...string) cliResult {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := dispatch(ctx, args, stdio{in: strings.NewReader(stdin), out: &out, errOut: &errOut})
	res := cliResult{stdout: out.String(), stderr: errOut.String(), err: err}
	var ec exitCode
	switch {
	case err == nil:
	case errors.As(err, &ec):
		res.code = int(ec)
	default:
		res.code = 1
		res.stderr += "relay: " + err.Error() + "\n" // as main prints it
	}
	return res
}

// wantCode fails the test unless the command exited with code.
func (c cliResult) wantCode(t *testing.T, code int) cliResult {
	t.Helper()
	if c.code != code {
		t.Fatalf("exit %d, want %d (err %v)\nstdout:\n%s\nstderr:\n%s", c.code, code, c.err, c.stdout, c.stderr)
	}
	return c
}

// contains fails the test unless s contains every want.
func contains(t *testing.T, what, s string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(s, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, s)
		}
	}
}

func boolPtr(b bool) *bool { return &b }
