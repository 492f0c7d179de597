package handlers_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/fitiqcore/outbox/internal/poll"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/handlers"
)

// wireSize is the size of a message as NATS counts it against max_payload:
// the header block ("NATS/1.0\r\n", "Key: Value\r\n" per value, "\r\n") plus
// the data. The values in these tests have no white space at either end,
// which NATS would trim.
func wireSize(h nats.Header, data []byte) int {
	n := len(data)
	if len(h) == 0 {
		return n
	}
	n += len("NATS/1.0\r\n") + len("\r\n")
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(": ") + len(v) + len("\r\n")
		}
	}
	return n
}

// sizedMessage returns an event and its message, with headers exactly as the
// relay makes them, whose payload is payloadLen(hdr, wire) bytes, where hdr is
// the size of the message's header block and wire the event's WireSize, both
// without payload.
func sizedMessage(t *testing.T, payloadLen func(hdr, wire int) int) (*outbox.Event, *nats.Msg) {
	t.Helper()
	e := event(t, "mood.logged", "user-1", 1)
	e.ContentType = outbox.ContentTypeBinary
	e.Payload = nil
	m := e.Message(prefix, "", 1, nil)
	n := payloadLen(wireSize(m.Header, nil), e.WireSize())
	if n < 0 {
		t.Fatalf("payload of %d bytes", n)
	}
	e.Payload = bytes.Repeat([]byte{'x'}, n)
	m.Data = e.Payload
	return e, m
}

// terminations subscribes to the server's MSG_TERMINATED advisories of a
// durable and returns the stream sequences terminated so far.
func (v *env) terminations(durable string) func() []uint64 {
	v.t.Helper()
	sub, err := v.nc.SubscribeSync("$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED." + stream + "." + durable)
	if err != nil {
		v.t.Fatal(err)
	}
	v.t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := v.nc.Flush(); err != nil {
		v.t.Fatal(err)
	}
	var seqs []uint64
	return func() []uint64 {
		for {
			m, err := sub.NextMsg(10 * time.Millisecond)
			if err != nil {
				return seqs
			}
			var a struct {
				StreamSeq uint64 `json:"stream_seq"`
			}
			if err := json.Unmarshal(m.Data, &a); err != nil {
				v.t.Fatalf("advisory %s: %v", m.Data, err)
			}
			seqs = append(seqs, a.StreamSeq)
		}
	}
}

