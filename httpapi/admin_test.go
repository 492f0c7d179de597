package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
	"github.com/fitiqcore/outbox/httpapi"
	"github.com/google/uuid"
)

// clock is a settable time source for the store.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }
func (e *env) del(t testing.TB, path string) response {
	t.Helper()
	return e.do(t, http.MethodDelete, path, "", nil)
}

// enqueue stores events directly and returns them filled in.
func (e *env) enqueue(t testing.TB, events ...*outbox.Event) []*outbox.Event {
	t.Helper()
	if _, err := e.store.Enqueue(context.Background(), events...); err != nil {
		t.Fatalf("enqueue: %v", err)
	}
	return events
}

// failForGood makes events failed, as the relay does at max_attempts.
func (e *env) failForGood(t testing.TB, msg string, events ...*outbox.Event) {
	t.Helper()
	var fails []boltstore.Failure
	for _, ev := range events {
		fails = append(fails, boltstore.Failure{Seq: ev.Seq, At: time.Now(), Err: msg, Permanent: true})
	}
	if err := e.store.Fail(context.Background(), fails); err != nil {
		t.Fatalf("fail: %v", err)
	}
}

func (e *env) complete(t testing.TB, at time.Time, events ...*outbox.Event) {
	t.Helper()
	var acks []boltstore.Ack
	for _, ev := range events {
		acks = append(acks, boltstore.Ack{Seq: ev.Seq, At: at})
	}
	if err := e.store.Complete(context.Background(), acks); err != nil {
		t.Fatalf("complete: %v", err)
	}
}

// page is the answer of GET /v1/events.
type page struct {
	Events     []outbox.Event `json:"events"`
	NextCursor *string        `json:"next_cursor"`
}

func (r response) page(t testing.TB) page {
	t.Helper()
	r.wantStatus(t, http.StatusOK)
	var p page
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("decode page: %v: %s", err, r.body)
	}
	if p.Events == nil || p.NextCursor == nil {
		t.Fatalf("page without events or next_cursor: %s", r.body)
	}
	return p
}

func (r response) count(t testing.TB) int {
	t.Helper()
	r.wantStatus(t, http.StatusOK)
	m := r.object(t)
	n, ok := m["count"].(float64)
	if !ok || len(m) != 1 {
		t.Fatalf(`body is not {"count":N}: %s`, r.body)
	}
	return int(n)
}

// fixture stores 25 events: users u0..u2, entities e0..e4, types a and b;
// the first event of entity e0 is failed.
func fixture(t *testing.T, e *env) []*outbox.Event {
	t.Helper()
	var events []*outbox.Event
	for i := range 25 {
		events = append(events, &outbox.Event{
			Type:     []string{"a", "b"}[i%2],
			UserID:   fmt.Sprintf("u%d", i%3),
			EntityID: fmt.Sprintf("e%d", i%5),
		})
	}
	e.enqueue(t, events...)
	e.failForGood(t, "nats: no response from stream", events[0])
	return events
}

