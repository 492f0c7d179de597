package boltstore

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/google/uuid"
)

// The records of layouts 1 and 2: a version byte, then the fields in a fixed
// order, variable-length ones prefixed with their length, the seq included.
// Version 2 added accepted_at after completed_at; a version 1 record reads
// with accepted_at = created_at, which is what its index keys were built
// from. Only the migration to layout 3 reads them.

// encodeV2 writes a record of layout 2 (tests of the migration use it).
func encodeV2(buf []byte, e *outbox.Event) []byte {
	u := uuid.MustParse(e.ID)
	buf = append(buf, 2)
	buf = binary.BigEndian.AppendUint64(buf, e.Seq)
	buf = append(buf, u[:]...)
	buf = appendString(buf, e.Type)
	buf = appendString(buf, e.EntityID)
	buf = appendString(buf, e.UserID)
	buf = append(buf, statusCode(e.Status), byte(e.Priority))
	if e.IsNewRecord {
		buf = append(buf, 1)
	} else {
		buf = append(buf, 0)
	}
	buf = binary.AppendUvarint(buf, e.EntitySeq)
	buf = binary.AppendUvarint(buf, uint64(e.AttemptCount))
	buf = binary.AppendUvarint(buf, uint64(e.MaxAttempts))
	for _, t := range [...]time.Time{e.CreatedAt, e.LastAttemptAt, e.NextAttemptAt, e.CompletedAt, e.AcceptedAt} {
		buf = binary.AppendVarint(buf, nanos(t))
	}
	buf = appendString(buf, e.LastError)
	buf = appendBytes(buf, e.Metadata)
	buf = appendString(buf, e.ContentType)
	if r := e.Retry; r != nil {
		buf = append(buf, 1)
		buf = binary.AppendVarint(buf, int64(r.InitialInterval))
		buf = binary.AppendVarint(buf, int64(r.MaxInterval))
		buf = binary.BigEndian.AppendUint64(buf, math.Float64bits(r.Multiplier))
	} else {
		buf = append(buf, 0)
	}
	return appendBytes(buf, e.Payload)
}

func appendString(buf []byte, s string) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(s)))
	return append(buf, s...)
}

func appendBytes(buf, b []byte) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(b)))
	return append(buf, b...)
}

// decoder reads a record; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) take(n int) []byte {
	if d.err != nil || n < 0 || n > len(d.b) {
		d.err = errCorrupt
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	v := d.take(1)
	if v == nil {
		return 0
	}
	return v[0]
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errCorrupt
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errCorrupt
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.err = errCorrupt
		return nil
	}
	v := d.take(int(n))
	if len(v) == 0 {
		return nil
	}
	return append([]byte(nil), v...) // bbolt's memory is valid only inside the tx
}

func (d *decoder) string() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.err = errCorrupt
		return ""
	}
	return string(d.take(int(n)))
}

// decodeV2 reads a record of layout 1 or 2, which carries its own seq.
func decodeV2(b []byte) (*outbox.Event, error) {
	d := decoder{b: b}
	v := d.byte()
	if v != 1 && v != 2 && d.err == nil {
		return nil, fmt.Errorf("%w: version %d", errCorrupt, v)
	}
	e := &outbox.Event{}
	if s := d.take(8); s != nil {
		e.Seq = binary.BigEndian.Uint64(s)
	}
	if id := d.take(16); id != nil {
		e.ID = uuid.UUID(id).String()
	}
	e.Type = d.string()
	e.EntityID = d.string()
	e.UserID = d.string()
	if c := d.byte(); int(c) < len(statusCodes) {
		e.Status = statusCodes[c]
	} else {
		d.err = errCorrupt
	}
	if e.Priority = int(d.byte()); e.Priority > outbox.MaxPriority {
		d.err = errCorrupt
	}
	e.IsNewRecord = d.byte() == 1
	e.EntitySeq = d.uvarint()
	e.AttemptCount = int(d.uvarint())
	e.MaxAttempts = int(d.uvarint())
	if uint64(e.AttemptCount) > math.MaxUint32 || uint64(e.MaxAttempts) > math.MaxUint32 {
		d.err = errCorrupt
	}
	e.CreatedAt = fromNanos(d.varint())
	e.LastAttemptAt = fromNanos(d.varint())
	e.NextAttemptAt = fromNanos(d.varint())
	e.CompletedAt = fromNanos(d.varint())
	if v == 1 {
		e.AcceptedAt = e.CreatedAt
	} else {
		e.AcceptedAt = fromNanos(d.varint())
	}
	e.LastError = d.string()
	e.Metadata = d.bytes()
	e.ContentType = d.string()
	if d.byte() == 1 {
		r := &outbox.RetryPolicy{}
		r.InitialInterval = time.Duration(d.varint())
		r.MaxInterval = time.Duration(d.varint())
		if f := d.take(8); f != nil {
			r.Multiplier = math.Float64frombits(binary.BigEndian.Uint64(f))
		}
		if math.IsNaN(r.Multiplier) || math.IsInf(r.Multiplier, 0) {
			d.err = errCorrupt // never written: Validate refuses it
		}
		e.Retry = r
	}
	e.Payload = d.bytes()
	if d.err == nil && len(d.b) != 0 {
		d.err = errCorrupt
	}
	if d.err != nil {
		return nil, d.err
	}
	return e, nil
}
