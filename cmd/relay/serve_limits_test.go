package main

import (
	"bufio"
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
)

// TestServeHTTPTimeouts (issue 9, row 6) against a real relay serve: an
// idle keep-alive connection is closed after http.idle_timeout, and a
// request that declares a body and never sends it is ended after
// http.read_timeout, with a token set or not. Before, both stayed open for
// good.
func TestServeHTTPTimeouts(t *testing.T) {
	const limits = "  read_header_timeout: 300ms\n  read_timeout: 500ms\n  idle_timeout: 300ms\n"
	// wait bounds each check: far above the timeouts, far below forever.
	const wait = 10 * time.Second
	for _, tc := range []struct{ name, token string }{{"no token", ""}, {"token", "s3cret"}} {
		t.Run(tc.name, func(t *testing.T) {
			r := startRelay(t, relayOpts{token: tc.token, httpExtra: limits})

			t.Run("idle keep-alive closed", func(t *testing.T) {
				conn, br := dialRelay(t, r.addr)
				fmt.Fprintf(conn, "GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n")
				res, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != http.StatusOK || res.Close {
					t.Fatalf("GET /healthz: %d, close %v; want 200 on a kept-alive connection", res.StatusCode, res.Close)
				}
				start := time.Now()
				conn.SetReadDeadline(start.Add(wait))
				_, err = br.ReadByte()
				if errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("an idle keep-alive connection is still open after %s (http.idle_timeout 300ms)", wait)
				}
				if err != io.EOF {
					t.Fatalf("idle connection: %v, want the server to close it (EOF)", err)
				}
				t.Logf("idle connection closed by the server after %s", time.Since(start).Round(time.Millisecond))
			})

			t.Run("body that never comes", func(t *testing.T) {
				conn, br := dialRelay(t, r.addr)
				fmt.Fprintf(conn, "POST /v1/events HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
				start := time.Now()
				conn.SetReadDeadline(start.Add(wait))
				_, err := io.Copy(io.Discard, br) // an answer, if any, then EOF
				if errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("a request whose body never comes is still open after %s (http.read_timeout 500ms)", wait)
				}
				if err != nil {
					t.Logf("connection ended with %v", err) // a reset is an end too
				}
				t.Logf("request ended by the server after %s", time.Since(start).Round(time.Millisecond))
			})
		})
	}
}

// dialRelay opens a raw connection to the relay's HTTP address.
func dialRelay(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, bufio.NewReader(conn)
}

// TestServeBackupOutlivesWriteTimeout: the write timeout does not cut a
// streaming answer. A backup read by a slow client takes far longer than
// http.write_timeout and still arrives whole.
func TestServeBackupOutlivesWriteTimeout(t *testing.T) {
	// 2s: long enough for the setup's batches on a loaded machine, short
	// next to the slow read of the backup below.
	r := startRelay(t, relayOpts{httpExtra: "  write_timeout: 2s\n"})
	payload := `"` + strings.Repeat("x", 20000) + `"`
	for b := range 50 {
		var events []string
		for i := range 10 {
			events = append(events, fmt.Sprintf(`{"type":"backup.test","entity_id":"e%d","payload":%s}`, (b*10+i)%13, payload))
		}
		if st := r.api(http.MethodPost, "/v1/events/batch", `{"events":[`+strings.Join(events, ",")+`]}`, nil); st != http.StatusCreated {
			t.Fatalf("batch %d: %d", b, st)
		}
	}
	res, err := r.hc.Post(r.base+"/v1/backup", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("POST /v1/backup: %d", res.StatusCode)
	}
	path := filepath.Join(t.TempDir(), "backup.db")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	start := time.Now()
	var n int64
	for {
		k, err := io.CopyN(f, res.Body, 512<<10)
		n += k
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("backup cut after %d bytes and %s (http.write_timeout 2s): %v", n, time.Since(start).Round(time.Millisecond), err)
		}
		time.Sleep(250 * time.Millisecond) // a slow client, not a synchronisation
	}
	took := time.Since(start)
	if took < 2*2*time.Second {
		t.Fatalf("the backup (%d bytes) was read in %s: too slow a client is needed to show that the write timeout is lifted", n, took)
	}
	// A whole store file: it opens and holds every event.
	if events, err := checkStoreFile(path); err != nil || events != 500 {
		t.Fatalf("the backup read slowly: %d events, %v; want 500", events, err)
	}
	t.Logf("backup of %d bytes read in %s", n, took.Round(time.Millisecond))
}