func TestListEventsPagination(t *testing.T) {
	e := newEnv(t, httpapi.Options{}, nil)
	events := fixture(t, e)
	want := map[string]bool{}
	for _, ev := range events {
		want[ev.ID] = true
	}
	tests := []struct {
		name  string
		query url.Values
		match func(*outbox.Event) bool
	}{
		{"all", url.Values{}, func(*outbox.Event) bool { return true }},
		{"status failed", url.Values{"status": {"failed"}}, func(ev *outbox.Event) bool { return ev == events[0] }},
		{"status pending", url.Values{"status": {"pending"}}, func(ev *outbox.Event) bool { return ev != events[0] }},
		{"user", url.Values{"user_id": {"u1"}}, func(ev *outbox.Event) bool { return ev.UserID == "u1" }},
		{"entity", url.Values{"entity_id": {"e2"}}, func(ev *outbox.Event) bool { return ev.EntityID == "e2" }},
		{"type", url.Values{"type": {"b"}}, func(ev *outbox.Event) bool { return ev.Type == "b" }},
		{"user and type", url.Values{"user_id": {"u0"}, "type": {"a"}}, func(ev *outbox.Event) bool { return ev.UserID == "u0" && ev.Type == "a" }},
		{"no match", url.Values{"user_id": {"nobody"}}, func(*outbox.Event) bool { return false }},
	}
	for _, tt := range tests {
		for _, limit := range []int{1, 4, 1000} {
			t.Run(fmt.Sprintf("%s limit %d", tt.name, limit), func(t *testing.T) {
				var wantIDs []string
				for _, ev := range events {
					if tt.match(ev) {
						wantIDs = append(wantIDs, ev.ID)
					}
				}
				q := url.Values{}
				for k, v := range tt.query {
					q[k] = v
				}
				q.Set("limit", strconv.Itoa(limit))
				var got []string
				for pages := 0; ; pages++ {
					if pages > len(events)+1 {
						t.Fatalf("more pages than events: cursor loop")
					}
					p := e.get(t, "/v1/events?"+q.Encode()).page(t)
					if len(p.Events) > limit {
						t.Fatalf("page of %d events, limit %d", len(p.Events), limit)
					}
					for _, ev := range p.Events {
						got = append(got, ev.ID)
						if ev.Status == "" || ev.CreatedAt.IsZero() || ev.Seq == 0 {
							t.Errorf("event not filled in: %+v", ev)
						}
					}
					if *p.NextCursor == "" {
						break
					}
					q.Set("cursor", *p.NextCursor)
				}
				slices.Sort(got)
				slices.Sort(wantIDs)
				if !slices.Equal(got, wantIDs) {
					t.Errorf("listed %d events %v\nwant %d %v", len(got), got, len(wantIDs), wantIDs)
				}
			})
		}
	}
	// The failed event carries its last error in the listing.
	p := e.get(t, "/v1/events?status=failed").page(t)
	if len(p.Events) != 1 || p.Events[0].LastError != "nats: no response from stream" {
		t.Errorf("failed events = %+v", p.Events)
	}
}

func TestListEventsBadParameters(t *testing.T) {
	e := newEnv(t, httpapi.Options{}, nil)
	fixture(t, e)
	tests := []struct{ query, want string }{
		{"status=done", "invalid status"},
		{"status=failed&status=pending", "invalid status: given 2 times"},
		{"limit=0", "invalid limit"},
		{"limit=1001", "invalid limit"},
		{"limit=ten", "invalid limit"},
		{"limit=-5", "invalid limit"},
		{"cursor=bm9wZQ", "invalid cursor"},
		{"cursor=%%%", "malformed query"},
		{"user=u1", `unknown parameter "user"`},
		{"entity=e1", `unknown parameter "entity"`},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			e.get(t, "/v1/events?"+tt.query).wantError(t, http.StatusBadRequest, tt.want)
		})
	}
	// A cursor handed out for other filters is refused too.
	p := e.get(t, "/v1/events?user_id=u1&limit=2").page(t)
	if *p.NextCursor == "" {
		t.Fatal("no next_cursor")
	}
	res := e.get(t, "/v1/events?status=failed&limit=2&cursor="+url.QueryEscape(*p.NextCursor))
	if res.status != http.StatusOK {
		res.wantError(t, http.StatusBadRequest, "invalid cursor")
	}
}

