package handlers

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fitiqcore/outbox"
)

// Headers a dead letter carries besides the original message's headers.
const (
	HeaderDLQError      = "Outbox-DLQ-Error"      // the handler's error text (one line, at most 4 KiB)
	HeaderDLQReason     = "Outbox-DLQ-Reason"     // permanent, max_attempts, no_handler or undecodable
	HeaderDLQDeliveries = "Outbox-DLQ-Deliveries" // deliveries so far, the failed one included
	HeaderDLQStream     = "Outbox-DLQ-Stream"     // the stream that holds the original message
	HeaderDLQStreamSeq  = "Outbox-DLQ-Stream-Seq" // its sequence there
	HeaderDLQSubject    = "Outbox-DLQ-Subject"    // its subject
	HeaderDLQConsumer   = "Outbox-DLQ-Consumer"   // the durable that gave up
	HeaderDLQTime       = "Outbox-DLQ-Time"       // when, RFC 3339
)

// deadLetter publishes a copy of m to <dlq prefix>.<type> with the failure in
// its headers, waits for the dead-letter stream's ack, then terminates m. If
// the publish fails, m is naked with a backoff and the whole handling is tried
// again later: a message is terminated only once its dead letter is stored.
// e is nil for a message that could not be decoded.
func (s *session) deadLetter(m *inflight, meta *jetstream.MsgMetadata, e *outbox.Event, reason string, cause error) {
	msg := m.msg
	h := make(nats.Header, len(msg.Headers())+9)
	for k, v := range msg.Headers() {
		h[k] = slices.Clone(v)
	}
	h.Set(HeaderDLQError, oneLine(outbox.TruncateError(cause.Error())))
	h.Set(HeaderDLQReason, reason)
	h.Set(HeaderDLQDeliveries, strconv.FormatUint(meta.NumDelivered, 10))
	h.Set(HeaderDLQStream, meta.Stream)
	h.Set(HeaderDLQStreamSeq, strconv.FormatUint(meta.Sequence.Stream, 10))
	h.Set(HeaderDLQSubject, msg.Subject())
	h.Set(HeaderDLQConsumer, meta.Consumer)
	h.Set(HeaderDLQTime, time.Now().UTC().Format(time.RFC3339Nano))
	// One dead letter per stored message, even if the term is lost and the
	// message fails again within the dead-letter stream's duplicate window.
	h.Set(nats.MsgIdHdr, fmt.Sprintf("dlq:%s:%d", meta.Stream, meta.Sequence.Stream))
	dl := &nats.Msg{Subject: s.dlqSubject(msg.Subject()), Header: h, Data: msg.Data()}

	log := s.log.With("subject", msg.Subject(), "stream_seq", meta.Sequence.Stream, "deliveries", meta.NumDelivered,
		"reason", reason, "err", cause)
	if e != nil {
		log = log.With("id", e.ID, "type", e.Type)
	}
	if err := s.publishDeadLetter(dl); err != nil {
		log.Error("dead-letter publish failed; retrying the event later", "dlq_subject", dl.Subject, "publish_err", err)
		s.retryLater(m, e, meta.NumDelivered)
		return
	}
	defer s.done(m)
	log.Warn("event dead-lettered", "dlq_subject", dl.Subject)
	if err := msg.TermWithReason("dead-lettered (" + reason + ")"); err != nil {
		log.Warn("term failed; the event will be delivered again", "term_err", err)
	}
}

func (s *session) publishDeadLetter(dl *nats.Msg) error {
	ctx, cancel := s.opContext()
	defer cancel()
	if s.dlqStream {
		if _, err := s.r.js.PublishMsg(ctx, dl); err != nil {
			return fmt.Errorf("handlers: publish dead letter to %s: %w", dl.Subject, err)
		}
		return nil
	}
	nc := s.r.js.Conn()
	if err := nc.PublishMsg(dl); err != nil {
		return fmt.Errorf("handlers: publish dead letter to %s: %w", dl.Subject, err)
	}
	if err := nc.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("handlers: flush dead letter to %s: %w", dl.Subject, err)
	}
	return nil
}

// dlqSubject maps <subject prefix>.<type> to <dlq prefix>.<type>. It uses the
// subject, a literal that the relay published to, rather than the ce-type
// header, which a foreign publisher could fill with anything.
func (s *session) dlqSubject(subject string) string {
	t, ok := strings.CutPrefix(subject, s.o.subjectPrefix+".")
	if !ok || t == "" {
		t = "unknown"
	}
	return s.o.dlqPrefix + "." + t
}

// oneLine makes s fit in a NATS header value.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
}
