package publisher

import (
	"encoding/json"
	"math"

	"github.com/nats-io/nats.go/jetstream"
)

// ackParser reads JetStream's answer to a publish without reflection. The
// server writes an ack as {"stream":"S","seq":N} with "domain" and
// "duplicate": true when they apply, and an error as
// {"error":{"code":C,"err_code":E,"description":"..."},"stream":"S","seq":0}.
// Those forms, with any white space, any order of keys and strings without
// escapes, are read by hand; anything else (an escape, a key it does not
// know, a null, a malformed document) is left to encoding/json with the very
// struct nats.go decodes into, so the answer is always what nats.go's
// jetstream.PublishMsgAsync would give:
//
//   - an API error: the *jetstream.APIError;
//   - an ack with a stream name: the *jetstream.PubAck;
//   - anything else: jetstream.ErrInvalidJSAck.
//
// It keeps the last stream and domain names it read, so that an ack from the
// same stream allocates no string. It is not safe for concurrent use.
type ackParser struct {
	stream, domain string
}

// pubAckResponse is nats.go's jetstream.pubAckResponse.
type pubAckResponse struct {
	Type  string              `json:"type"`
	Error *jetstream.APIError `json:"error,omitempty"`
	*jetstream.PubAck
}

func (p *ackParser) parse(data []byte) (*jetstream.PubAck, error) {
	ack, apiErr, ok := p.fast(data)
	if !ok {
		var resp pubAckResponse
		if err := json.Unmarshal(data, &resp); err != nil {
			return nil, jetstream.ErrInvalidJSAck
		}
		ack, apiErr = resp.PubAck, resp.Error
	}
	if apiErr != nil {
		return nil, apiErr
	}
	if ack == nil || ack.Stream == "" {
		return nil, jetstream.ErrInvalidJSAck
	}
	return ack, nil
}

// fast reads the server's own forms; ok is false for anything else.
func (p *ackParser) fast(data []byte) (ack *jetstream.PubAck, apiErr *jetstream.APIError, ok bool) {
	s := scanner{b: data}
	if !s.consume('{') {
		return nil, nil, false
	}
	if s.consume('}') {
		return nil, nil, s.end()
	}
	var a jetstream.PubAck
	hasAck := false
	for {
		key, ok := s.str()
		if !ok || !s.consume(':') {
			return nil, nil, false
		}
		switch string(key) {
		case "stream":
			v, ok := s.str()
			if !ok {
				return nil, nil, false
			}
			p.stream = intern(p.stream, v)
			a.Stream = p.stream
			hasAck = true
		case "domain":
			v, ok := s.str()
			if !ok {
				return nil, nil, false
			}
			p.domain = intern(p.domain, v)
			a.Domain = p.domain
			hasAck = true
		case "val":
			v, ok := s.str()
			if !ok {
				return nil, nil, false
			}
			a.Value = string(v)
			hasAck = true
		case "seq":
			if a.Sequence, ok = s.uint(math.MaxUint64); !ok {
				return nil, nil, false
			}
			hasAck = true
		case "duplicate":
			if a.Duplicate, ok = s.boolean(); !ok {
				return nil, nil, false
			}
			hasAck = true
		case "type":
			if _, ok := s.str(); !ok {
				return nil, nil, false
			}
		case "error":
			if apiErr != nil {
				return nil, nil, false
			}
			apiErr = &jetstream.APIError{}
			if !p.apiError(&s, apiErr) {
				return nil, nil, false
			}
		default:
			return nil, nil, false
		}
		if s.consume('}') {
			break
		}
		if !s.consume(',') {
			return nil, nil, false
		}
	}
	if !s.end() {
		return nil, nil, false
	}
	if hasAck {
		ack = &a
	}
	return ack, apiErr, true
}

// apiError reads {"code":C,"err_code":E,"description":"..."}.
func (p *ackParser) apiError(s *scanner, e *jetstream.APIError) bool {
	if !s.consume('{') {
		return false
	}
	if s.consume('}') {
		return true
	}
	for {
		key, ok := s.str()
		if !ok || !s.consume(':') {
			return false
		}
		switch string(key) {
		case "code":
			v, ok := s.uint(math.MaxInt32)
			if !ok {
				return false
			}
			e.Code = int(v)
		case "err_code":
			v, ok := s.uint(math.MaxUint16)
			if !ok {
				return false
			}
			e.ErrorCode = jetstream.ErrorCode(v)
		case "description":
			v, ok := s.str()
			if !ok {
				return false
			}
			e.Description = string(v)
		default:
			return false
		}
		if s.consume('}') {
			return true
		}
		if !s.consume(',') {
			return false
		}
	}
}

// intern returns last when v spells it, else v as a new string.
func intern(last string, v []byte) string {
	if string(v) == last {
		return last
	}
	return string(v)
}

// scanner reads a JSON document strictly; every method skips the white space
// before what it reads and reports false for anything it does not take.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\r', '\n':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) consume(c byte) bool {
	s.space()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// end reports whether nothing but white space is left.
func (s *scanner) end() bool {
	s.space()
	return s.i == len(s.b)
}

// str reads a string of printable ASCII without escapes.
func (s *scanner) str() ([]byte, bool) {
	if !s.consume('"') {
		return nil, false
	}
	start := s.i
	for ; s.i < len(s.b); s.i++ {
		switch c := s.b[s.i]; {
		case c == '"':
			v := s.b[start:s.i]
			s.i++
			return v, true
		case c == '\\' || c < 0x20 || c >= 0x80:
			return nil, false
		}
	}
	return nil, false
}

// uint reads a non-negative integer in JSON's form (no leading zero, no
// fraction or exponent) of at most max.
func (s *scanner) uint(max uint64) (uint64, bool) {
	s.space()
	start := s.i
	var n uint64
	for ; s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9'; s.i++ {
		d := uint64(s.b[s.i] - '0')
		if n > (max-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	switch digits := s.i - start; {
	case digits == 0, digits > 1 && s.b[start] == '0':
		return 0, false
	}
	if s.i < len(s.b) {
		switch s.b[s.i] {
		case '.', 'e', 'E':
			return 0, false
		}
	}
	return n, true
}

func (s *scanner) boolean() (bool, bool) {
	s.space()
	rest := s.b[s.i:]
	switch {
	case len(rest) >= 4 && string(rest[:4]) == "true":
		s.i += 4
		return true, true
	case len(rest) >= 5 && string(rest[:5]) == "false":
		s.i += 5
		return false, true
	}
	return false, false
}
