package httpapi_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
	"github.com/fitiqcore/outbox/httpapi"
)

// rawAnswer is what a raw HTTP/1.1 exchange got back.
type rawAnswer struct {
	status  int
	header  http.Header
	closing bool // the answer said Connection: close
	closed  bool // the server closed the connection after the answer
}

// rawExchange writes req (a request's head and as much of its body as
// given) on a new TCP connection to addr and reads the answer, and then
// whether the server closes the connection, all before deadline.
func rawExchange(addr, req string, deadline time.Time) (rawAnswer, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Until(deadline))
	if err != nil {
		return rawAnswer{}, err
	}
	defer conn.Close()
	if err := conn.SetDeadline(deadline); err != nil {
		return rawAnswer{}, err
	}
	if _, err := io.WriteString(conn, req); err != nil {
		return rawAnswer{}, fmt.Errorf("write: %w", err)
	}
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		return rawAnswer{}, fmt.Errorf("read the answer: %w", err)
	}
	if _, err := io.Copy(io.Discard, res.Body); err != nil {
		return rawAnswer{}, fmt.Errorf("read the answer's body: %w", err)
	}
	res.Body.Close()
	_, err = br.ReadByte()
	return rawAnswer{status: res.StatusCode, header: res.Header, closing: res.Close, closed: err == io.EOF}, nil
}

// TestUnreadBodyAnsweredAtOnce sends requests that declare a body and never
// send it (issue 9, row 6): each early answer must reach the client at once
// and close the connection, rather than wait for a body that never comes.
func TestUnreadBodyAnsweredAtOnce(t *testing.T) {
	const token = "s3cret"
	e := newEnv(t, httpapi.Options{Token: token, MaxBodyBytes: 1000}, nil)
	addr := e.srv.Listener.Addr().String()
	head := func(method, path, contentType string, auth bool, length int) string {
		var b strings.Builder
		fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: relay\r\nContent-Length: %d\r\n", method, path, length)
		if contentType != "" {
			fmt.Fprintf(&b, "Content-Type: %s\r\n", contentType)
		}
		if auth {
			fmt.Fprintf(&b, "Authorization: Bearer %s\r\n", token)
		}
		return b.String() + "\r\n"
	}
	tests := []struct {
		name  string
		req   string
		conns int
		want  int
	}{
		{"401 without a token", head("POST", "/v1/events", "application/json", false, 100), 200, http.StatusUnauthorized},
		{"401 on an unknown route", head("PUT", "/nope", "application/json", false, 100), 10, http.StatusUnauthorized},
		{"404", head("POST", "/nope", "application/json", true, 100), 10, http.StatusNotFound},
		{"405", head("PUT", "/v1/events", "application/json", true, 100), 10, http.StatusMethodNotAllowed},
		{"415", head("POST", "/v1/events", "text/plain", true, 100), 10, http.StatusUnsupportedMediaType},
		{"413 by Content-Length", head("POST", "/v1/events", "application/json", true, 2000), 10, http.StatusRequestEntityTooLarge},
		{"a route that reads no body", head("POST", "/v1/events/retry", "application/json", true, 100), 10, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			deadline := time.Now().Add(5 * time.Second)
			errs := make(chan error, tt.conns)
			var wg sync.WaitGroup
			for i := range tt.conns {
				wg.Go(func() {
					got, err := rawExchange(addr, tt.req, deadline)
					switch {
					case err != nil:
						errs <- fmt.Errorf("connection %d: %w", i, err)
					case got.status != tt.want:
						errs <- fmt.Errorf("connection %d: status %d, want %d", i, got.status, tt.want)
					case !got.closing || !got.closed:
						errs <- fmt.Errorf("connection %d: Connection: close %v, closed %v: want the connection closed", i, got.closing, got.closed)
					}
				})
			}
			wg.Wait()
			close(errs)
			failed := 0
			for err := range errs {
				if failed++; failed <= 5 {
					t.Error(err)
				}
			}
			if failed > 0 {
				t.Errorf("%d of %d connections failed", failed, tt.conns)
			}
		})
	}
	if st := e.stats(t); st.Total != 0 {
		t.Errorf("total = %d, want 0", st.Total)
	}
}

