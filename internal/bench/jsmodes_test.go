package bench

import (
	"errors"
	"slices"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fitiqcore/outbox/internal/natstest"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"
)

// BenchmarkJSModes: js_ceiling's publish modes on an in-process server, b.N
// messages of 256 bytes with a unique Nats-Msg-Id into a file-backed R1
// stream, from the first publish to the last ack. cpu-ns/msg is the
// process's CPU time per message, the server's included.
func BenchmarkJSModes(b *testing.B) {
	for _, mode := range jsModes {
		b.Run(mode.name, func(b *testing.B) {
			ns := natstest.Start(b)
			nc, js := ns.Connect(b)
			cfg := streamConfig("BENCH", "bench")
			mode.stream(&cfg)
			if _, err := js.CreateStream(b.Context(), cfg); err != nil {
				b.Fatal(err)
			}
			payload := make([]byte, 256)
			msgs := make([]*nats.Msg, b.N)
			for i := range msgs {
				msgs[i] = &nats.Msg{Subject: "bench.event." + strconv.Itoa(i%16), Data: payload,
					Header: nats.Header{jetstream.MsgIDHeader: {uuid.Must(uuid.NewV7()).String()}}}
			}
			var sent atomic.Int64
			b.ReportAllocs()
			cpu := cpuTime(b)
			b.ResetTimer()
			if err := mode.publish(b.Context(), nc, msgs, &sent); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			b.ReportMetric(float64((cpuTime(b)-cpu).Nanoseconds())/float64(b.N), "cpu-ns/msg")
			st, err := js.Stream(b.Context(), "BENCH")
			if err != nil {
				b.Fatal(err)
			}
			if info, err := st.Info(b.Context()); err != nil || info.State.Msgs != uint64(b.N) {
				b.Fatalf("stream holds %v of %d messages (%v)", info.State.Msgs, b.N, err)
			}
		})
	}
}

func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestPublishModesDeduplication pins what jsMode.dedup says of each batch
// mode, on the server in go.mod (nats-server/v2 server/stream.go,
// jetstream_batching.go): with X already in the stream,
//   - an atomic batch holding X fails whole with 10201 ("atomic publish batch
//     contains duplicate message id"), nothing stored, and says nothing of
//     which message was the duplicate; a message over max_msg_size fails it
//     whole too (10176, incomplete);
//   - a fast batch holding X skips it and stores the others; its commit ack
//     counts X among the batch's messages, and no ack says which message was
//     a duplicate or at which sequence; a message over max_msg_size ends the
//     batch there: the commit answers the error, the messages before it are
//     stored, those after it are not.
func TestPublishModesDeduplication(t *testing.T) {
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	ctx := t.Context()
	cfg := streamConfig("MODES", "modes")
	cfg.AllowAtomicPublish, cfg.AllowBatchPublish, cfg.MaxMsgSize = true, true, 1000
	st, err := js.CreateStream(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	msg := func(id string, size int) *nats.Msg {
		return &nats.Msg{Subject: "modes.event", Data: make([]byte, size), Header: nats.Header{jetstream.MsgIDHeader: {id}}}
	}
	stored := func() []string {
		t.Helper()
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
			m, err := st.GetMsg(ctx, seq)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, m.Header.Get(jetstream.MsgIDHeader))
		}
		return ids
	}
	if _, err := js.PublishMsg(ctx, msg("X", 10)); err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		name string
		msgs []*nats.Msg
		code jetstream.ErrorCode
	}{
		{"duplicate of a stored message", []*nats.Msg{msg("A1", 10), msg("X", 10), msg("A3", 10)}, 10201},
		{"duplicate inside the batch", []*nats.Msg{msg("B1", 10), msg("B1", 10)}, 10201},
		{"message over max_msg_size", []*nats.Msg{msg("C1", 10), msg("C2", 2000), msg("C3", 10)}, 10176},
	} {
		_, err := jetstreamext.PublishMsgBatch(ctx, js, tt.msgs)
		var apiErr *jetstream.APIError
		if !errors.As(err, &apiErr) || apiErr.ErrorCode != tt.code {
			t.Errorf("atomic batch, %s: %v, want API error %d", tt.name, err, tt.code)
		}
	}
	if got := stored(); !slices.Equal(got, []string{"X"}) {
		t.Fatalf("after the atomic batches the stream holds %v, want only X", got)
	}

	fast := func(msgs ...*nats.Msg) (*jetstreamext.BatchAck, error) {
		fp, err := jetstreamext.NewFastPublisher(js)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			if _, err := fp.AddMsg(m); err != nil {
				return nil, err
			}
		}
		return fp.Close(ctx)
	}
	ack, err := fast(msg("F1", 10), msg("X", 10), msg("F3", 10))
	if err != nil || ack.BatchSize != 3 || ack.Sequence != 3 {
		t.Errorf("fast batch with a duplicate: %+v %v, want 3 messages committed, the last at seq 3", ack, err)
	}
	if got := stored(); !slices.Equal(got, []string{"X", "F1", "F3"}) {
		t.Fatalf("after a fast batch with a duplicate the stream holds %v, want X F1 F3", got)
	}
	_, err = fast(msg("G1", 10), msg("G2", 2000), msg("G3", 10))
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode != jetstream.JSErrCodeStreamMessageExceedsMaximum {
		t.Errorf("fast batch with a message over max_msg_size: %v, want API error 10054", err)
	}
	if got := stored(); !slices.Equal(got, []string{"X", "F1", "F3", "G1"}) {
		t.Fatalf("after a fast batch with a message too large the stream holds %v, want X F1 F3 G1", got)
	}

	for _, mode := range jsModes {
		if want := mode.name != "js_atomic_batch"; mode.dedup != want {
			t.Errorf("%s: dedup %v, want %v", mode.name, mode.dedup, want)
		}
	}
}