// TestDeadLetterFitsMaxPayload: an event close to the server's max_payload,
// whose handler fails for good with an error longer than 4 KiB, is
// dead-lettered once (issue 9, row 12: the copy with its headers and error did
// not fit, so the handler ran again and again and nothing was dead-lettered).
// The error text is cut to fit; when even the bare copy cannot fit, the dead
// letter goes without the payload, which stays in the event stream.
func TestDeadLetterFitsMaxPayload(t *testing.T) {
	const maxPayload = 16 << 10
	longErr := "validate mood: " + strings.Repeat("Grüße, \r\nzu lang; ", 400) // 8,800 bytes, multi-byte, CR LF
	oneLineErr := strings.TrimSpace(strings.NewReplacer("\r", " ", "\n", " ").Replace(longErr))
	for _, tc := range []struct {
		name       string
		payloadLen func(hdr, wire int) int
		omitted    bool // the dead letter carries no payload
		fullError  bool // the error is cut only to its 4 KiB cap
	}{
		{
			name:       "at the relay's limit, max_payload less the dead-letter reserve",
			payloadLen: func(hdr, wire int) int { return outbox.MessageLimit(maxPayload) - wire },
			fullError:  true,
		},
		{
			name:       "600 bytes under max_payload",
			payloadLen: func(hdr, wire int) int { return maxPayload - 600 - hdr },
		},
		{
			name:       "filling max_payload",
			payloadLen: func(hdr, wire int) int { return maxPayload - hdr },
			omitted:    true,
			fullError:  true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newEnvWith(t, false, func(o *server.Options) { o.MaxPayload = maxPayload })
			if got := v.nc.MaxPayload(); got != maxPayload {
				t.Fatalf("server max_payload %d, want %d", got, maxPayload)
			}
			e, msg := sizedMessage(t, tc.payloadLen)
			if tc.omitted {
				// Proof that the message fills max_payload: one byte more is refused.
				over := &nats.Msg{Subject: msg.Subject, Header: msg.Header, Data: append(bytes.Clone(msg.Data), 'x')}
				if _, err := v.js.PublishMsg(context.Background(), over); !errors.Is(err, nats.ErrMaxPayload) {
					t.Fatalf("one byte over the limit: %v, want %v", err, nats.ErrMaxPayload)
				}
			}
			if _, err := v.js.PublishMsg(context.Background(), msg); err != nil {
				t.Fatal(err)
			}
			origSize := wireSize(msg.Header, msg.Data)

			var c calls
			r := v.router("big", handlers.WithRetryPolicy(outbox.RetryPolicy{InitialInterval: 20 * time.Millisecond, MaxInterval: 100 * time.Millisecond, Multiplier: 2}))
			r.HandleFunc("mood.logged", func(ctx context.Context, e *outbox.Event) error {
				c.add(e)
				return handlers.Permanent(errors.New(longErr))
			})
			terminated := v.terminations("big")
			v.start(r, "big")

			if !poll.Within(10*time.Second, func() bool { return v.dlqCount() == 1 }) {
				t.Fatalf("no dead letter after 10s of a %d-byte message on a %d-byte max_payload; the handler ran %d times",
					origSize, maxPayload, c.n())
			}
			v.settled("big", 5*time.Second)
			poll.Until(t, 5*time.Second, "the original terminated", func() bool { return len(terminated()) == 1 })
			if got := terminated(); got[0] != 1 {
				t.Errorf("terminated stream seqs %v, want [1]", got)
			}
			if n := c.n(); n != 1 {
				t.Errorf("handler ran %d times, want 1 (a permanent error)", n)
			}
			if n := v.dlqCount(); n != 1 {
				t.Errorf("%d dead letters, want 1", n)
			}

			dl := v.deadLetters()[0]
			h := dl.Header
			size := wireSize(h, dl.Data)
			t.Logf("original %d bytes, dead letter %d bytes (payload %d, error %d)", origSize, size, len(dl.Data), len(h.Get(handlers.HeaderDLQError)))
			if size > maxPayload {
				t.Errorf("dead letter of %d bytes, over max_payload %d", size, maxPayload)
			}
			for k, want := range map[string]string{
				handlers.HeaderDLQReason:     "permanent",
				handlers.HeaderDLQDeliveries: "1",
				handlers.HeaderDLQStream:     stream,
				handlers.HeaderDLQStreamSeq:  "1",
				handlers.HeaderDLQSubject:    msg.Subject,
				handlers.HeaderDLQConsumer:   "big",
				outbox.HeaderID:              e.ID,
				nats.MsgIdHdr:                "dlq:" + stream + ":1",
			} {
				if got := h.Get(k); got != want {
					t.Errorf("dead letter header %s = %q, want %q", k, got, want)
				}
			}

			dlErr := h.Get(handlers.HeaderDLQError)
			switch {
			case !utf8.ValidString(dlErr):
				t.Errorf("error header is not valid UTF-8: %q", dlErr)
			case strings.ContainsAny(dlErr, "\r\n"):
				t.Errorf("error header is not one line: %q", dlErr)
			case !strings.HasSuffix(dlErr, "…") || !strings.HasPrefix(oneLineErr, strings.TrimSuffix(dlErr, "…")):
				t.Errorf("error header %q is not the start of the error marked with …", dlErr)
			case len(dlErr) > 4096:
				t.Errorf("error header of %d bytes, over 4 KiB", len(dlErr))
			case tc.fullError && len(dlErr) < 4090:
				t.Errorf("error header of %d bytes: cut below its 4 KiB cap although the dead letter had room", len(dlErr))
			case !tc.fullError && len(dlErr) < len("validate mood")+len("…"):
				t.Errorf("error header %q: not even its start kept", dlErr)
			}

			if tc.omitted {
				if len(dl.Data) != 0 || h.Get(handlers.HeaderDLQPayloadOmitted) != strconv.Itoa(len(e.Payload)) {
					t.Errorf("dead letter with %d payload bytes and %s %q, want none and %d",
						len(dl.Data), handlers.HeaderDLQPayloadOmitted, h.Get(handlers.HeaderDLQPayloadOmitted), len(e.Payload))
				}
				// The original, payload and all, is still where the headers say.
				st, err := v.js.Stream(context.Background(), h.Get(handlers.HeaderDLQStream))
				if err != nil {
					t.Fatal(err)
				}
				seq, _ := strconv.ParseUint(h.Get(handlers.HeaderDLQStreamSeq), 10, 64)
				orig, err := st.GetMsg(context.Background(), seq)
				if err != nil || !bytes.Equal(orig.Data, e.Payload) {
					t.Errorf("original at %s/%d: %v, %d bytes, want %d", stream, seq, err, len(orig.Data), len(e.Payload))
				}
				return
			}
			if !bytes.Equal(dl.Data, e.Payload) || h.Get(handlers.HeaderDLQPayloadOmitted) != "" {
				t.Errorf("dead letter payload %d bytes (%s %q), want the original's %d", len(dl.Data),
					handlers.HeaderDLQPayloadOmitted, h.Get(handlers.HeaderDLQPayloadOmitted), len(e.Payload))
			}
			if got, err := outbox.FromMessage(h, dl.Data); err != nil || got.ID != e.ID {
				t.Errorf("dead letter does not carry the event: %v", err)
			}
			if tc.fullError {
				if added := size - origSize; added > outbox.DeadLetterReserve {
					t.Errorf("the dead letter adds %d bytes, over outbox.DeadLetterReserve (%d)", added, outbox.DeadLetterReserve)
				}
			}
		})
	}
}

