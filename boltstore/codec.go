package boltstore

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/google/uuid"
)

// An event record (layout 3) is a fixed header, the fields the application
// chose, and the last error at the end:
//
//	off size
//	  0   1  version (3)
//	  1   1  status code
//	  2   1  priority
//	  3   1  flags: 1 is_new_record, 2 a retry policy follows, 4 a
//	         deliver_at follows, 8 a trace context follows
//	  4   4  attempt_count
//	  8   4  max_attempts
//	 12   8  last_attempt_at  (unix ns; 0 = none)
//	 20   8  next_attempt_at
//	 28   8  completed_at
//	 36   8  accepted_at
//	 44   8  created_at
//	 52   8  entity_seq
//	 60  16  id (UUID)
//	 76   8  content hash (outbox.Event.ContentHash)
//	 84   4  offset of last_error
//	 88      type, entity_id, user_id, content_type, metadata (each uvarint
//	         length + bytes), retry (3 × 8 when flagged), deliver_at (unix
//	         ns, 8, when flagged), traceparent and tracestate (each uvarint
//	         length + bytes, when flagged), payload (uvarint length +
//	         bytes), then last_error up to the end.
//
// The flags 4 and 8 came after the layout (issue 12): a record without them
// is one written before, and reads as it did.
//
// What the relay changes — status, attempts, times, last_error — is patched
// in a copy of the stored bytes (an ack does not decode or encode the event),
// and the last error is the tail so that a failure rewrites only it. The seq
// is the record's key, not part of it. The content hash makes a removed
// event's tombstone without reading the event.
const recordVersion = 3

const (
	offStatus     = 1
	offPriority   = 2
	offFlags      = 3
	offAttempts   = 4
	offMax        = 8
	offLastTry    = 12
	offNextTry    = 20
	offCompleted  = 28
	offAccepted   = 36
	offCreated    = 44
	offEntitySeq  = 52
	offID         = 60
	offHash       = 76
	offErrorAt    = 84
	recordHeader  = 88
	flagNewRecord = 1
	flagRetry     = 2
	flagDeliverAt = 4
	flagTrace     = 8
)

var errCorrupt = fmt.Errorf("%w: an event record does not decode", ErrCorrupt)

var statusCodes = [...]outbox.Status{outbox.StatusPending, outbox.StatusProcessing, outbox.StatusCompleted, outbox.StatusFailed}

func statusCode(s outbox.Status) byte {
	for i, v := range statusCodes {
		if v == s {
			return byte(i)
		}
	}
	return 0
}

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// encodeEvent appends e's record to buf.
func encodeEvent(buf []byte, e *outbox.Event) []byte {
	be := binary.BigEndian
	var h [recordHeader]byte
	h[0] = recordVersion
	h[offStatus] = statusCode(e.Status)
	h[offPriority] = byte(e.Priority)
	if e.IsNewRecord {
		h[offFlags] |= flagNewRecord
	}
	if e.Retry != nil {
		h[offFlags] |= flagRetry
	}
	if !e.DeliverAt.IsZero() {
		h[offFlags] |= flagDeliverAt
	}
	if e.TraceParent != "" {
		h[offFlags] |= flagTrace
	}
	be.PutUint32(h[offAttempts:], uint32(e.AttemptCount))
	be.PutUint32(h[offMax:], uint32(e.MaxAttempts))
	be.PutUint64(h[offLastTry:], uint64(nanos(e.LastAttemptAt)))
	be.PutUint64(h[offNextTry:], uint64(nanos(e.NextAttemptAt)))
	be.PutUint64(h[offCompleted:], uint64(nanos(e.CompletedAt)))
	be.PutUint64(h[offAccepted:], uint64(nanos(e.AcceptedAt)))
	be.PutUint64(h[offCreated:], uint64(nanos(e.CreatedAt)))
	be.PutUint64(h[offEntitySeq:], e.EntitySeq)
	u := uuid.MustParse(e.ID)
	copy(h[offID:], u[:])
	be.PutUint64(h[offHash:], e.ContentHash())
	start := len(buf)
	buf = append(buf, h[:]...)
	buf = appendString(buf, e.Type)
	buf = appendString(buf, e.EntityID)
	buf = appendString(buf, e.UserID)
	buf = appendString(buf, e.ContentType)
	buf = appendBytes(buf, e.Metadata)
	if r := e.Retry; r != nil {
		buf = be.AppendUint64(buf, uint64(r.InitialInterval))
		buf = be.AppendUint64(buf, uint64(r.MaxInterval))
		buf = be.AppendUint64(buf, math.Float64bits(r.Multiplier))
	}
	if !e.DeliverAt.IsZero() {
		buf = be.AppendUint64(buf, uint64(nanos(e.DeliverAt)))
	}
	if e.TraceParent != "" {
		buf = appendString(buf, e.TraceParent)
		buf = appendString(buf, e.TraceState)
	}
	buf = appendBytes(buf, e.Payload)
	be.PutUint32(buf[start+offErrorAt:], uint32(len(buf)-start))
	return append(buf, e.LastError...)
}

// record is a stored record's bytes, read in place: valid only inside the
// transaction that read it. check must pass before any accessor is used.
type record []byte

