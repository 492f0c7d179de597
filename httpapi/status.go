package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/fitiqcore/outbox"
)

// Broker reports the broker side of the debug report (GET /v1/status). The
// relay command implements it with the publisher's connection and JetStream
// context. BrokerStatus must be safe for concurrent use, return within ctx,
// and report failures in the Error fields rather than fail.
type Broker interface {
	BrokerStatus(ctx context.Context) BrokerStatus
}

// BrokerStatus is the state of the NATS connection and of the stream.
type BrokerStatus struct {
	NATS   NATSStatus   `json:"nats"`
	Stream StreamStatus `json:"stream"`
}

// NATSStatus is the relay's NATS connection.
type NATSStatus struct {
	Connected bool   `json:"connected"`
	URL       string `json:"url"`              // the server connected to (credentials redacted)
	Server    string `json:"server,omitempty"` // its server name
	RTT       string `json:"rtt,omitempty"`    // round trip to the server, e.g. "312µs"
	Error     string `json:"error,omitempty"`
}

// StreamStatus is the state of the stream events are published to.
type StreamStatus struct {
	Name string `json:"name"`
	// SubjectPrefix is the relay's: it publishes on <subject_prefix>.<type>.
	SubjectPrefix string    `json:"subject_prefix"`
	Subjects      []string  `json:"subjects"` // the stream's subject filters
	Messages      uint64    `json:"messages"`
	Bytes         uint64    `json:"bytes"`
	FirstSeq      uint64    `json:"first_seq"`
	LastSeq       uint64    `json:"last_seq"`
	LastTime      time.Time `json:"last_time,omitzero"`
	Consumers     int       `json:"consumers"`
	Error         string    `json:"error,omitempty"` // e.g. stream not found
}

// Report is the debug report of GET /v1/status: what an operator needs to
// see at a glance. HasIssues is true when Issues is not empty: failed or
// stale events, NATS disconnected, the stream missing.
type Report struct {
	GeneratedAt time.Time       `json:"generated_at"`
	HasIssues   bool            `json:"has_issues"`
	Issues      []string        `json:"issues"`
	Stats       Stats           `json:"stats"`
	Stale       []*outbox.Event `json:"stale"`  // up to ReportEvents, oldest first
	Failed      []*outbox.Event `json:"failed"` // up to ReportEvents, with last_error
	NATS        *NATSStatus     `json:"nats,omitempty"`
	Stream      *StreamStatus   `json:"stream,omitempty"`
}

// ReportEvents is how many stale and failed events the report lists.
const ReportEvents = 20

// status answers the debug report: GET /v1/status.
func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	if p := queryParams(r); p.err != nil {
		s.fail(w, r, p.err)
		return
	}
	rep, err := s.Report(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusOK, rep)
}

// Report builds the debug report. It needs a store that implements
// AdminStore.
func (s *Server) Report(ctx context.Context) (*Report, error) {
	if s.admin == nil {
		return nil, fmt.Errorf("httpapi: the store does not implement AdminStore")
	}
	st, err := s.store.Stats(ctx)
	if err != nil {
		return nil, err
	}
	rep := &Report{GeneratedAt: time.Now().UTC(), Stats: StatsOf(st), Stale: []*outbox.Event{}, Failed: []*outbox.Event{}, Issues: []string{}}
	if st.Stale > 0 {
		if rep.Stale, err = s.admin.StaleEvents(ctx, "", ReportEvents); err != nil {
			return nil, err
		}
		rep.Issues = append(rep.Issues, fmt.Sprintf("%d stale %s: pending longer than store.stale_after", st.Stale, plural(st.Stale, "event")))
	}
	if st.Failed > 0 {
		if rep.Failed, err = s.admin.FetchByStatus(ctx, outbox.StatusFailed, "", ReportEvents); err != nil {
			return nil, err
		}
		rep.Issues = append(rep.Issues, fmt.Sprintf("%d failed %s: fix the cause, then retry or delete (the events behind each in its entity wait)", st.Failed, plural(st.Failed, "event")))
	}
	if s.broker != nil {
		b := s.broker.BrokerStatus(ctx)
		rep.NATS, rep.Stream = &b.NATS, &b.Stream
		if !b.NATS.Connected {
			rep.Issues = append(rep.Issues, "NATS not connected: "+orUnknown(b.NATS.Error))
		}
		if b.Stream.Error != "" {
			rep.Issues = append(rep.Issues, fmt.Sprintf("stream %s: %s", b.Stream.Name, b.Stream.Error))
		}
	}
	rep.Stale, rep.Failed = nonNil(rep.Stale), nonNil(rep.Failed)
	rep.HasIssues = len(rep.Issues) > 0 || st.HasIssues
	return rep, nil
}

func plural(n int64, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown reason"
	}
	return s
}