// TestDeadLetterOfForeignHeaders: a message from a foreign publisher with a
// header that would fail every publish of its copy is dead-lettered once,
// without that header: one that JetStream acts on (Nats-Expected-Stream, which
// the dead-letter stream refuses for ever), or a key that the server takes
// from another client but nats.go refuses to send.
func TestDeadLetterOfForeignHeaders(t *testing.T) {
	for _, tc := range []struct {
		name, key, value string
		raw              bool // published with the bare protocol, as nats.go would refuse the key
	}{
		{name: "a JetStream header", key: jetstream.ExpectedStreamHeader, value: stream},
		{name: "a key nats.go refuses", key: "x-trace/id", value: "42", raw: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newEnv(t, false)
			e := event(t, "mood.logged", "user-1", 1)
			msg := e.Message(prefix, "", 1, nil)
			msg.Header.Set(tc.key, tc.value)
			if tc.raw {
				rawPublish(t, v.nc.ConnectedUrl(), msg)
			} else if _, err := v.js.PublishMsg(context.Background(), msg); err != nil {
				t.Fatal(err)
			}
			var c calls
			r := v.router("foreign", handlers.WithRetryPolicy(outbox.RetryPolicy{InitialInterval: 20 * time.Millisecond, MaxInterval: 100 * time.Millisecond, Multiplier: 2}))
			r.HandleFunc("mood.logged", func(ctx context.Context, e *outbox.Event) error {
				c.add(e)
				return handlers.Permanent(errBoom)
			})
			v.start(r, "foreign")
			if !poll.Within(10*time.Second, func() bool { return v.dlqCount() == 1 }) {
				t.Fatalf("no dead letter after 10s; the handler ran %d times", c.n())
			}
			v.settled("foreign", 5*time.Second)
			if n := c.n(); n != 1 {
				t.Errorf("handler ran %d times, want 1", n)
			}
			h := v.deadLetters()[0].Header
			if got, ok := h[tc.key]; ok {
				t.Errorf("dead letter carries %s: %q", tc.key, got)
			}
			if h.Get(outbox.HeaderID) != e.ID || h.Get(nats.MsgIdHdr) != "dlq:"+stream+":1" || h.Get(handlers.HeaderDLQReason) != "permanent" {
				t.Errorf("dead letter headers %v", h)
			}
		})
	}
}

