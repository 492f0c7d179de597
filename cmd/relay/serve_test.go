package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/internal/natstest"
	"github.com/fitiqcore/outbox/internal/poll"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"
)

// TestServeEmbeddedDefault runs `relay serve` in-process on the embedded
// NATS server (the one-command default, on free ports in a temp dir), posts
// an event and reads it back from the embedded stream.
func TestServeEmbeddedDefault(t *testing.T) {
	dir := t.TempDir()
	natsAddr := fmt.Sprintf("127.0.0.1:%d", natstest.FreePort(t))
	httpAddr := fmt.Sprintf("127.0.0.1:%d", natstest.FreePort(t))
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, fmt.Appendf(nil, "store:\n  path: %s/outbox.db\nnats:\n  embedded_addr: %s\n  store_dir: %s/nats\nhttp:\n  addr: %s\nlog:\n  format: json\n", dir, natsAddr, dir, httpAddr), 0o600)

	ctx, cancel := context.WithCancel(context.Background())
	var stderr bytes.Buffer
	logw := &lockedWriter{w: &stderr}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve", "--config", cfg}, io.Discard, logw) }()
	defer func() {
		if t.Failed() {
			logw.mu.Lock()
			t.Logf("relay log:\n%s", stderr.String())
			logw.mu.Unlock()
		}
	}()
	poll.Until(t, 15*time.Second, "healthz", func() bool {
		r, err := http.Get("http://" + httpAddr + "/readyz")
		if err != nil {
			return false
		}
		r.Body.Close()
		return r.StatusCode == 200
	})
	resp, err := http.Post("http://"+httpAddr+"/v1/events", "application/json",
		bytes.NewReader([]byte(`{"type":"mood.created","entity_id":"m1","payload":{"score":4}}`)))
	if err != nil {
		t.Fatal(err)
	}
	var ev struct{ ID, Status string }
	json.NewDecoder(resp.Body).Decode(&ev)
	resp.Body.Close()
	if resp.StatusCode != 201 || ev.Status != "pending" {
		t.Fatalf("POST: %d %+v", resp.StatusCode, ev)
	}
	poll.Until(t, 10*time.Second, "event completed", func() bool {
		r, err := http.Get("http://" + httpAddr + "/v1/events/" + ev.ID)
		if err != nil {
			return false
		}
		defer r.Body.Close()
		var got struct{ Status string }
		json.NewDecoder(r.Body).Decode(&got)
		return got.Status == "completed"
	})
	nc, err := nats.Connect("nats://" + natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	got := natstest.Read(t, js, "OUTBOX")
	nc.Close()
	if len(got) != 1 || got[0].ID != ev.ID || string(got[0].Payload) != `{"score":4}` {
		t.Fatalf("embedded stream holds %+v", got)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve returned %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop")
	}
}

func TestRunUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(context.Background(), nil, &out, &errOut); err == nil || !bytes.Contains(errOut.Bytes(), []byte("usage")) {
		t.Errorf("no args: %v %q", err, errOut.String())
	}
	if err := run(context.Background(), []string{"bogus"}, &out, &errOut); err == nil {
		t.Error("unknown command accepted")
	}
	if err := run(context.Background(), []string{"serve", "--config", "/nonexistent.yaml"}, &out, &errOut); err == nil {
		t.Error("missing config accepted")
	}
}

// lockedWriter lets the test read the log the server goroutine writes.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestServeStopsEveryGoroutine: `relay serve` cancelled as SIGTERM cancels
// it returns nil once it has drained, and leaves no goroutine behind: the
// API server, the relay, the retention sweep, the publisher's connection and
// the embedded NATS server are all gone.
func TestServeStopsEveryGoroutine(t *testing.T) {
	for _, tc := range []struct {
		name string
		// setup starts what the relay needs besides itself; stop ends it, so
		// that its goroutines (a NATS server's streams) are gone too.
		setup func(t *testing.T) (o relayOpts, stop func())
	}{
		{"embedded NATS", func(*testing.T) (relayOpts, func()) { return relayOpts{retention: "1s"}, func() {} }},
		{"NATS server, HTTPS", func(t *testing.T) (relayOpts, func()) {
			ns := natstest.Start(t)
			return relayOpts{natsURL: ns.URL(), tls: newTestCert(t), retention: "1s"}, ns.Stop
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := goleak.IgnoreCurrent()
			opts, stop := tc.setup(t)
			r := startRelay(t, opts)
			e := r.post(`{"type":"leak.test","entity_id":"e1","payload":{}}`)
			r.waitStatus(e.ID, outbox.StatusCompleted)
			r.stop() // fails the test unless serve returned nil
			r.hc.CloseIdleConnections()
			stop()
			goleak.VerifyNone(t, before)
		})
	}
}

