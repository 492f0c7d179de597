package handlers

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fitiqcore/outbox"
)

// Headers a dead letter carries besides the original message's headers.
const (
	HeaderDLQError      = "Outbox-DLQ-Error"      // the handler's error text (one line, at most 4 KiB, cut to fit)
	HeaderDLQReason     = "Outbox-DLQ-Reason"     // permanent, max_attempts, no_handler or undecodable
	HeaderDLQDeliveries = "Outbox-DLQ-Deliveries" // deliveries so far, the failed one included
	HeaderDLQStream     = "Outbox-DLQ-Stream"     // the stream that holds the original message
	HeaderDLQStreamSeq  = "Outbox-DLQ-Stream-Seq" // its sequence there
	HeaderDLQSubject    = "Outbox-DLQ-Subject"    // its subject
	HeaderDLQConsumer   = "Outbox-DLQ-Consumer"   // the durable that gave up
	HeaderDLQTime       = "Outbox-DLQ-Time"       // when, RFC 3339

	// HeaderDLQPayloadOmitted is set, to the original payload's size in
	// bytes, on a dead letter that carries no payload because the copy would
	// not fit the server's max_payload (see the package doc).
	HeaderDLQPayloadOmitted = "Outbox-DLQ-Payload-Omitted"
	// HeaderDLQHeadersOmitted is set, to the size in bytes of the original's
	// header block, on a dead letter that carries none of the original's
	// headers (nor its payload) because even they would not fit.
	HeaderDLQHeadersOmitted = "Outbox-DLQ-Headers-Omitted"
)

const (
	// maxErrorText bounds the Outbox-DLQ-Error value, in bytes, the "…" of a
	// cut included.
	maxErrorText = 4 << 10
	// maxHeaderBlock is the longest header block JetStream stores (a longer
	// one is refused with error 10097).
	maxHeaderBlock = math.MaxUint16
	// deadLetterTries bounds the publishes of one dead letter that the server
	// refuses as too large: each try is planned below the size refused.
	deadLetterTries = 3
	// cutMark marks an error text that was cut.
	cutMark = "…"
)