func TestRetryEvent(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	e := newEnv(t, httpapi.Options{Logger: slogTo(&logs, &mu)}, nil)
	events := e.enqueue(t, &outbox.Event{Type: "mood.created", EntityID: "m1"}, &outbox.Event{Type: "mood.updated", EntityID: "m1"})
	e.failForGood(t, "no stream covers the subject", events[0])

	tests := []struct {
		name   string
		id     string
		status int
		want   string
	}{
		{"failed event", events[0].ID, 200, ""},
		{"again: pending now", events[0].ID, 409, "only failed events can be retried"},
		{"pending event", events[1].ID, 409, "only failed events can be retried"},
		{"unknown id", uuid.NewString(), 404, "not found"},
		{"not a UUID", "nope", 404, "not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := e.post(t, "/v1/events/"+tt.id+"/retry", "")
			if tt.status != 200 {
				res.wantError(t, tt.status, tt.want)
				return
			}
			res.wantStatus(t, http.StatusOK)
			got := res.object(t)
			if got["id"] != tt.id || got["status"] != "pending" || got["attempt_count"] != 0.0 || got["last_error"] != nil {
				t.Errorf("retried event = %s", res.body)
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	for _, want := range []string{"event retried by operator", "event_id=" + events[0].ID, "type=mood.created", "attempt=0"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}

func TestRetryEventsBulk(t *testing.T) {
	e := newEnv(t, httpapi.Options{}, nil)
	events := e.enqueue(t,
		&outbox.Event{Type: "a", UserID: "u1"}, &outbox.Event{Type: "a", UserID: "u1"},
		&outbox.Event{Type: "a", UserID: "u2"}, &outbox.Event{Type: "a", UserID: "u2"})
	e.failForGood(t, "boom", events[0], events[1], events[2])

	e.post(t, "/v1/events/retry?status=pending", "").wantError(t, 400, "invalid status")
	e.post(t, "/v1/events/retry?status=nope", "").wantError(t, 400, "invalid status")
	e.post(t, "/v1/events/retry?users=u1", "").wantError(t, 400, `unknown parameter "users"`)
	if n := e.post(t, "/v1/events/retry?user_id=u1", "").count(t); n != 2 {
		t.Errorf("retry user u1: count %d, want 2", n)
	}
	if n := e.post(t, "/v1/events/retry?user_id=u1", "").count(t); n != 0 {
		t.Errorf("retry user u1 again: count %d, want 0", n)
	}
	if n := e.post(t, "/v1/events/retry?status=failed", "").count(t); n != 1 {
		t.Errorf("retry the rest: count %d, want 1", n)
	}
	if st := e.stats(t); st.Failed != 0 || st.Pending != 4 {
		t.Errorf("stats after retries: %+v", st)
	}
}

func TestDeleteEvent(t *testing.T) {
	e := newEnv(t, httpapi.Options{}, nil)
	events := e.enqueue(t, &outbox.Event{Type: "a", EntityID: "x"}, &outbox.Event{Type: "a", EntityID: "x"})
	if n := e.del(t, "/v1/events/"+events[0].ID).count(t); n != 1 {
		t.Errorf("count = %d, want 1", n)
	}
	e.del(t, "/v1/events/"+events[0].ID).wantError(t, 404, "not found")
	e.del(t, "/v1/events/not-a-uuid").wantError(t, 404, "not found")
	e.get(t, "/v1/events/"+events[0].ID).wantError(t, 404, "not found")
	if st := e.stats(t); st.Total != 1 {
		t.Errorf("total = %d, want 1", st.Total)
	}
}

func TestDeleteEventsBulk(t *testing.T) {
	clk := newClock()
	clk.Advance(-3 * time.Hour) // the store completes events at its clock's time
	e := newEnv(t, httpapi.Options{}, &boltstore.Options{Now: clk.Now})
	var events []*outbox.Event
	for i := range 12 {
		events = append(events, &outbox.Event{Type: "a", EntityID: fmt.Sprintf("e%d", i%4), UserID: fmt.Sprintf("u%d", i%3)})
	}
	e.enqueue(t, events...)

	bad := []struct{ query, want string }{
		{"", "missing selector"},
		{"entity_id=&user_id=", "missing selector"},
		{"entity_id=e1&user_id=u1", "give only one"},
		{"user_id=u1&status=completed&older_than=1h", "give only one"},
		{"status=completed", "missing older_than"},
		{"older_than=1h", "invalid status"},
		{"status=failed&older_than=1h", "invalid status"},
		{"status=completed&older_than=soon", "invalid older_than"},
		{"status=completed&older_than=-1h", "invalid older_than"},
		{"status=completed&older_than=1h&limit=0", "invalid limit"},
		{"user_id=u1&limit=5", "invalid limit"},
		{"entity=e1", `unknown parameter "entity"`},
		{"user_id=u1&user_id=u2", "invalid user_id: given 2 times"},
	}
	for _, tt := range bad {
		t.Run("400 "+tt.query, func(t *testing.T) {
			e.del(t, "/v1/events?"+tt.query).wantError(t, http.StatusBadRequest, tt.want)
		})
	}
	if st := e.stats(t); st.Total != 12 {
		t.Fatalf("a rejected delete deleted events: total %d", st.Total)
	}

	// Entities: the parameter repeated, one entity per value.
	if n := e.del(t, "/v1/events?entity_id=e0&entity_id=e1&entity_id=e2").count(t); n != 9 {
		t.Errorf("delete entities e0,e1,e2: count %d, want 9", n)
	}
	// Users: what is left of u0 (events 3 and 11 are e3: u0 has event 3? 3%3=0 → yes).
	if n := e.del(t, "/v1/events?user_id=u0").count(t); n != 1 {
		t.Errorf("delete user u0: count %d, want 1", n)
	}
	if st := e.stats(t); st.Total != 2 {
		t.Errorf("total = %d, want 2", st.Total)
	}

	// Completed older than: complete the two left, one 3 hours ago.
	left := e.get(t, "/v1/events").page(t).Events
	e.complete(t, clk.Now(), &left[0])
	clk.Advance(3 * time.Hour)
	e.complete(t, clk.Now(), &left[1])
	if n := e.del(t, "/v1/events?status=completed&older_than=1h").count(t); n != 1 {
		t.Errorf("purge older than 1h: count %d, want 1", n)
	}
	if n := e.del(t, "/v1/events?status=completed&older_than=0s").count(t); n != 1 {
		t.Errorf("purge all completed: count %d, want 1", n)
	}
	if st := e.stats(t); st.Total != 0 {
		t.Errorf("total = %d, want 0", st.Total)
	}
}

// entitySpy is a real store that records the entity ids a bulk delete is
// given.
type entitySpy struct {
	*boltstore.Store
	mu  sync.Mutex
	got [][]string
}

func (s *entitySpy) DeleteByEntityIDs(ctx context.Context, ids []string) (int, error) {
	s.mu.Lock()
	s.got = append(s.got, slices.Clone(ids))
	s.mu.Unlock()
	return s.Store.DeleteByEntityIDs(ctx, ids)
}

func (s *entitySpy) take() [][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	got := s.got
	s.got = nil
	return got
}

// TestDeleteEventsEntityExact checks that each entity_id value names one
// entity, byte for byte: never split on commas, never trimmed.
func TestDeleteEventsEntityExact(t *testing.T) {
	store, err := boltstore.Open(filepath.Join(t.TempDir(), "o.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	spy := &entitySpy{Store: store}
	srv := httptest.NewServer(httpapi.New(spy, httpapi.Options{}))
	t.Cleanup(srv.Close)
	e := &env{srv: srv, store: store}

	tests := []struct {
		name     string
		query    url.Values
		entities []string // given to the store
		count    int      // deleted, of the events below
	}{
		{"comma inside an entity", url.Values{"entity_id": {"a,b"}}, []string{"a,b"}, 3},
		{"white space kept", url.Values{"entity_id": {" c", "d "}}, []string{" c", "d "}, 0},
		{"repeated parameter", url.Values{"entity_id": {"a", "b"}}, []string{"a", "b"}, 2},
		{"empty values name nothing", url.Values{"entity_id": {"", "x", ""}}, []string{"x"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := store.Reset(context.Background()); err != nil {
				t.Fatal(err)
			}
			e.enqueue(t, &outbox.Event{Type: "t", EntityID: "a,b"}, &outbox.Event{Type: "t", EntityID: "a,b"},
				&outbox.Event{Type: "t", EntityID: "a,b"}, &outbox.Event{Type: "t", EntityID: "a"}, &outbox.Event{Type: "t", EntityID: "b"},
				&outbox.Event{Type: "t", EntityID: "x"})
			if n := e.del(t, "/v1/events?"+tt.query.Encode()).count(t); n != tt.count {
				t.Errorf("count = %d, want %d", n, tt.count)
			}
			if got := spy.take(); len(got) != 1 || !slices.Equal(got[0], tt.entities) {
				t.Errorf("store asked to delete entities %q, want [%q]", got, tt.entities)
			}
			if st := e.stats(t); st.Total != int64(6-tt.count) {
				t.Errorf("total = %d, want %d", st.Total, 6-tt.count)
			}
		})
	}
}

func TestPurgeLimitAndChunks(t *testing.T) {
	clk := newClock()
	clk.Advance(-time.Hour)
	e := newEnv(t, httpapi.Options{}, &boltstore.Options{Now: clk.Now})
	var events []*outbox.Event
	for range 2500 {
		events = append(events, &outbox.Event{Type: "a"})
	}
	e.enqueue(t, events...)
	e.complete(t, time.Now().Add(-time.Hour), events...)
	if n := e.del(t, "/v1/events?status=completed&older_than=1m&limit=1200").count(t); n != 1200 {
		t.Errorf("limit 1200: count %d", n)
	}
	if n := e.del(t, "/v1/events?status=completed&older_than=1m").count(t); n != 1300 {
		t.Errorf("the rest: count %d, want 1300 (in chunks of 1000)", n)
	}
}

func TestStaleEvents(t *testing.T) {
	clk := newClock()
	e := newEnv(t, httpapi.Options{}, &boltstore.Options{Now: clk.Now, StaleAfter: time.Minute})
	old := e.enqueue(t, &outbox.Event{Type: "a", UserID: "u1"}, &outbox.Event{Type: "a", UserID: "u2"})
	clk.Advance(2 * time.Minute)
	e.enqueue(t, &outbox.Event{Type: "a", UserID: "u1"}) // fresh

	tests := []struct {
		query string
		want  []string
	}{
		{"", []string{old[0].ID, old[1].ID}},
		{"?user_id=u1", []string{old[0].ID}},
		{"?user_id=u3", nil},
		{"?limit=1", []string{old[0].ID}},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			res := e.get(t, "/v1/stale"+tt.query)
			res.wantStatus(t, http.StatusOK)
			var body struct{ Events []outbox.Event }
			if err := json.Unmarshal(res.body, &body); err != nil || !bytes.Contains(res.body, []byte(`"events":[`)) {
				t.Fatalf("body %s: %v", res.body, err)
			}
			var got []string
			for _, ev := range body.Events {
				got = append(got, ev.ID)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("stale = %v, want %v", got, tt.want)
			}
		})
	}
	e.get(t, "/v1/stale?limit=0").wantError(t, 400, "invalid limit")
	if st := e.get(t, "/v1/stats").object(t); st["stale"] != 2.0 || st["has_issues"] != true {
		t.Errorf("stats = %v, want stale 2 and has_issues", st)
	}
}

// stubBroker reports a fixed broker state.
type stubBroker struct{ st httpapi.BrokerStatus }

func (b stubBroker) BrokerStatus(context.Context) httpapi.BrokerStatus { return b.st }

func TestStatusReport(t *testing.T) {
	healthy := httpapi.BrokerStatus{
		NATS:   httpapi.NATSStatus{Connected: true, URL: "nats://127.0.0.1:4222", Server: "n1", RTT: "200µs"},
		Stream: httpapi.StreamStatus{Name: "OUTBOX", SubjectPrefix: "outbox", Subjects: []string{"outbox.>"}, Messages: 3, LastSeq: 3, FirstSeq: 1},
	}
	down := httpapi.BrokerStatus{
		NATS:   httpapi.NATSStatus{URL: "nats://127.0.0.1:4222", Error: "connection reconnecting"},
		Stream: httpapi.StreamStatus{Name: "OUTBOX", Error: "unknown: NATS not connected"},
	}
	tests := []struct {
		name       string
		broker     httpapi.Broker
		fail       bool
		wantIssues []string
	}{
		{name: "healthy", broker: stubBroker{healthy}},
		{name: "no broker", broker: nil},
		{name: "failed event", broker: stubBroker{healthy}, fail: true, wantIssues: []string{"1 failed event"}},
		{name: "nats down", broker: stubBroker{down}, wantIssues: []string{"NATS not connected: connection reconnecting", "stream OUTBOX: unknown"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, httpapi.Options{Broker: tt.broker}, nil)
			events := e.enqueue(t, &outbox.Event{Type: "a", EntityID: "x"}, &outbox.Event{Type: "b", EntityID: "x"})
			if tt.fail {
				e.failForGood(t, "nats: no response from stream", events[0])
			}
			res := e.get(t, "/v1/status")
			res.wantStatus(t, http.StatusOK)
			var rep httpapi.Report
			if err := json.Unmarshal(res.body, &rep); err != nil {
				t.Fatal(err)
			}
			raw := res.object(t)
			for _, k := range []string{"generated_at", "has_issues", "issues", "stats", "stale", "failed"} {
				if _, ok := raw[k]; !ok {
					t.Errorf("report lacks %q: %s", k, res.body)
				}
			}
			if rep.HasIssues != (len(tt.wantIssues) > 0) || len(rep.Issues) != len(tt.wantIssues) {
				t.Errorf("has_issues %v, issues %q; want %q", rep.HasIssues, rep.Issues, tt.wantIssues)
			}
			for i, want := range tt.wantIssues {
				if i < len(rep.Issues) && !strings.HasPrefix(rep.Issues[i], want) {
					t.Errorf("issue %d = %q, want prefix %q", i, rep.Issues[i], want)
				}
			}
			if rep.Stats.Total != 2 {
				t.Errorf("stats.total = %d", rep.Stats.Total)
			}
			if tt.fail {
				if len(rep.Failed) != 1 || rep.Failed[0].ID != events[0].ID || rep.Failed[0].LastError != "nats: no response from stream" {
					t.Errorf("failed = %+v", rep.Failed)
				}
			} else if len(rep.Failed) != 0 {
				t.Errorf("failed = %+v", rep.Failed)
			}
			if tt.broker == nil {
				if _, ok := raw["nats"]; ok {
					t.Errorf("nats reported without a broker: %s", res.body)
				}
				return
			}
			nats, _ := raw["nats"].(map[string]any)
			stream, _ := raw["stream"].(map[string]any)
			for _, k := range []string{"connected", "url"} {
				if _, ok := nats[k]; !ok {
					t.Errorf("nats lacks %q: %v", k, nats)
				}
			}
			for _, k := range []string{"name", "subject_prefix", "subjects", "messages", "bytes", "first_seq", "last_seq", "consumers"} {
				if _, ok := stream[k]; !ok {
					t.Errorf("stream lacks %q: %v", k, stream)
				}
			}
		})
	}
}

func TestBackupRoute(t *testing.T) {
	e := newEnv(t, httpapi.Options{}, nil)
	e.enqueue(t, &outbox.Event{Type: "a"}, &outbox.Event{Type: "b"}, &outbox.Event{Type: "c"})
	e.get(t, "/v1/backup").wantError(t, http.StatusMethodNotAllowed, "POST")
	res := e.do(t, http.MethodPost, "/v1/backup", "", nil)
	res.wantStatus(t, http.StatusOK)
	if ct := res.header.Get("Content-Type"); ct != "application/octet-stream" {
		t.Errorf("Content-Type = %q", ct)
	}
	path := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(path, res.body, 0o600); err != nil {
		t.Fatal(err)
	}
	copyStore, err := boltstore.Open(path, nil)
	if err != nil {
		t.Fatalf("open the backup: %v", err)
	}
	defer copyStore.Close()
	st, err := copyStore.Stats(context.Background())
	if err != nil || st.Total != 3 || st.Pending != 3 {
		t.Errorf("backup stats = %+v, %v; want 3 pending", st, err)
	}
}

func TestResetRoute(t *testing.T) {
	e := newEnv(t, httpapi.Options{}, nil)
	fixture(t, e)
	e.post(t, "/v1/reset", "").wantError(t, 400, "missing confirm")
	e.post(t, "/v1/reset?confirm=no", "").wantError(t, 400, "missing confirm")
	if st := e.stats(t); st.Total != 25 {
		t.Fatalf("refused reset deleted events: %d left", st.Total)
	}
	if n := e.post(t, "/v1/reset?confirm=yes", "").count(t); n != 25 {
		t.Errorf("reset count = %d, want 25", n)
	}
	if st := e.stats(t); st.Total != 0 || st.Failed != 0 {
		t.Errorf("after reset: %+v", st)
	}
}

func TestAuth(t *testing.T) {
	const token = "s3cret-token"
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "outbox_up 1") })
	e := newEnv(t, httpapi.Options{Token: token, Metrics: metrics}, nil)
	events := e.enqueue(t, &outbox.Event{Type: "a"})
	tests := []struct {
		method, path, auth string
		status             int
	}{
		{"GET", "/healthz", "", 200},
		{"GET", "/readyz", "", 200},
		{"GET", "/healthz", "Bearer wrong", 200},
		{"GET", "/v1/stats", "", 401},
		{"GET", "/v1/stats", "Bearer wrong", 401},
		{"GET", "/v1/stats", "Bearer " + token + "x", 401},
		{"GET", "/v1/stats", "Basic " + token, 401},
		{"GET", "/v1/stats", token, 401},
		{"GET", "/v1/stats", "Bearer " + token, 200},
		{"GET", "/v1/stats", "bearer " + token, 200},
		{"GET", "/v1/events", "", 401},
		{"GET", "/v1/events", "Bearer " + token, 200},
		{"GET", "/v1/events/" + events[0].ID, "", 401},
		{"GET", "/v1/events/" + events[0].ID, "Bearer " + token, 200},
		{"POST", "/v1/events", "", 401},
		{"DELETE", "/v1/events/" + events[0].ID, "", 401},
		{"POST", "/v1/backup", "", 401},
		{"POST", "/v1/reset?confirm=yes", "", 401},
		{"GET", "/v1/status", "", 401},
		{"GET", "/v1/status", "Bearer " + token, 200},
		{"GET", "/metrics", "", 401},
		{"GET", "/metrics", "Bearer " + token, 200},
		{"GET", "/v1/nope", "", 401}, // routes are not revealed
		{"GET", "/v1/nope", "Bearer " + token, 404},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s %s %q", tt.method, tt.path, tt.auth), func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, e.srv.URL+tt.path, nil)
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			res, err := e.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			var body map[string]any
			json.NewDecoder(res.Body).Decode(&body)
			if res.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d (%v)", res.StatusCode, tt.status, body)
			}
			if tt.status == 401 {
				if msg, _ := body["error"].(string); !strings.HasPrefix(msg, "unauthorized") {
					t.Errorf("401 body = %v", body)
				}
				if res.Header.Get("WWW-Authenticate") == "" {
					t.Error("401 without WWW-Authenticate")
				}
			}
		})
	}
	if st := e.stats(t); st.Total != 1 {
		t.Errorf("unauthorized requests changed the store: total %d", st.Total)
	}
}