// TestServeListenError: an http.addr that is taken stops serve with an
// error naming the key, and leaves nothing running.
func TestServeListenError(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	dir := t.TempDir()
	natsAddr := fmt.Sprintf("127.0.0.1:%d", natstest.FreePort(t))
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, fmt.Appendf(nil, "store:\n  path: %s/outbox.db\nnats:\n  embedded_addr: %s\n  store_dir: %s/nats\nhttp:\n  addr: %s\nlog:\n  format: json\n", dir, natsAddr, dir, taken.Addr()), 0o600)
	before := goleak.IgnoreCurrent()
	err = run(context.Background(), []string{"serve", "--config", cfg}, io.Discard, io.Discard)
	if err == nil || !strings.HasPrefix(err.Error(), "http.addr: ") {
		t.Fatalf("serve on a taken http.addr returned %v, want an http.addr error", err)
	}
	goleak.VerifyNone(t, before)
}

var errStore = errors.New("store cannot record")

// fakeRelay stands for the relay loop in services' tests: Run returns what
// is sent on fail, or drainErr once its ctx ends.
type fakeRelay struct {
	fail     chan error
	drainErr error
	started  chan struct{}
	stopped  chan struct{} // closed when Run's ctx ended
}

func newFakeRelay(drainErr error) *fakeRelay {
	return &fakeRelay{fail: make(chan error, 1), drainErr: drainErr, started: make(chan struct{}), stopped: make(chan struct{})}
}

func (f *fakeRelay) Run(ctx context.Context) error {
	close(f.started)
	select {
	case err := <-f.fail:
		return err
	case <-ctx.Done():
		close(f.stopped)
		return f.drainErr
	}
}

// testServices are services on a loopback listener with a fake relay and
// retention, run in a goroutine that wait waits for.
type testServices struct {
	services
	addr   string
	rl     *fakeRelay
	logBuf *bytes.Buffer
	log    *lockedWriter
	done   chan error
}

// startServices runs services until ctx ends, serving h; with
// closeListener, on a listener closed before it is served.
func startServices(t *testing.T, ctx context.Context, h http.Handler, rl *fakeRelay, retention func(context.Context) error, closeListener bool) *testServices {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if closeListener {
		ln.Close()
	}
	s := &testServices{addr: ln.Addr().String(), rl: rl, logBuf: &bytes.Buffer{}, done: make(chan error, 1)}
	s.log = &lockedWriter{w: s.logBuf}
	s.services = services{
		http: &http.Server{Handler: h, ReadHeaderTimeout: time.Second}, listener: ln,
		relay: rl, retention: retention, log: slog.New(slog.NewTextHandler(s.log, nil)),
	}
	go func() { s.done <- s.run(ctx) }()
	<-rl.started
	return s
}

func (s *testServices) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-s.done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("services did not stop")
		return nil
	}
}

func (s *testServices) logged() string {
	s.log.mu.Lock()
	defer s.log.mu.Unlock()
	return s.logBuf.String()
}

