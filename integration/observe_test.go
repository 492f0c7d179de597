//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// handled is one line of the subscriber's record, with the time the suite
// first saw it (the record is polled every 100ms).
type handled struct {
	ID        string `json:"id"`
	Type      string `json:"type"`
	EntityID  string `json:"entity_id"`
	EntitySeq uint64 `json:"entity_seq"`
	seen      time.Time
}

// tailer follows the subscriber's record through the app's GET /tail. It
// reads from the end of the last complete line each time, so a torn last line
// that the subscriber cuts off after a crash is read again as rewritten.
type tailer struct {
	hc  *http.Client
	url string

	mu     sync.Mutex
	lines  []handled
	offset int64 // end of the last complete line read
	err    error

	stop chan struct{}
	done chan struct{}
}

func startTailer(hc *http.Client, url string) *tailer {
	t := &tailer{hc: hc, url: url, stop: make(chan struct{}), done: make(chan struct{})}
	go t.run()
	return t
}

func (t *tailer) run() {
	defer close(t.done)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		t.poll()
		select {
		case <-t.stop:
			return
		case <-tick.C:
		}
	}
}

func (t *tailer) poll() {
	t.mu.Lock()
	off := t.offset
	t.mu.Unlock()
	resp, err := t.hc.Get(fmt.Sprintf("%s?offset=%d", t.url, off))
	if err != nil {
		return // the app is briefly unreachable: the next poll catches up
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		return
	}
	now := time.Now()
	end := bytes.LastIndexByte(data, '\n') + 1
	var fresh []handled
	for _, line := range bytes.Split(data[:end], []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var h handled
		if err := json.Unmarshal(line, &h); err != nil {
			t.mu.Lock()
			t.err = fmt.Errorf("record line at offset %d: %q: %v", off, line, err)
			t.mu.Unlock()
			return
		}
		h.seen = now
		fresh = append(fresh, h)
	}
	t.mu.Lock()
	t.lines = append(t.lines, fresh...)
	t.offset = off + int64(end)
	t.mu.Unlock()
}

// Stop ends the polling.
func (t *tailer) Stop() {
	select {
	case <-t.stop:
	default:
		close(t.stop)
	}
	<-t.done
}

// Lines is every record line read so far, in file order.
func (t *tailer) Lines() ([]handled, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]handled(nil), t.lines...), t.err
}

func (t *tailer) Count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.lines)
}

// streamMsg is one message of the stream, as stored.
type streamMsg struct {
	ID  string // Nats-Msg-Id
	Seq uint64
	At  time.Time // when the stream stored it
}

// readStream reads the whole stream with an ordered consumer, trying again
// a few times when the read fails (the cluster may still be settling).
func (s *stack) readStream() ([]streamMsg, error) {
	var err error
	for range 5 {
		var msgs []streamMsg
		if msgs, err = s.readStreamOnce(); err == nil {
			return msgs, nil
		}
		s.t.Logf("reading the stream back (connected to %s): %v; trying again", s.nc.ConnectedServerName(), err)
		time.Sleep(time.Second)
	}
	return nil, err
}

func (s *stack) readStreamOnce() ([]streamMsg, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := s.js.Stream(ctx, streamName)
	if err != nil {
		return nil, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, err
	}
	last := info.State.LastSeq
	msgs := make([]streamMsg, 0, info.State.Msgs)
	if info.State.Msgs == 0 {
		return msgs, nil
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, err
	}
	for {
		batch, err := cons.Fetch(2000, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return nil, err
		}
		for m := range batch.Messages() {
			md, err := m.Metadata()
			if err != nil {
				return nil, err
			}
			msgs = append(msgs, streamMsg{ID: m.Headers().Get(jetstream.MsgIDHeader), Seq: md.Sequence.Stream, At: md.Timestamp})
			if md.Sequence.Stream >= last {
				return msgs, nil
			}
		}
		if err := batch.Error(); err != nil && err != jetstream.ErrNoMessages {
			return nil, err
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("read %d of %d messages: %w", len(msgs), info.State.Msgs, ctx.Err())
		}
	}
}

// logCount counts the lines of a service's log that contain every one of
// the substrings.
func (s *stack) logCount(svc string, subs ...string) int {
	n := 0
	for _, line := range strings.Split(s.logs(svc), "\n") {
		ok := true
		for _, sub := range subs {
			if !strings.Contains(line, sub) {
				ok = false
				break
			}
		}
		if ok {
			n++
		}
	}
	return n
}