// rawPublish sends m with the bare NATS protocol (HPUB), which takes any
// header key, and waits for the server to have processed it.
func rawPublish(t *testing.T, url string, m *nats.Msg) {
	t.Helper()
	var hdr strings.Builder
	hdr.WriteString("NATS/1.0\r\n")
	for k, vs := range m.Header {
		for _, v := range vs {
			hdr.WriteString(k + ": " + v + "\r\n")
		}
	}
	hdr.WriteString("\r\n")
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(url, "nats://"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Fprintf(conn, "CONNECT {\"verbose\":false,\"headers\":true}\r\nHPUB %s %d %d\r\n%s%s\r\nPING\r\n",
		m.Subject, hdr.Len(), hdr.Len()+len(m.Data), hdr.String(), m.Data); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("raw publish: %v", err)
		}
		switch {
		case strings.HasPrefix(line, "-ERR"):
			t.Fatalf("raw publish: %s", line)
		case strings.HasPrefix(line, "PONG"):
			return
		}
	}
}

// TestDeadLetterRefusedAsTooLarge: when the dead-letter stream's
// max_msg_size shrinks while the Router runs, the server refuses the planned
// dead letter (10054); the Router makes it smaller (here, without the
// payload) rather than sending the same message again, and terminates the
// original once it is stored. When not even the Outbox-DLQ-* headers fit, the
// event is naked with its backoff: never terminated without a dead letter.
func TestDeadLetterRefusedAsTooLarge(t *testing.T) {
	for _, tc := range []struct {
		name       string
		maxMsgSize int32
		stored     bool // a dead letter fits at all
	}{
		{name: "the copy without its payload fits", maxMsgSize: 2048, stored: true},
		{name: "nothing fits", maxMsgSize: 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newEnv(t, false)
			var c calls
			policy := outbox.RetryPolicy{InitialInterval: 100 * time.Millisecond, MaxInterval: 200 * time.Millisecond, Multiplier: 2}
			r := v.router("shrunk", handlers.WithRetryPolicy(policy))
			r.HandleFunc("mood.logged", func(ctx context.Context, e *outbox.Event) error {
				c.add(e)
				return handlers.Permanent(errors.New(strings.Repeat("too long an error; ", 300)))
			})
			v.start(r, "shrunk")
			// The Router read the limit (none) at its start; it shrinks now.
			ctx := context.Background()
			st, err := v.js.Stream(ctx, dlqStream)
			if err != nil {
				t.Fatal(err)
			}
			cfg := st.CachedInfo().Config
			cfg.MaxMsgSize = tc.maxMsgSize
			if _, err := v.js.UpdateStream(ctx, cfg); err != nil {
				t.Fatal(err)
			}
			e := event(t, "mood.logged", "user-1", 1)
			e.Payload = []byte(`{"note":"` + strings.Repeat("n", 3000) + `"}`)
			v.publish(e)

			if !tc.stored {
				poll.Until(t, 10*time.Second, "the handler retried with its backoff", func() bool { return c.n() >= 3 })
				if n := v.dlqCount(); n != 0 {
					t.Errorf("%d dead letters in a stream that takes %d bytes", n, tc.maxMsgSize)
				}
				// The shortest backoff: InitialInterval less the jitter
				// (outbox.DefaultJitter, ±20%).
				least := time.Duration(float64(policy.InitialInterval) * (1 - outbox.DefaultJitter))
				at := c.at()
				for i := 1; i < len(at); i++ {
					if gap := at[i].Sub(at[i-1]); gap < least {
						t.Errorf("run %d came %s after the one before, within the backoff of %s", i+1, gap, policy.InitialInterval)
					}
				}
				if info := v.consumerInfo("shrunk"); info.NumAckPending != 1 {
					t.Errorf("%d ack pending, want the event held for redelivery, not terminated", info.NumAckPending)
				}
				return
			}
			if !poll.Within(10*time.Second, func() bool { return v.dlqCount() == 1 }) {
				t.Fatalf("no dead letter after 10s; the handler ran %d times", c.n())
			}
			v.settled("shrunk", 5*time.Second)
			if n := c.n(); n != 1 {
				t.Errorf("handler ran %d times, want 1", n)
			}
			dl := v.deadLetters()[0]
			if size := wireSize(dl.Header, dl.Data); size > int(tc.maxMsgSize) {
				t.Errorf("dead letter of %d bytes in a stream that takes %d", size, tc.maxMsgSize)
			}
			if len(dl.Data) != 0 || dl.Header.Get(handlers.HeaderDLQPayloadOmitted) != strconv.Itoa(len(e.Payload)) ||
				dl.Header.Get(outbox.HeaderID) != e.ID || !strings.HasSuffix(dl.Header.Get(handlers.HeaderDLQError), "…") {
				t.Errorf("dead letter %v with %d payload bytes", dl.Header, len(dl.Data))
			}
		})
	}
}