// listening reports whether the API server still accepts connections.
func (s *testServices) listening() bool {
	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// TestServicesStop: what stops serve's group, what serve returns, and that
// every actor returned: ingest closed, the relay's ctx ended.
func TestServicesStop(t *testing.T) {
	errSweep := errors.New("sweep failed")
	for _, tc := range []struct {
		name string
		// What happens: the relay failing on its own, the listener closed
		// before serving, the relay's error when it drains, the sweep's.
		relayFails, drainErr, retentionErr error
		closeListener                      bool
		cancel                             bool // ctx ends, as at SIGTERM
		want                               error
		wantLog                            []string
	}{
		{name: "ctx ends", cancel: true, want: nil, wantLog: []string{"shutting down: closing ingest", "relay stopped"}},
		{name: "the relay fails", relayFails: errStore, want: errStore, wantLog: []string{"relay stopped"}},
		{name: "the relay fails while draining", cancel: true, drainErr: errStore, want: errStore},
		{name: "the API server fails", closeListener: true, want: net.ErrClosed},
		{name: "the sweep fails, serve goes on", retentionErr: errSweep, cancel: true, want: nil,
			wantLog: []string{"retention sweep stopped", "shutting down"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := goleak.IgnoreCurrent()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			swept := make(chan struct{})
			retention := func(ctx context.Context) error {
				close(swept)
				if tc.retentionErr != nil {
					return tc.retentionErr
				}
				<-ctx.Done()
				return nil
			}
			rl := newFakeRelay(tc.drainErr)
			if tc.relayFails != nil {
				rl.fail <- tc.relayFails
			}
			s := startServices(t, ctx, http.NotFoundHandler(), rl, retention, tc.closeListener)
			<-swept
			if tc.retentionErr != nil {
				poll.Until(t, 5*time.Second, "the sweep's error logged", func() bool {
					return strings.Contains(s.logged(), "retention sweep stopped")
				})
				if !s.listening() {
					t.Fatal("a failed sweep stopped the API server")
				}
			}
			if tc.cancel {
				cancel()
			}
			if err := s.wait(t); !errors.Is(err, tc.want) {
				t.Errorf("run returned %v, want %v", err, tc.want)
			}
			if s.listening() {
				t.Error("the API server still listens")
			}
			if tc.relayFails == nil {
				select {
				case <-rl.stopped:
				default:
					t.Error("the relay was not interrupted")
				}
			}
			for _, want := range tc.wantLog {
				if !strings.Contains(s.logged(), want) {
					t.Errorf("log lacks %q:\n%s", want, s.logged())
				}
			}
			goleak.VerifyNone(t, before)
		})
	}
}

// TestServicesStopIngestBeforeDrain: at SIGTERM the API server stops first
// and answers the request in progress, and only then is the relay
// interrupted to drain; serve returns when both have.
func TestServicesStopIngestBeforeDrain(t *testing.T) {
	before := goleak.IgnoreCurrent()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rl := newFakeRelay(nil)
	entered, release := make(chan struct{}), make(chan struct{})
	drainedEarly := make(chan bool, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		close(entered)
		<-release
		select {
		case <-rl.stopped:
			drainedEarly <- true
		default:
			drainedEarly <- false
		}
		w.WriteHeader(http.StatusCreated)
	})
	retention := func(ctx context.Context) error { <-ctx.Done(); return nil }
	s := startServices(t, ctx, h, rl, retention, false)

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	status := make(chan int, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	releaseOnce := sync.OnceFunc(func() { close(release) })
	defer releaseOnce() // a failed test does not hold the request for ever
	wg.Go(func() {
		res, err := (&http.Client{Transport: tr}).Post("http://"+s.addr+"/v1/events", "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Errorf("the request in progress at shutdown: %v", err)
			status <- 0
			return
		}
		res.Body.Close()
		status <- res.StatusCode
	})
	<-entered
	cancel()
	// Shutdown has begun once the listener is closed; the relay must not be
	// interrupted while the request it holds is in progress.
	poll.Until(t, 5*time.Second, "the listener closed", func() bool { return !s.listening() })
	select {
	case <-rl.stopped:
		t.Fatal("the relay was interrupted before ingest stopped")
	default:
	}
	releaseOnce()
	if <-drainedEarly {
		t.Error("the relay was interrupted while a request was in progress")
	}
	if st := <-status; st != http.StatusCreated {
		t.Errorf("the request in progress at shutdown: status %d, want 201", st)
	}
	if err := s.wait(t); err != nil {
		t.Fatalf("run returned %v", err)
	}
	<-rl.stopped
	wg.Wait()
	tr.CloseIdleConnections()
	goleak.VerifyNone(t, before)
}
