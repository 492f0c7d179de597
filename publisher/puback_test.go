package publisher

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// referenceAck is what nats.go's PublishMsgAsync makes of a reply body
// (jetstream/publish.go, handleAsyncReply): the contract ackParser keeps.
func referenceAck(data []byte) (*jetstream.PubAck, error) {
	var resp struct {
		Type  string              `json:"type"`
		Error *jetstream.APIError `json:"error,omitempty"`
		*jetstream.PubAck
	}
	if err := json.Unmarshal(data, &resp); err != nil {
		return nil, jetstream.ErrInvalidJSAck
	}
	if resp.Error != nil {
		return nil, resp.Error
	}
	if resp.PubAck == nil || resp.PubAck.Stream == "" {
		return nil, jetstream.ErrInvalidJSAck
	}
	return resp.PubAck, nil
}

// ackSamples are the server's own forms (nats-server stream.go: the pubAck
// prefix written with %q, `,"duplicate": true}` appended; errors through
// json.Marshal of JSPubAckResponse) and forms only encoding/json reads.
var ackSamples = []string{
	`{"stream":"APP","seq":1}`,
	`{"stream":"APP","seq":18446744073709551615}`,
	`{"stream":"APP","domain":"hub","seq":42}`,
	`{"stream":"APP","seq":7,"duplicate": true}`,
	`{"stream":"APP","seq":7,"duplicate":false}`,
	`{"stream":"APP","seq":9,"val":"12"}`,
	`{"error":{"code":400,"err_code":10054,"description":"message size exceeds maximum allowed"},"stream":"APP","seq":0}`,
	`{"error":{"code":503,"err_code":10077,"description":"resource limits exceeded for account"}}`,
	`{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 3"},"stream":"APP","seq":0}`,
	`{"error":{"code":400,"description":"wrong last msg ID: \"x\""},"stream":"APP","seq":0}`, // an escape
	`{"error":{}}`,
	`{"error":null,"stream":"APP","seq":1}`,
	` { "seq" : 3 , "stream" : "APP" } `,
	`{"stream":"APP","seq":1,"batch":"b1","count":5}`, // keys nats.go ignores
	`{"Stream":"APP","SEQ":2}`,                        // encoding/json matches keys case-insensitively
	`{"stream":"A\u0050P","seq":1}`,
	`{"stream":"ÄPP","seq":1}`,
	`{"stream":"APP","stream":"B","seq":1,"seq":2}`,
	`{"stream":"","seq":1}`,
	`{"seq":1}`,
	`{}`,
	`null`,
	``,
	`{"stream":"APP","seq":-1}`,
	`{"stream":"APP","seq":1.0}`,
	`{"stream":"APP","seq":1e3}`,
	`{"stream":"APP","seq":01}`,
	`{"stream":"APP","seq":18446744073709551616}`,
	`{"stream":"APP","seq":1,}`,
	`{"stream":"APP","seq":1}x`,
	`{"stream":"APP","seq":1,"duplicate":"true"}`,
	`{"stream":"APP","seq":1,"duplicate":truex}`,
	`{"error":{"code":-1,"err_code":70000}}`,
	`{"error":{"code":400,"err_code":10054},"error":{"description":"d"}}`,
	`{"type":"io.nats.jetstream.api.v1.pub_ack","stream":"APP","seq":5}`,
	`{"type":5,"stream":"APP","seq":5}`,
	"{\"stream\":\"A\tP\",\"seq\":1}",
	`+OK {"stream":"APP","seq":1}`,
}

func checkAck(t *testing.T, p *ackParser, data []byte) {
	t.Helper()
	got, gotErr := p.parse(data)
	want, wantErr := referenceAck(data)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%q: ack %+v, nats.go %+v", data, got, want)
	}
	var gotAPI, wantAPI *jetstream.APIError
	if errors.As(gotErr, &gotAPI) != errors.As(wantErr, &wantAPI) || !reflect.DeepEqual(gotAPI, wantAPI) ||
		errors.Is(gotErr, jetstream.ErrInvalidJSAck) != errors.Is(wantErr, jetstream.ErrInvalidJSAck) || (gotErr == nil) != (wantErr == nil) {
		t.Errorf("%q: error %v, nats.go %v", data, gotErr, wantErr)
	}
}

// TestAckParserAnswersAsNatsGo: every sample, the server's forms and the
// odd ones left to encoding/json, reads as nats.go reads it.
func TestAckParserAnswersAsNatsGo(t *testing.T) {
	var p ackParser
	for _, s := range ackSamples {
		checkAck(t, &p, []byte(s))
	}
}

// TestAckParserReadsTheServerFormsByHand: the server's own forms never go
// to encoding/json, and an ack of the stream last seen costs one allocation
// (the PubAck itself).
func TestAckParserReadsTheServerFormsByHand(t *testing.T) {
	var p ackParser
	for _, s := range ackSamples[:9] {
		if _, _, ok := p.fast([]byte(s)); !ok {
			t.Errorf("%s went to encoding/json", s)
		}
	}
	ack := []byte(`{"stream":"APP","seq":123456,"duplicate": true}`)
	p.parse(ack)
	if n := testing.AllocsPerRun(100, func() { p.parse(ack) }); n != 1 {
		t.Errorf("%v allocations per ack, want 1", n)
	}
}

func FuzzAckParser(f *testing.F) {
	for _, s := range ackSamples {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var p ackParser
		checkAck(t, &p, data)
		checkAck(t, &p, data) // with the stream interned
	})
}
