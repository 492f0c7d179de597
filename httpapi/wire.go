package httpapi

import (
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
)

// The JSON bodies of the API that are not events: this package owns their
// names (the HTTP contract), the store its Go types.

// Stats is the body of GET /v1/stats and the stats of GET /v1/status:
// boltstore.Stats in the API's names.
type Stats struct {
	Total             int64                         `json:"total"`
	Pending           int64                         `json:"pending"`
	Processing        int64                         `json:"processing"`
	Completed         int64                         `json:"completed"`
	Failed            int64                         `json:"failed"`
	Stale             int64                         `json:"stale"`
	OldestPendingAt   *time.Time                    `json:"oldest_pending_at"`
	NewestCompletedAt *time.Time                    `json:"newest_completed_at"`
	SuccessRate       float64                       `json:"success_rate"`
	HasIssues         bool                          `json:"has_issues"`
	PendingByPriority [outbox.MaxPriority + 1]int64 `json:"pending_by_priority"`
	Bytes             int64                         `json:"bytes"`
}

// StatsOf is st in the API's form.
func StatsOf(st boltstore.Stats) Stats {
	return Stats{
		Total: st.Total, Pending: st.Pending, Processing: st.Processing, Completed: st.Completed, Failed: st.Failed,
		Stale: st.Stale, OldestPendingAt: st.OldestPendingAt, NewestCompletedAt: st.NewestCompletedAt,
		SuccessRate: st.SuccessRate, HasIssues: st.HasIssues, PendingByPriority: st.PendingByPriority, Bytes: st.Bytes,
	}
}

// Page is the body of GET /v1/events: one page of a listing and the cursor of
// the next ("" on the last).
type Page struct {
	Events     []*outbox.Event `json:"events"`
	NextCursor string          `json:"next_cursor"`
}
