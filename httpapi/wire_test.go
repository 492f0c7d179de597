package httpapi_test

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
	"github.com/fitiqcore/outbox/httpapi"
)

// TestStatsJSON: the names of GET /v1/stats's body are the API's, kept in
// this package (boltstore.Stats is a Go type with no JSON names).
func TestStatsJSON(t *testing.T) {
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	b, err := json.Marshal(httpapi.StatsOf(boltstore.Stats{OldestPendingAt: &at}))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := []string{"bytes", "completed", "failed", "has_issues", "newest_completed_at", "oldest_pending_at", "pending",
		"pending_by_priority", "processing", "stale", "success_rate", "total"}
	if !slices.Equal(keys, want) {
		t.Errorf("JSON keys %v, want %v", keys, want)
	}
	if m["newest_completed_at"] != nil || m["oldest_pending_at"] != "2025-03-01T12:00:00Z" {
		t.Errorf("JSON times: %s", b)
	}
	if p, ok := m["pending_by_priority"].([]any); !ok || len(p) != 10 {
		t.Errorf("pending_by_priority: %s", b)
	}
}

// TestEmptyPageJSON: an empty page of GET /v1/events is [] and "", never null.
func TestEmptyPageJSON(t *testing.T) {
	b, err := json.Marshal(httpapi.Page{Events: []*outbox.Event{}})
	if err != nil || string(b) != `{"events":[],"next_cursor":""}` {
		t.Errorf("empty page JSON: %s (%v)", b, err)
	}
}