func TestAllowedTypes(t *testing.T) {
	e := newEnv(t, httpapi.Options{AllowedTypes: []string{"mood.created", "journal.created"}}, nil)
	e.post(t, "/v1/events", `{"type":"mood.created"}`).wantStatus(t, http.StatusCreated)
	e.post(t, "/v1/events", `{"type":"mood.craeted"}`).wantError(t, http.StatusBadRequest,
		`invalid type: "mood.craeted" is not allowed (allowed: mood.created, journal.created)`)
	e.post(t, "/v1/events/batch", `{"events":[{"type":"journal.created"},{"type":"journal.updated"}]}`).
		wantError(t, http.StatusBadRequest, `events[1]: invalid type: "journal.updated" is not allowed (allowed: mood.created, journal.created)`)
	if st := e.stats(t); st.Total != 1 {
		t.Errorf("total = %d, want 1", st.Total)
	}
	if err := httpapi.CheckType(nil, "anything"); err != nil {
		t.Errorf("no allowlist: %v", err)
	}
	err := httpapi.CheckType([]string{"a"}, "b")
	if !errors.Is(err, httpapi.ErrTypeNotAllowed) || !errors.Is(err, outbox.ErrInvalidEvent) {
		t.Errorf("CheckType error %v does not wrap ErrTypeNotAllowed and ErrInvalidEvent", err)
	}
}