// TestReadBodyKeepsConnection checks the other side of the rule: an answer
// after the whole body was read keeps the connection open.
func TestReadBodyKeepsConnection(t *testing.T) {
	e := newEnv(t, httpapi.Options{}, nil)
	for _, body := range []string{`{"type":"a"}`, `{"type":"a.*"}`} {
		res := e.post(t, "/v1/events", body)
		if res.header.Get("Connection") == "close" {
			t.Errorf("%s: answered %d with Connection: close", body, res.status)
		}
	}
}

// hold is a route that holds its request until released, to fill the
// server's limits.
type hold struct {
	entered chan struct{}
	release chan struct{}
}

func newHold() *hold { return &hold{entered: make(chan struct{}, 16), release: make(chan struct{})} }

func (h *hold) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.entered <- struct{}{}
	<-h.release
	io.Copy(io.Discard, r.Body)
	w.WriteHeader(http.StatusNoContent)
}

// start sends n requests to the hold route and waits until each is held;
// the returned func releases them and waits for their answers.
func (h *hold) start(t *testing.T, e *env, n int, body string) (release func()) {
	t.Helper()
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			res := e.do(t, http.MethodPost, "/v1/hold", "application/json", strings.NewReader(body))
			if res.status != http.StatusNoContent {
				t.Errorf("held request: status %d: %s", res.status, res.body)
			}
		})
	}
	for range n {
		select {
		case <-h.entered:
		case <-time.After(10 * time.Second):
			t.Fatal("held requests did not reach the handler")
		}
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			close(h.release)
			wg.Wait()
		})
	}
	t.Cleanup(release)
	return release
}

// wantBusy checks a 503 refusal: a JSON error, Retry-After: 1.
func (r response) wantBusy(t testing.TB, want string) {
	t.Helper()
	r.wantError(t, http.StatusServiceUnavailable, want)
	if ra := r.header.Get("Retry-After"); ra != "1" {
		t.Errorf("Retry-After = %q, want 1", ra)
	}
}

func TestMaxConcurrent(t *testing.T) {
	const token = "s3cret"
	e := newEnv(t, httpapi.Options{MaxConcurrent: 2, Token: token}, nil)
	h := newHold()
	e.api.Handle("POST /v1/hold", h)
	e.token = token
	noToken := &env{srv: e.srv}
	release := h.start(t, e, 2, "")

	tests := []struct {
		name, method, path, body string
		auth                     bool
		status                   int
	}{
		{"over the cap", "GET", "/v1/stats", "", true, http.StatusServiceUnavailable},
		{"over the cap, with a body", "POST", "/v1/events", `{"type":"a"}`, true, http.StatusServiceUnavailable},
		{"over the cap, unknown route", "GET", "/nope", "", true, http.StatusServiceUnavailable},
		{"the token first", "GET", "/v1/stats", "", false, http.StatusUnauthorized},
		{"healthz exempt", "GET", "/healthz", "", false, http.StatusOK},
		{"readyz exempt", "GET", "/readyz", "", false, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := e
			if !tt.auth {
				client = noToken
			}
			res := client.do(t, tt.method, tt.path, "application/json", strings.NewReader(tt.body))
			if tt.status != http.StatusServiceUnavailable {
				res.wantStatus(t, tt.status)
				return
			}
			res.wantBusy(t, "busy: the server is serving its limit of 2 requests at once")
			if tt.body != "" && res.header.Get("Connection") != "close" {
				t.Errorf("503 without reading the body: Connection %q, want close", res.header.Get("Connection"))
			}
		})
	}
	release()
	e.get(t, "/v1/stats").wantStatus(t, http.StatusOK)
	e.post(t, "/v1/events", `{"type":"a"}`).wantStatus(t, http.StatusCreated)
	if st := e.stats(t); st.Total != 1 {
		t.Errorf("total = %d, want 1: a refused request stored nothing", st.Total)
	}
}

