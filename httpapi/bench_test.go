package httpapi_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/fitiqcore/outbox/boltstore"
	"github.com/fitiqcore/outbox/httpapi"
	"github.com/fitiqcore/outbox/schema"
)

// appendBatch appends a POST /v1/events/batch body of n events shaped as
// `relay bench` posts them (http_ingest): an entity of its own each, one
// of 100 users, the JSON string payload p. first numbers the entities, so
// that successive bodies name new ones. It allocates nothing once buf has
// room.
func appendBatch(buf []byte, first, n int, p string) []byte {
	buf = append(buf, `{"events":[`...)
	for i := first; i < first+n; i++ {
		if i > first {
			buf = append(buf, ',')
		}
		buf = append(buf, `{"type":"bench.http_ingest","entity_id":"entity-`...)
		buf = strconv.AppendInt(buf, int64(i), 10)
		buf = append(buf, `","user_id":"user-`...)
		buf = strconv.AppendInt(buf, int64(i%100), 10)
		buf = append(buf, `","payload":`...)
		buf = append(buf, p...)
		buf = append(buf, '}')
	}
	return append(buf, `]}`...)
}

// BenchmarkPostBatch100 measures a 100-event batch end to end through
// Server.ServeHTTP into a real boltstore (NoSync: the benchmark measures
// the edge and the store's work, not the disk's fsyncs): events/s, and
// allocations and bytes per event, read, decoded, stored and answered.
func BenchmarkPostBatch100(b *testing.B) {
	const payload = 256
	benchPostBatch(b, `"`+strings.Repeat("x", payload-2)+`"`, nil)
}

// BenchmarkPostBatch100Typed is BenchmarkPostBatch100 with an object
// payload of about 256 bytes, without and with a payload schema of its
// type (schema.Set: the cost of typed events at ingest).
func BenchmarkPostBatch100Typed(b *testing.B) {
	p := `{"score":4,"note":"` + strings.Repeat("x", 230) + `"}`
	b.Run("none", func(b *testing.B) { benchPostBatch(b, p, nil) })
	b.Run("schema", func(b *testing.B) {
		file := filepath.Join(b.TempDir(), "review.json")
		os.WriteFile(file, []byte(`{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","required":["score"],
			"properties":{"score":{"type":"integer","minimum":1,"maximum":5},"note":{"type":"string","maxLength":2000}},
			"additionalProperties":false}`), 0o600)
		set, err := schema.Compile([]schema.Type{{Name: "bench.http_ingest", PayloadSchema: file}})
		if err != nil {
			b.Fatal(err)
		}
		benchPostBatch(b, p, set)
	})
}

func benchPostBatch(b *testing.B, p string, schemas httpapi.Checker) {
	const batch = 100
	store, err := boltstore.Open(filepath.Join(b.TempDir(), "o.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	store.DB().NoSync = true
	api := httpapi.New(store, httpapi.Options{Schemas: schemas})
	var body []byte
	b.SetBytes(int64(len(appendBatch(nil, 0, batch, p))))
	b.ReportAllocs()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	n := 0
	for b.Loop() {
		// New entities in each body: every event heads its own, as in
		// relay bench. (The server keeps no part of a body past its
		// request, so the buffer is reused.)
		body = appendBatch(body[:0], n*batch, batch, p)
		req := httptest.NewRequest(http.MethodPost, "/v1/events/batch", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		w := &discardWriter{header: http.Header{}}
		api.ServeHTTP(w, req)
		if w.status != http.StatusCreated {
			b.Fatalf("status %d", w.status)
		}
		n++
	}
	runtime.ReadMemStats(&after)
	events := float64(n * batch)
	b.ReportMetric(events/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/events, "allocs/event")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/events, "B/event")
}
