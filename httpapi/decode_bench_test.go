package httpapi

import (
	"fmt"
	"strings"
	"testing"

	"github.com/fitiqcore/outbox"
)

// benchEvent is an event as `relay bench` posts it (http_ingest): an
// entity, a user and a 256-byte JSON string payload.
var benchEvent = []byte(`{"type":"bench.http_ingest","entity_id":"entity-12345","user_id":"user-45","payload":"` +
	strings.Repeat("x", 254) + `"}`)

// benchBatch100 is a batch of 100 events as `relay bench` posts them: an
// entity of its own each, one of 100 users.
func benchBatch100() []byte {
	var sb strings.Builder
	sb.WriteString(`{"events":[`)
	for i := range 100 {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"type":"bench.http_ingest","entity_id":"entity-%d","user_id":"user-%d","payload":"%s"}`,
			i, i%100, strings.Repeat("x", 254))
	}
	sb.WriteString(`]}`)
	return []byte(sb.String())
}

// TestIngestAllocations holds the ingest path to its allocation budget:
// decoding costs an event its two strings (entity_id, user_id; the type
// is the previous event's) and its share of a few slabs and of the list;
// the answer is one buffer for the whole batch.
func TestIngestAllocations(t *testing.T) {
	body := benchBatch100()
	check := func(*outbox.Event) error { return nil }
	var events []*outbox.Event
	decode := testing.AllocsPerRun(20, func() {
		var err error
		if events, err = decodeBatch(body, check); err != nil {
			t.Fatal(err)
		}
	})
	if perEvent := decode / 100; perEvent > 2.2 {
		t.Errorf("decoding a batch of 100: %.2f allocations an event, want at most 2.2", perEvent)
	}
	if answer := testing.AllocsPerRun(20, func() { appendEvents(events) }); answer > 1 {
		t.Errorf("answering a batch of 100: %.0f allocations, want 1", answer)
	}
}

// BenchmarkDecodeEvent measures decoding one event, by the one-pass
// decoder and by the reference it replaced (a map per object, the text
// checks, json.Unmarshal into outbox.Event).
func BenchmarkDecodeEvent(b *testing.B) {
	for _, bm := range []struct {
		name   string
		decode func([]byte) (*outbox.Event, error)
	}{{"onepass", decodeSingle}, {"reference", refSingle}} {
		b.Run(bm.name, func(b *testing.B) {
			b.SetBytes(int64(len(benchEvent)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bm.decode(benchEvent); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecodeBatch100 measures decoding a batch of 100 events as
// `relay bench` posts them: an entity of its own each, one of 100 users.
func BenchmarkDecodeBatch100(b *testing.B) {
	body := benchBatch100()
	check := func(*outbox.Event) error { return nil }
	for _, bm := range []struct {
		name   string
		decode func([]byte, func(*outbox.Event) error) ([]*outbox.Event, error)
	}{{"onepass", decodeBatch}, {"reference", refBatch}} {
		b.Run(bm.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bm.decode(body, check); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkAnswer100 measures writing the answer to a batch of 100 such
// events, stored: by the appender and by encoding/json.
func BenchmarkAnswer100(b *testing.B) {
	events, err := decodeBatch([]byte(`{"events":[`+strings.Repeat(string(benchEvent)+",", 99)+string(benchEvent)+`]}`),
		func(*outbox.Event) error { return nil })
	if err != nil {
		b.Fatal(err)
	}
	for i, e := range events {
		e.ID, e.Status, e.Seq, e.EntitySeq, e.MaxAttempts = "0192f0a0-0000-7000-8000-000000000001", outbox.StatusPending, uint64(i+1), 1, 5
	}
	for _, bm := range []struct {
		name   string
		encode func() []byte
	}{
		{"appender", func() []byte { buf, _ := appendEvents(events); return buf }},
		{"encoding-json", func() []byte { buf, _ := marshal(batch{Events: events}); return buf }},
	} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				bm.encode()
			}
		})
	}
}