// deadLetter publishes a copy of m to <dlq prefix>.<type> with the failure in
// its headers, waits for the dead-letter stream's ack, then terminates m. The
// copy is made to fit the server's limits (see letter.plan). If the publish
// fails, m is naked with a backoff and the whole handling is tried again
// later: a message is terminated only once its dead letter is stored. e is nil
// for a message that could not be decoded.
func (s *session) deadLetter(m *inflight, meta *jetstream.MsgMetadata, e *outbox.Event, reason string, cause error) {
	msg := m.msg
	l := newLetter(s.dlqSubject(msg.Subject()), msg, meta, reason, cause)
	log := s.log.With("subject", msg.Subject(), "stream_seq", meta.Sequence.Stream, "deliveries", meta.NumDelivered,
		"reason", reason, "err", cut(l.errText, maxErrorText))
	if e != nil {
		log = log.With("id", e.ID, "type", e.Type)
	}

	ceiling := limits{msg: math.MaxInt, header: math.MaxInt} // below what the server refused
	var dl *nats.Msg
	for try := 1; ; try++ {
		lim := s.limits().min(ceiling)
		var ok bool
		if dl, ok = l.plan(lim); !ok {
			log.Error("the dead letter cannot fit the server's limits even without the original's headers and payload; retrying the event later",
				"dlq_subject", l.subject, "max_message", lim.msg, "max_header", lim.header)
			s.retryLater(m, e, meta.NumDelivered)
			return
		}
		err := s.publishDeadLetter(dl)
		if err == nil {
			break
		}
		hdr, size := messageSize(dl.Header, dl.Data)
		header, whole := tooLarge(err)
		if !header && !whole || try == deadLetterTries {
			log.Error("dead-letter publish failed; retrying the event later", "dlq_subject", l.subject,
				"size", size, "publish_err", err)
			s.retryLater(m, e, meta.NumDelivered)
			return
		}
		// The limits the Router knew were not the server's: plan again below
		// the size refused, with the dead-letter stream's limit read again.
		log.Warn("dead letter refused as too large; making it smaller", "dlq_subject", l.subject,
			"size", size, "header_size", hdr, "publish_err", err)
		if header {
			ceiling.header = hdr - 1
		} else {
			ceiling.msg = size - 1
		}
		s.refreshDLQLimit()
	}

	defer s.done(m)
	switch {
	case dl.Header.Get(HeaderDLQHeadersOmitted) != "":
		log.Warn("event dead-lettered without its headers and payload, which would not fit; the original stays in its stream",
			"dlq_subject", dl.Subject, "stream", meta.Stream)
	case dl.Header.Get(HeaderDLQPayloadOmitted) != "":
		log.Warn("event dead-lettered without its payload, which would not fit; the original stays in its stream",
			"dlq_subject", dl.Subject, "stream", meta.Stream, "payload_size", len(msg.Data()))
	default:
		log.Warn("event dead-lettered", "dlq_subject", dl.Subject)
	}
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

// limits are the most bytes a dead letter may have: as a whole, as NATS
// counts it (header block and payload), and in its header block.
type limits struct{ msg, header int }

func (l limits) min(o limits) limits { return limits{min(l.msg, o.msg), min(l.header, o.header)} }

// limits returns what the server accepts now: the connection's max_payload
// (it may change with a reconnect), and, when a stream keeps the dead
// letters, that stream's max_msg_size and JetStream's header limit.
func (s *session) limits() limits {
	lim := limits{msg: int(s.r.js.Conn().MaxPayload()), header: math.MaxInt}
	if lim.msg <= 0 { // not told yet
		lim.msg = outbox.DefaultMaxMessage
	}
	if s.dlqStream {
		lim.header = maxHeaderBlock
		if n := s.dlqMaxMsg.Load(); n > 0 {
			lim.msg = min(lim.msg, int(n))
		}
	}
	return lim
}

// loadDLQLimit reads the max_msg_size of the stream that keeps the dead
// letters.
func (s *session) loadDLQLimit(ctx context.Context) error {
	st, err := s.r.js.Stream(ctx, s.dlqName)
	if err != nil {
		return fmt.Errorf("handlers: dead-letter stream %s: %w", s.dlqName, err)
	}
	s.dlqMaxMsg.Store(int64(st.CachedInfo().Config.MaxMsgSize))
	return nil
}

// refreshDLQLimit reads the dead-letter stream's max_msg_size again, after
// the server refused a dead letter that the Router thought would fit.
func (s *session) refreshDLQLimit() {
	if !s.dlqStream {
		return
	}
	ctx, cancel := s.opContext()
	defer cancel()
	if err := s.loadDLQLimit(ctx); err != nil {
		s.log.Warn("cannot read the dead-letter stream's limit", "err", err)
	}
}

// tooLarge reports whether err refuses a message for its size: its header
// block (JetStream's 10097) or the message as a whole (the client's
// max_payload check, JetStream's 10054).
func tooLarge(err error) (header, whole bool) {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jsErrCodeHeaderExceedsMaximum {
		return true, false
	}
	return false, errors.Is(err, nats.ErrMaxPayload) || errors.Is(err, jetstream.ErrStreamMessageExceedsMaximum)
}

// jsErrCodeHeaderExceedsMaximum is JetStream's "header size exceeds maximum
// allowed of 64k", which nats.go has no constant for.
const jsErrCodeHeaderExceedsMaximum jetstream.ErrorCode = 10097

// letter is a dead letter being planned: its parts, from which plan makes
// the largest message that fits.
type letter struct {
	subject  string
	orig     nats.Header // the original's headers that the dead letter keeps
	own      nats.Header // Outbox-DLQ-* but the error, and the dead letter's Nats-Msg-Id
	errText  string      // one line, valid UTF-8, not yet cut to fit
	data     []byte
	origHdr  int // the original's header block, in bytes
	origSize int // the original as NATS counts it
}

func newLetter(subject string, msg jetstream.Msg, meta *jetstream.MsgMetadata, reason string, cause error) *letter {
	l := &letter{subject: subject, orig: make(nats.Header, len(msg.Headers())), data: msg.Data(), errText: errorText(cause)}
	l.origHdr, l.origSize = messageSize(msg.Headers(), msg.Data())
	for k, v := range msg.Headers() {
		if !kept(k) {
			continue
		}
		l.orig[k] = v // never changed: plan copies the map and Set replaces slices
	}
	l.own = nats.Header{}
	l.own.Set(HeaderDLQReason, reason)
	l.own.Set(HeaderDLQDeliveries, strconv.FormatUint(meta.NumDelivered, 10))
	l.own.Set(HeaderDLQStream, meta.Stream)
	l.own.Set(HeaderDLQStreamSeq, strconv.FormatUint(meta.Sequence.Stream, 10))
	l.own.Set(HeaderDLQSubject, msg.Subject())
	l.own.Set(HeaderDLQConsumer, meta.Consumer)
	l.own.Set(HeaderDLQTime, time.Now().UTC().Format(time.RFC3339Nano))
	// One dead letter per stored message, even if the term is lost and the
	// message fails again within the dead-letter stream's duplicate window.
	l.own.Set(nats.MsgIdHdr, fmt.Sprintf("dlq:%s:%d", meta.Stream, meta.Sequence.Stream))
	return l
}

// kept reports whether a dead letter copies the original's header k. Not
// copied: JetStream's own Nats-* headers, which the dead-letter stream would
// act on (an expected stream or sequence it would refuse for ever, a rollup
// that would purge it, a TTL, a schedule; the dead letter sets its own
// Nats-Msg-Id); the Outbox-DLQ-* headers of an earlier dead-lettering, which
// this one replaces; and a key that nats.go refuses to send (which another
// client could have published), as it would fail every publish. The original
// keeps them all in its stream.
func kept(k string) bool {
	return validHeaderKey(k) && !hasPrefixFold(k, "Nats-") && !hasPrefixFold(k, "Outbox-DLQ-")
}

// validHeaderKey is nats.go's rule for the keys it sends (isHeaderKeyValid,
// after ADR-4): printable ASCII without white space and without any of
// "()/,:;<=>?@[\]{}.
func validHeaderKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c < 33 || c > 126 || strings.IndexByte(`"()/,:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// plan returns the largest dead letter that fits lim, trying in turn: the
// original's headers and payload; without the payload (HeaderDLQPayloadOmitted);
// without the original's headers either (HeaderDLQHeadersOmitted). In each,
// the error text is cut to what is left, at most maxErrorText bytes and, for
// the full copy, so that what the dead letter adds to the original stays
// within outbox.DeadLetterReserve when the other additions leave room for it.
// The next form is tried only when even an empty error text would not fit.
// ok is false when none fits.
func (l *letter) plan(lim limits) (dl *nats.Msg, ok bool) {
	for form := range 3 {
		h := make(nats.Header, len(l.orig)+len(l.own)+3)
		if form < 2 {
			for k, v := range l.orig {
				h[k] = v
			}
		}
		for k, v := range l.own {
			h[k] = v
		}
		data := l.data
		switch form {
		case 1:
			h.Set(HeaderDLQPayloadOmitted, strconv.Itoa(len(l.data)))
			data = nil
		case 2:
			h.Set(HeaderDLQPayloadOmitted, strconv.Itoa(len(l.data)))
			h.Set(HeaderDLQHeadersOmitted, strconv.Itoa(l.origHdr))
			data = nil
		}
		h.Set(HeaderDLQError, "")
		hdr, size := messageSize(h, data)
		budget := min(maxErrorText, lim.msg-size, lim.header-hdr)
		if form == 0 {
			if room := outbox.DeadLetterReserve - (size - l.origSize); room >= 0 {
				budget = min(budget, room)
			}
		}
		if budget < 0 {
			continue
		}
		h.Set(HeaderDLQError, cut(l.errText, budget))
		return &nats.Msg{Subject: l.subject, Header: h, Data: data}, true
	}
	return nil, false
}

// messageSize returns the size of a message's header block and of the whole
// message as NATS counts them against max_payload: "NATS/1.0\r\n", then
// "Key: Value\r\n" per value, then "\r\n", plus the data. It is an upper
// bound: NATS trims white space around values.
func messageSize(h nats.Header, data []byte) (hdr, total int) {
	if len(h) > 0 {
		hdr = len("NATS/1.0\r\n") + len("\r\n")
		for k, vs := range h {
			for _, v := range vs {
				hdr += len(k) + len(": ") + len(v) + len("\r\n")
			}
		}
	}
	return hdr, hdr + len(data)
}

// errorText makes err's text a header value: valid UTF-8, one line (control
// characters become spaces), no white space at either end. A text longer than
// twice maxErrorText is cut first, marked with "…", so that a pathological
// error costs little.
func errorText(err error) string {
	s := err.Error()
	long := len(s) > 2*maxErrorText
	if long {
		s = s[:2*maxErrorText]
	}
	s = strings.ToValidUTF8(s, string(utf8.RuneError))
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if long {
		s += cutMark
	}
	return s
}

// cut returns s if it has at most n bytes, or else its longest start that
// ends on a character boundary and, followed by "…", has at most n bytes;
// "" when n cannot hold the "…".
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	if n < len(cutMark) {
		return ""
	}
	i := n - len(cutMark)
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return strings.TrimRight(strings.TrimSuffix(s[:i], cutMark), " ") + cutMark
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