func TestBodyBudget(t *testing.T) {
	e := newEnv(t, httpapi.Options{MaxInflightBodyBytes: 1000, MaxBodyBytes: 600}, nil)
	h := newHold()
	e.api.Handle("POST /v1/hold", h)
	// One request holds 600 bytes of the budget: 400 are left.
	release := h.start(t, e, 1, strings.Repeat(" ", 600))

	invalid := func(n int) string { return `{"type":"a.*"}` + strings.Repeat(" ", n-14) } // a 400 when served
	tests := []struct {
		name    string
		body    string
		chunked bool
		status  int
		want    string
	}{
		{"fits in what is left", invalid(400), false, http.StatusBadRequest, "invalid type"},
		{"more than is left", invalid(401), false, http.StatusServiceUnavailable, "busy: the request bodies in progress hold the server's budget of 1000 bytes"},
		{"chunked reserves the body limit", invalid(100), true, http.StatusServiceUnavailable, "busy"},
		{"over the body limit", invalid(601), false, http.StatusRequestEntityTooLarge, "request body of 601 bytes, over the limit of 600"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader = strings.NewReader(tt.body)
			if tt.chunked {
				body = hideLength{body}
			}
			res := e.do(t, http.MethodPost, "/v1/events", "application/json", body)
			if tt.status == http.StatusServiceUnavailable {
				res.wantBusy(t, tt.want)
				return
			}
			res.wantError(t, tt.status, tt.want)
		})
	}
	// Bodies without a body are not charged; the released bytes are free again.
	e.get(t, "/v1/stats").wantStatus(t, http.StatusOK)
	release()
	for _, tt := range tests[1:3] {
		var body io.Reader = strings.NewReader(tt.body)
		if tt.chunked {
			body = hideLength{body}
		}
		e.do(t, http.MethodPost, "/v1/events", "application/json", body).wantError(t, http.StatusBadRequest, "invalid type")
	}
}

func TestBodyLimitAtMostBudget(t *testing.T) {
	// A body the budget could never cover is too large, not busy.
	e := newEnv(t, httpapi.Options{MaxInflightBodyBytes: 1000, MaxBodyBytes: 5000}, nil)
	e.post(t, "/v1/events", `{"type":"a"}`+strings.Repeat(" ", 1500)).
		wantError(t, http.StatusRequestEntityTooLarge, "request body of 1512 bytes, over the limit of 1000")
	e.do(t, http.MethodPost, "/v1/events", "application/json", hideLength{strings.NewReader(`{"type":"a"}` + strings.Repeat(" ", 1500))}).
		wantError(t, http.StatusRequestEntityTooLarge, "request body over the limit of 1000 bytes")
	e.post(t, "/v1/events", `{"type":"a"}`+strings.Repeat(" ", 900)).wantStatus(t, http.StatusCreated)
}

// slowBackup is a real store whose backups reach the client slowly, as
// over a slow link: each write of the copy is split into pieces sent a
// few milliseconds apart.
type slowBackup struct {
	*boltstore.Store
	pause time.Duration
}

func (s slowBackup) Backup(ctx context.Context, w io.Writer) (int64, error) {
	return s.Store.Backup(ctx, &pacedWriter{w: w, pause: s.pause})
}

type pacedWriter struct {
	w     io.Writer
	pause time.Duration
}

func (p *pacedWriter) Write(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		piece := b[:min(len(b), 4096)]
		m, err := p.w.Write(piece)
		n += m
		if err != nil {
			return n, err
		}
		b = b[len(piece):]
		time.Sleep(p.pause) // the slow link, not synchronisation
	}
	return n, nil
}

