package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/fitiqcore/outbox"
	tracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// collector is an OTLP/HTTP trace receiver: it decodes the export requests
// and keeps the spans.
type collector struct {
	mu    sync.Mutex
	spans []*tracingSpan
}

type tracingSpan struct {
	name, traceID, parentID, service string
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var req tracepb.ExportTraceServiceRequest
	if r.URL.Path != "/v1/traces" || proto.Unmarshal(body, &req) != nil {
		http.Error(w, "bad export", http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		service := ""
		for _, a := range rs.GetResource().GetAttributes() {
			if a.Key == "service.name" {
				service = a.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				c.spans = append(c.spans, &tracingSpan{
					name: s.Name, service: service,
					traceID: hexOf(s.TraceId), parentID: hexOf(s.ParentSpanId),
				})
			}
		}
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	b, _ := proto.Marshal(&tracepb.ExportTraceServiceResponse{})
	w.Write(b)
}

func hexOf(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

// With tracing.otlp_endpoint, serve exports a span per publish over
// OTLP/HTTP, in the trace of the request that wrote the event (its
// traceparent header), and flushes the last ones when it stops.
func TestServeExportsPublishSpans(t *testing.T) {
	col := &collector{}
	srv := httptest.NewServer(col)
	defer srv.Close()
	r := startRelay(t, relayOpts{extra: "tracing:\n  otlp_endpoint: " + srv.URL + "\n"})
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	req, _ := http.NewRequest(http.MethodPost, r.base+"/v1/events", strings.NewReader(`{"type":"mood.logged","entity_id":"m-1"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", parent)
	res, err := r.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var e outbox.Event
	if err := json.NewDecoder(res.Body).Decode(&e); err != nil || res.StatusCode != http.StatusCreated {
		t.Fatalf("POST: %d, %v", res.StatusCode, err)
	}
	r.waitStatus(e.ID, outbox.StatusCompleted)
	r.stop() // flushes the batcher
	col.mu.Lock()
	defer col.mu.Unlock()
	var found bool
	for _, s := range col.spans {
		if s.name == "publish mood.logged" {
			found = true
			if s.traceID != parent[3:35] || s.parentID != parent[36:52] || s.service != serviceName {
				t.Errorf("publish span %+v, want trace %s, parent %s, service %s", s, parent[3:35], parent[36:52], serviceName)
			}
		}
	}
	if !found {
		t.Errorf("the collector got %d spans, none a publish of the event", len(col.spans))
	}
}