// TestCoreDeadLetterFitsMaxPayload: with no stream for the dead letters,
// they go to core NATS, where max_payload holds too: a message that fills it
// is dead-lettered once, without its payload.
func TestCoreDeadLetterFitsMaxPayload(t *testing.T) {
	const maxPayload = 8 << 10
	v := newEnvWith(t, true, func(o *server.Options) { o.MaxPayload = maxPayload })
	sub, err := v.nc.SubscribeSync(dlqPrefix + ".>")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	e, msg := sizedMessage(t, func(hdr, wire int) int { return maxPayload - hdr })
	if _, err := v.js.PublishMsg(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	var c calls
	r := v.router("core", handlers.WithRetryPolicy(outbox.RetryPolicy{InitialInterval: 20 * time.Millisecond, MaxInterval: 100 * time.Millisecond, Multiplier: 2}))
	r.HandleFunc("mood.logged", func(ctx context.Context, e *outbox.Event) error {
		c.add(e)
		return handlers.Permanent(errors.New(strings.Repeat("x", 5000)))
	})
	v.start(r, "core")
	dl, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("no dead letter on core NATS: %v; the handler ran %d times", err, c.n())
	}
	v.settled("core", 5*time.Second)
	if n := c.n(); n != 1 {
		t.Errorf("handler ran %d times, want 1", n)
	}
	if size := wireSize(dl.Header, dl.Data); size > maxPayload || len(dl.Data) != 0 ||
		dl.Header.Get(handlers.HeaderDLQPayloadOmitted) != strconv.Itoa(len(e.Payload)) || dl.Header.Get(handlers.HeaderDLQStreamSeq) != "1" {
		t.Errorf("dead letter of %d bytes, %d of payload, headers %v", size, len(dl.Data), dl.Header)
	}
}

// TestDeadLetterErrorText: the error text of a dead letter, cut to any room
// left, is one line of valid UTF-8 that fits the room, starts like the error
// and ends with "…" exactly when it was cut.
func TestDeadLetterErrorText(t *testing.T) {
	for _, tc := range []struct{ name, err, line string }{
		{name: "ascii", err: "save mood: backend said 503", line: "save mood: backend said 503"},
		{name: "multi-byte", err: "größe überschritten: 日本語のエラー 🙂", line: "größe überschritten: 日本語のエラー 🙂"},
		{name: "control characters", err: "line one\r\nline two\ttab\x00nul\n", line: "line one  line two tab nul"},
		{name: "invalid UTF-8", err: "bad \xff\xfe bytes", line: "bad \uFFFD bytes"},
		{name: "white space at the ends", err: "  padded  ", line: "padded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for n := 0; n <= len(tc.line)+2; n++ {
				got := handlers.DeadLetterError(errors.New(tc.err), n)
				switch {
				case n >= len(tc.line):
					if got != tc.line {
						t.Errorf("room %d: %q, want %q", n, got, tc.line)
					}
				case len(got) > n || !utf8.ValidString(got) || strings.ContainsAny(got, "\r\n\x00"):
					t.Errorf("room %d: %q (%d bytes)", n, got, len(got))
				case n < len("…") && got != "":
					t.Errorf("room %d: %q, want empty", n, got)
				case n >= len("…") && (!strings.HasSuffix(got, "…") || !strings.HasPrefix(tc.line, strings.TrimSuffix(got, "…"))):
					t.Errorf("room %d: %q is not a start of %q marked with …", n, got, tc.line)
				}
			}
		})
	}
	// A pathological error costs little and is still marked as cut.
	huge := strings.Repeat("x", 1<<20) + strings.Repeat(" ", 1<<20)
	if got := handlers.DeadLetterError(errors.New(huge), 1<<30); len(got) > 16<<10 || !strings.HasSuffix(got, "…") {
		t.Errorf("a 2 MiB error: %d bytes, ends %q", len(got), got[len(got)-8:])
	}
}
