package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/httpapi"
	"github.com/fitiqcore/outbox/publisher"
	"github.com/nats-io/nats.go/jetstream"
)

// cmdVerify is the integration check: the relay answers and is connected,
// the stream exists and covers the relay's subjects, and a probe event goes
// through the outbox into the stream, where it is read back. One line per
// check; exit status 1 when any fails.
func cmdVerify(ctx context.Context, args []string, std stdio) error {
	fs := newFlagSet("verify", "verify [--addr HOST:PORT] [--config FILE] [--nats-url URL] [--timeout D] [--json]", std)
	cf := addCommonFlags(fs)
	natsURL := fs.String("nats-url", "", "NATS to read the stream from (default: --config's nats.url, else nats://<nats.embedded_addr>)")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for the probe event to be published")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return flagError(err)
	}
	if len(pos) > 0 {
		return fmt.Errorf("verify: unexpected argument %q", pos[0])
	}
	cfg, err := cf.loadConfig()
	if err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	if *natsURL == "" {
		*natsURL = cfg.NATS.URL
		if *natsURL == "" {
			*natsURL = "nats://" + cfg.NATS.EmbeddedAddr
		}
	}
	v := &verifier{cfg: cfg, c: c, natsURL: *natsURL, timeout: *timeout, w: std.out, json: cf.json}
	v.run(ctx)
	if cf.json {
		if err := printJSON(std.out, map[string]any{"ok": v.failed == 0, "checks": v.results}); err != nil {
			return err
		}
	}
	if v.failed > 0 {
		if !cf.json {
			fmt.Fprintf(std.out, "%d of %d checks failed\n", v.failed, len(v.results))
		}
		return exitCode(1)
	}
	if !cf.json {
		fmt.Fprintf(std.out, "all %d checks passed\n", len(v.results))
	}
	return nil
}