// TestBackupOutlivesTimeouts checks that the backup route streams past the
// http.Server's WriteTimeout (httpapi.Streaming), and its ReadTimeout.
func TestBackupOutlivesTimeouts(t *testing.T) {
	store, err := boltstore.Open(filepath.Join(t.TempDir(), "o.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	var events []*outbox.Event
	for range 200 {
		events = append(events, &outbox.Event{Type: "a", Payload: []byte(strings.Repeat("x", 1000))})
	}
	if _, err := store.Enqueue(context.Background(), events...); err != nil {
		t.Fatal(err)
	}
	const timeout = 200 * time.Millisecond
	srv := httptest.NewUnstartedServer(httpapi.New(slowBackup{Store: store, pause: 5 * time.Millisecond}, httpapi.Options{}))
	srv.Config.WriteTimeout = timeout
	srv.Config.ReadTimeout = timeout
	srv.Start()
	t.Cleanup(srv.Close)
	e := &env{srv: srv, store: store}

	start := time.Now()
	res := e.do(t, http.MethodPost, "/v1/backup", "", nil)
	took := time.Since(start)
	res.wantStatus(t, http.StatusOK)
	if took <= 2*timeout {
		t.Fatalf("the backup took %v: not long enough to pass the timeouts of %v", took, timeout)
	}
	path := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(path, res.body, 0o600); err != nil {
		t.Fatal(err)
	}
	copyStore, err := boltstore.Open(path, nil)
	if err != nil {
		t.Fatalf("open the backup (%d bytes after %v): %v", len(res.body), took, err)
	}
	defer copyStore.Close()
	if st, err := copyStore.Stats(context.Background()); err != nil || st.Total != int64(len(events)) {
		t.Errorf("backup stats = %+v, %v; want %d events", st, err, len(events))
	}
}

// TestStreaming checks the exported wrapper on a route of the daemon's own.
func TestStreaming(t *testing.T) {
	const timeout = 100 * time.Millisecond
	api := httpapi.New(stubStore{}, httpapi.Options{})
	ticks := 0
	api.Handle("GET /v1/ticks", httpapi.Streaming(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		deadline := time.Now().Add(3 * timeout)
		for ; time.Now().Before(deadline); ticks++ {
			fmt.Fprintf(w, "tick %d\n", ticks)
			if err := rc.Flush(); err != nil {
				t.Errorf("flush: %v", err)
				return
			}
			time.Sleep(10 * time.Millisecond) // the stream's own pace
		}
		fmt.Fprintln(w, "end")
	})))
	srv := httptest.NewUnstartedServer(api)
	srv.Config.WriteTimeout = timeout
	srv.Config.ReadTimeout = timeout
	srv.Start()
	defer srv.Close()
	res := (&env{srv: srv}).get(t, "/v1/ticks")
	res.wantStatus(t, http.StatusOK)
	if !strings.HasSuffix(string(res.body), "end\n") {
		t.Errorf("stream cut short: %q", res.body)
	}
}

// acceptAll is a store that accepts every event without storing it, so
// that the benchmark measures the HTTP edge alone.
type acceptAll struct{ stubStore }

func (acceptAll) Enqueue(_ context.Context, events ...*outbox.Event) (int, error) {
	for i, e := range events {
		e.ID = fmt.Sprintf("0190b5a8-7f3e-7c3a-9d2e-%012d", i)
		e.Status, e.Seq = outbox.StatusPending, uint64(i+1)
	}
	return len(events), nil
}

// BenchmarkPostBatch1MiB measures what a 1 MiB batch costs the HTTP edge:
// "bodies/op", the bytes allocated per request divided by the body's
// size, is how many copies of the body a request allocates in all (read,
// decode, answer): the figure in the package doc.
func BenchmarkPostBatch1MiB(b *testing.B) {
	body := batchBody(1 << 20)
	api := httpapi.New(acceptAll{}, httpapi.Options{})
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	n := 0
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/v1/events/batch", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		w := &discardWriter{header: http.Header{}}
		api.ServeHTTP(w, req)
		if w.status != http.StatusCreated {
			b.Fatalf("status %d", w.status)
		}
		n++
	}
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(n)/float64(len(body)), "bodies/op")
}

// discardWriter is a ResponseWriter that keeps only the status, as a
// connection's writer keeps no copy of the answer.
type discardWriter struct {
	header http.Header
	status int
}

func (d *discardWriter) Header() http.Header         { return d.header }
func (d *discardWriter) WriteHeader(status int)      { d.status = status }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }

// batchBody is a batch of events with 1 KiB JSON payloads, about size
// bytes in all.
func batchBody(size int) string {
	var b strings.Builder
	b.WriteString(`{"events":[`)
	for i := 0; b.Len() < size-1200; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"type":"mood.created","entity_id":"m%d","user_id":"u1","metadata":{"source":"app"},"payload":{"note":"%s"}}`, i, strings.Repeat("x", 1000))
	}
	b.WriteString(`]}`)
	return b.String()
}