func TestOutboxFull(t *testing.T) {
	e := newEnv(t, httpapi.Options{}, &boltstore.Options{MaxPending: 2})
	e.post(t, "/v1/events", `{"type":"a"}`).wantStatus(t, http.StatusCreated)
	e.post(t, "/v1/events", `{"type":"a"}`).wantStatus(t, http.StatusCreated)
	for _, req := range []struct{ path, body string }{
		{"/v1/events", `{"type":"a"}`},
		{"/v1/events/batch", `{"events":[{"type":"a"},{"type":"b"}]}`},
	} {
		res := e.post(t, req.path, req.body)
		res.wantError(t, http.StatusServiceUnavailable, "outbox full: max_pending")
		ra, err := strconv.Atoi(res.header.Get("Retry-After"))
		if err != nil || ra < 1 {
			t.Errorf("%s: Retry-After = %q, want whole seconds ≥ 1", req.path, res.header.Get("Retry-After"))
		}
	}
	if st := e.stats(t); st.Total != 2 {
		t.Errorf("total = %d, want 2: nothing refused is stored", st.Total)
	}
}

func TestEnqueuedHook(t *testing.T) {
	var mu sync.Mutex
	var got []string
	e := newEnv(t, httpapi.Options{Enqueued: func(events ...*outbox.Event) {
		mu.Lock()
		defer mu.Unlock()
		for _, ev := range events {
			got = append(got, ev.Type)
		}
	}}, nil)
	take := func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := got
		got = nil
		slices.Sort(out)
		return out
	}
	const id = "0190b5a8-7f3e-7c3a-9d2e-1a2b3c4d5e6f"
	e.post(t, "/v1/events", `{"id":"`+id+`","type":"one"}`).wantStatus(t, http.StatusCreated)
	if g := take(); !slices.Equal(g, []string{"one"}) {
		t.Errorf("single: %v", g)
	}
	e.post(t, "/v1/events", `{"id":"`+id+`","type":"one"}`).wantStatus(t, http.StatusOK)
	if g := take(); len(g) != 0 {
		t.Errorf("re-post counted: %v", g)
	}
	// A batch of one stored event, two new ones, and the stored one repeated.
	e.post(t, "/v1/events/batch", `{"events":[{"id":"`+id+`","type":"one"},{"type":"two"},{"type":"three"},{"id":"`+id+`","type":"one"}]}`).
		wantStatus(t, http.StatusCreated)
	if g := take(); !slices.Equal(g, []string{"three", "two"}) {
		t.Errorf("partial batch: %v, want [three two]", g)
	}
	e.post(t, "/v1/events", `{"type":"a.*"}`).wantStatus(t, http.StatusBadRequest)
	if g := take(); len(g) != 0 {
		t.Errorf("rejected event counted: %v", g)
	}
}

// slogTo returns a text logger writing to buf under mu.
func slogTo(buf *bytes.Buffer, mu *sync.Mutex) *slog.Logger {
	return slog.New(slog.NewTextHandler(&lockedWriter{w: buf, mu: mu}, nil))
}