func (r record) check() error {
	if len(r) < recordHeader || r[0] != recordVersion || int(r[offStatus]) >= len(statusCodes) ||
		r[offPriority] > outbox.MaxPriority {
		return errCorrupt
	}
	if at := r.errorAt(); at < recordHeader || at > len(r) {
		return errCorrupt
	}
	return nil
}

func (r record) status() outbox.Status { return statusCodes[r[offStatus]] }
func (r record) priority() int         { return int(r[offPriority]) }
func (r record) time(off int) time.Time {
	return fromNanos(int64(binary.BigEndian.Uint64(r[off:])))
}
func (r record) entitySeq() uint64 { return binary.BigEndian.Uint64(r[offEntitySeq:]) }
func (r record) id() []byte        { return r[offID : offID+16] }
func (r record) hash() uint64      { return binary.BigEndian.Uint64(r[offHash:]) }
func (r record) errorAt() int      { return int(binary.BigEndian.Uint32(r[offErrorAt:])) }

// keys returns the fields the indexes are keyed by: entity_id and user_id
// (slices of r).
func (r record) keys() (entity, user []byte, err error) {
	d := decoder{b: r[recordHeader:r.errorAt()]}
	d.take(int(d.uvarint())) // type
	entity = d.take(int(d.uvarint()))
	user = d.take(int(d.uvarint()))
	return entity, user, d.err
}

// patched copies r for a put with the relay's fields changed: status,
// attempts, the attempt times and, when lastError is not nil, last_error.
// deliverAt reads the record's deliver_at (zero when it has none) without
// decoding the rest.
func (r record) deliverAt() (time.Time, error) {
	if r[offFlags]&flagDeliverAt == 0 {
		return time.Time{}, nil
	}
	d := decoder{b: r[recordHeader:r.errorAt()]}
	for range 4 { // type, entity_id, user_id, content_type
		d.string()
	}
	d.bytes() // metadata
	if r[offFlags]&flagRetry != 0 {
		d.take(24)
	}
	v := d.take(8)
	if d.err != nil || v == nil {
		return time.Time{}, errCorrupt
	}
	return fromNanos(int64(binary.BigEndian.Uint64(v))), nil
}

func (r record) patched(st outbox.Status, attempts int, lastTry, nextTry, completed time.Time, lastError *string) []byte {
	at := r.errorAt()
	var out []byte
	if lastError == nil {
		out = append(make([]byte, 0, len(r)), r...)
	} else {
		out = append(make([]byte, 0, at+len(*lastError)), r[:at]...)
		out = append(out, *lastError...)
	}
	be := binary.BigEndian
	out[offStatus] = statusCode(st)
	be.PutUint32(out[offAttempts:], uint32(attempts))
	be.PutUint64(out[offLastTry:], uint64(nanos(lastTry)))
	be.PutUint64(out[offNextTry:], uint64(nanos(nextTry)))
	be.PutUint64(out[offCompleted:], uint64(nanos(completed)))
	return out
}

// decodeEvent decodes the record of seq.
func decodeEvent(seq uint64, b []byte) (*outbox.Event, error) {
	r := record(b)
	if err := r.check(); err != nil {
		return nil, err
	}
	be := binary.BigEndian
	e := &outbox.Event{
		Seq:           seq,
		Status:        r.status(),
		Priority:      r.priority(),
		IsNewRecord:   r[offFlags]&flagNewRecord != 0,
		AttemptCount:  int(be.Uint32(r[offAttempts:])),
		MaxAttempts:   int(be.Uint32(r[offMax:])),
		LastAttemptAt: r.time(offLastTry),
		NextAttemptAt: r.time(offNextTry),
		CompletedAt:   r.time(offCompleted),
		AcceptedAt:    r.time(offAccepted),
		CreatedAt:     r.time(offCreated),
		EntitySeq:     r.entitySeq(),
		ID:            uuid.UUID(r.id()).String(),
	}
	d := decoder{b: r[recordHeader:r.errorAt()]}
	e.Type = d.string()
	e.EntityID = d.string()
	e.UserID = d.string()
	e.ContentType = d.string()
	e.Metadata = d.bytes()
	if r[offFlags]&flagRetry != 0 {
		p := &outbox.RetryPolicy{}
		if v := d.take(24); v != nil {
			p.InitialInterval = time.Duration(be.Uint64(v))
			p.MaxInterval = time.Duration(be.Uint64(v[8:]))
			p.Multiplier = math.Float64frombits(be.Uint64(v[16:]))
		}
		if math.IsNaN(p.Multiplier) || math.IsInf(p.Multiplier, 0) {
			d.err = errCorrupt // never written: Validate refuses it
		}
		e.Retry = p
	}
	if r[offFlags]&flagDeliverAt != 0 {
		if v := d.take(8); v != nil {
			e.DeliverAt = fromNanos(int64(be.Uint64(v)))
		}
		if e.DeliverAt.IsZero() {
			d.err = errCorrupt // flagged, so never zero
		}
	}
	if r[offFlags]&flagTrace != 0 {
		e.TraceParent = d.string()
		e.TraceState = d.string()
		if e.TraceParent == "" {
			d.err = errCorrupt // flagged, so never empty
		}
	}
	e.Payload = d.bytes()
	if d.err == nil && len(d.b) != 0 {
		d.err = errCorrupt
	}
	if d.err != nil {
		return nil, d.err
	}
	e.LastError = string(r[r.errorAt():])
	return e, nil
}