// checkResult is one line of relay verify.
type checkResult struct {
	Check string `json:"check"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

type verifier struct {
	cfg     *Config
	c       *client
	natsURL string
	timeout time.Duration
	w       io.Writer
	json    bool

	results []checkResult
	failed  int
}

// check records and prints one check; err nil means it passed.
func (v *verifier) check(name string, err error) bool {
	r := checkResult{Check: name, OK: err == nil}
	if err != nil {
		r.Error = err.Error()
		v.failed++
	}
	v.results = append(v.results, r)
	if !v.json {
		if err == nil {
			fmt.Fprintf(v.w, "ok   %s\n", name)
		} else {
			fmt.Fprintf(v.w, "FAIL %s: %s\n", name, oneLine(err.Error(), 300))
		}
	}
	return err == nil
}

// errSkipped marks a check that could not run because an earlier one failed.
func errSkipped(after string) error { return fmt.Errorf("skipped: %s failed", after) }

func (v *verifier) run(ctx context.Context) {
	streamName, prefix := v.cfg.Stream.Name, v.cfg.Stream.SubjectPrefix

	// The relay, as it sees itself.
	var rep httpapi.Report
	err := v.c.do(ctx, http.MethodGet, "/v1/status", nil, nil, &rep)
	relayOK := v.check("relay answers at "+v.c.String(), err)
	if relayOK && rep.Stream != nil {
		streamName, prefix = rep.Stream.Name, rep.Stream.SubjectPrefix // the relay's own, over the config's
	}
	switch {
	case !relayOK:
		v.check("relay is connected to NATS", errSkipped("relay answers"))
	case rep.NATS == nil:
		v.check("relay is connected to NATS", errors.New("the relay reports no NATS connection"))
	case !rep.NATS.Connected:
		v.check("relay is connected to NATS", errors.New(orDash(rep.NATS.Error)))
	default:
		v.check("relay is connected to NATS", nil)
	}

	// The stream, as this command reads it from NATS.
	want := prefix + ".>"
	js, closeNATS, err := v.connect(ctx, streamName, prefix)
	natsOK := v.check("NATS reachable at "+v.natsURL, err)
	var stream jetstream.Stream
	if natsOK {
		defer closeNATS()
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		stream, err = js.Stream(sctx, streamName)
		cancel()
		v.check("stream "+streamName+" exists", err)
	} else {
		v.check("stream "+streamName+" exists", errSkipped("NATS reachable"))
	}
	switch {
	case stream == nil:
		v.check("stream "+streamName+" covers "+want, errSkipped("stream exists"))
	default:
		v.check("stream "+streamName+" covers "+want, v.coverage(stream.CachedInfo().Config.Subjects, prefix))
	}

	// A probe event, end to end.
	probeName := "probe event (type " + verifyType + ")"
	if !relayOK {
		v.check(probeName+" enqueued", errSkipped("relay answers"))
		v.check(probeName+" completed", errSkipped("relay answers"))
		v.check(probeName+" read back from stream "+streamName, errSkipped("relay answers"))
		return
	}
	host, _ := os.Hostname()
	payload, _ := json.Marshal(map[string]any{"verify": true, "host": host, "at": time.Now().UTC()})
	probe := map[string]any{"type": verifyType, "payload": json.RawMessage(payload), "priority": outbox.MaxPriority}
	var sent outbox.Event
	err = v.c.do(ctx, http.MethodPost, "/v1/events", nil, probe, &sent)
	if !v.check(probeName+" enqueued", err) {
		v.check(probeName+" completed", errSkipped("enqueue"))
		v.check(probeName+" read back from stream "+streamName, errSkipped("enqueue"))
		return
	}
	completed := v.check(probeName+" "+sent.ID+" completed", v.waitCompleted(ctx, sent.ID))
	switch {
	case !completed:
		v.check(probeName+" read back from stream "+streamName, errSkipped("completion"))
	case stream == nil:
		v.check(probeName+" read back from stream "+streamName, errSkipped("stream exists"))
	default:
		v.check(probeName+" read back from stream "+streamName, v.readBack(ctx, stream, outbox.Subject(prefix, verifyType), &sent))
	}
}

// connect opens this command's own NATS connection with the config's
// credentials; it never creates or changes a stream.
func (v *verifier) connect(ctx context.Context, stream, prefix string) (jetstream.JetStream, func(), error) {
	n := v.cfg.NATS
	pub, err := publisher.Connect(publisher.Config{
		URL:           v.natsURL,
		Name:          "fitiqcore-outbox-verify",
		SubjectPrefix: prefix,
		Stream:        publisher.StreamConfig{Manage: false, Name: stream},
		Auth:          natsAuth(n), // nats.embedded_auth for the embedded server
	})
	if err != nil {
		return nil, nil, err
	}
	if err := waitConnected(ctx, pub, 5*time.Second); err != nil {
		pub.Close()
		return nil, nil, err
	}
	return pub.JetStream(), pub.Close, nil
}

// coverage checks that the stream's subjects cover <prefix>.>, or at least
// every configured event type's subject and the probe's.
func (v *verifier) coverage(subjects []string, prefix string) error {
	want := prefix + ".>"
	if covers(subjects, want) {
		return nil
	}
	var missing []string
	for _, t := range append(eventTypeNames(v.cfg.EventTypes), verifyType) {
		if s := outbox.Subject(prefix, t); !covers(subjects, s) {
			missing = append(missing, s)
		}
	}
	msg := fmt.Sprintf("its subjects [%s] do not cover %s", strings.Join(subjects, " "), want)
	if len(missing) > 0 {
		msg += fmt.Sprintf("; uncovered: %s (events of these types fail)", strings.Join(missing, " "))
	}
	return errors.New(msg)
}

// waitCompleted polls the probe event until it is completed, failed, or
// the timeout passes.
func (v *verifier) waitCompleted(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, v.timeout)
	defer cancel()
	var e outbox.Event
	for {
		err := v.c.do(ctx, http.MethodGet, "/v1/events/"+url.PathEscape(id), nil, nil, &e)
		switch {
		case err != nil && ctx.Err() != nil:
			return fmt.Errorf("still %s after %s (attempts %d, last error: %s)", e.Status, v.timeout, e.AttemptCount, orDash(e.LastError))
		case err != nil:
			return err
		case e.Status == outbox.StatusCompleted:
			return nil
		case e.Status == outbox.StatusFailed:
			return fmt.Errorf("failed after %d attempts: %s", e.AttemptCount, e.LastError)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("still %s after %s (attempts %d, last error: %s)", e.Status, v.timeout, e.AttemptCount, orDash(e.LastError))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// readBack gets the last message on the probe's subject and compares it
// with the probe.
func (v *verifier) readBack(ctx context.Context, stream jetstream.Stream, subject string, sent *outbox.Event) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	m, err := stream.GetLastMsgForSubject(ctx, subject)
	if err != nil {
		return fmt.Errorf("get last message on %s: %w", subject, err)
	}
	got, err := outbox.FromMessage(m.Header, m.Data)
	if err != nil {
		return fmt.Errorf("message %d on %s: %w", m.Sequence, subject, err)
	}
	if got.ID != sent.ID {
		return fmt.Errorf("the last message on %s (seq %d) is event %s, not the probe %s (another verify running?)", subject, m.Sequence, got.ID, sent.ID)
	}
	if !bytes.Equal(got.Payload, sent.Payload) {
		return fmt.Errorf("message %d holds payload %s, the probe sent %s", m.Sequence, got.Payload, sent.Payload)
	}
	return nil
}

// waitConnected waits until pub's connection is up, checking as often as the
// connection's state can change, for at most within or until ctx ends.
func waitConnected(ctx context.Context, pub *publisher.Publisher, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !pub.Connected() {
		select {
		case <-ctx.Done():
			if err := pub.Conn().LastError(); err != nil {
				return err
			}
			return fmt.Errorf("no connection within %s", within)
		case <-tick.C:
		}
	}
	return nil
}
