package boltstore_test

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
)

// listFixture is a store with events of every status, spread over users,
// entities, types and priorities, and every event as stored.
func listFixture(t *testing.T) (*boltstore.Store, []*outbox.Event) {
	t.Helper()
	ctx := context.Background()
	clk := newClock()
	s := mustOpen(t, &boltstore.Options{Now: clk.Now})
	s.DB().NoSync = true
	rng := rand.New(rand.NewPCG(7, 7))
	users := []string{"", "u1", "u2", "u3"}
	entities := []string{"", "", "e1", "e2", "e3", "e4", "e5"}
	types := []string{"t.a", "t.b", "t.c"}
	var ids []string
	for range 60 {
		var es []*outbox.Event
		for range 5 {
			e := ev(types[rng.IntN(len(types))], entities[rng.IntN(len(entities))], rng.IntN(10))
			e.UserID = users[rng.IntN(len(users))]
			es = append(es, e)
		}
		mustEnqueue(t, s, es...)
		for _, e := range es {
			ids = append(ids, e.ID)
		}
		clk.Advance(time.Second)
		// Play the relay and an operator over the heads.
		heads, _ := due(t, s, clk.Now(), 4)
		for i, e := range heads {
			switch i % 4 {
			case 0:
				complete(t, s, clk.Now(), e)
			case 1:
				fail(t, s, boltstore.Failure{Seq: e.Seq, At: clk.Now(), Err: "x", Permanent: true})
			case 2:
				if err := s.MarkProcessing(ctx, e.ID); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	var all []*outbox.Event
	for _, id := range ids {
		all = append(all, mustGet(t, s, id))
	}
	st := mustStats(t, s)
	if st.Pending == 0 || st.Processing == 0 || st.Completed == 0 || st.Failed == 0 {
		t.Fatalf("fixture lacks a status: %s", fmtStats(st))
	}
	return s, all
}

func matches(q boltstore.Query, e *outbox.Event) bool {
	return (q.Status == "" || e.Status == q.Status) && (q.UserID == "" || e.UserID == q.UserID) &&
		(q.EntityID == "" || e.EntityID == q.EntityID) && (q.Type == "" || e.Type == q.Type)
}

// listOrder is the order List promises for the index it uses for q.
func listOrder(q boltstore.Query) func(a, b *outbox.Event) int {
	switch {
	case q.EntityID != "":
		return func(a, b *outbox.Event) int { return cmp.Compare(a.EntitySeq, b.EntitySeq) }
	case q.UserID == "" && q.Status != "":
		return func(a, b *outbox.Event) int { return strings.Compare(stateKey(a), stateKey(b)) }
	default:
		return func(a, b *outbox.Event) int { return cmp.Compare(a.Seq, b.Seq) }
	}
}

// listAll pages through q and returns the events and the number of pages.
func listAll(t *testing.T, s *boltstore.Store, q boltstore.Query) ([]*outbox.Event, int) {
	t.Helper()
	var out []*outbox.Event
	pages := 0
	for {
		p, err := s.List(context.Background(), q)
		if err != nil {
			t.Fatalf("list %+v: %v", q, err)
		}
		pages++
		if len(p.Events) > q.Limit && q.Limit > 0 {
			t.Fatalf("page of %d events, limit %d", len(p.Events), q.Limit)
		}
		out = append(out, p.Events...)
		if p.NextCursor == "" {
			return out, pages
		}
		if pages > 1000 {
			t.Fatal("pagination does not end")
		}
		q.Cursor = p.NextCursor
	}
}

func TestListPagination(t *testing.T) {
	s, all := listFixture(t)
	queries := []boltstore.Query{
		{},
		{Status: outbox.StatusPending},
		{Status: outbox.StatusCompleted},
		{Status: outbox.StatusFailed},
		{Status: outbox.StatusProcessing},
		{UserID: "u1"},
		{UserID: "u2", Status: outbox.StatusPending},
		{UserID: "u3", Status: outbox.StatusCompleted, Type: "t.b"},
		{EntityID: "e1"},
		{EntityID: "e2", Type: "t.a"},
		{EntityID: "e3", Status: outbox.StatusCompleted, UserID: "u1"},
		{Type: "t.c"},
		{Type: "t.a", Status: outbox.StatusFailed},
		{UserID: "nobody"},
	}
	for _, q := range queries {
		for _, limit := range []int{7, 0} {
			q.Limit = limit
			t.Run(fmt.Sprintf("%+v", q), func(t *testing.T) {
				var want []*outbox.Event
				for _, e := range all {
					if matches(q, e) {
						want = append(want, e)
					}
				}
				slices.SortFunc(want, listOrder(q))
				got, pages := listAll(t, s, q)
				if !slices.Equal(ids(got), ids(want)) {
					t.Fatalf("listed %d events %v,\nwant %d %v", len(got), label(got), len(want), label(want))
				}
				if limit == 7 && len(want) > 14 && pages < 3 {
					t.Errorf("%d events in %d pages of 7", len(want), pages)
				}
				if limit == 0 && pages != max(1, (len(want)+99)/100) {
					t.Errorf("%d events in %d pages of the default 100", len(want), pages)
				}
			})
		}
	}
}

func ids(es []*outbox.Event) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.ID
	}
	return out
}

// TestListLimitsAndEmptyPage: an empty listing is an empty page (Events not
// nil, so the API answers [] and not null), and the limit is bounded.
func TestListLimitsAndEmptyPage(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t, nil)
	p, err := s.List(ctx, boltstore.Query{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Events == nil || len(p.Events) != 0 || p.NextCursor != "" {
		t.Errorf("empty page: %#v", p)
	}
	s.DB().NoSync = true
	enqueueMany(t, s, 1500, func(int) *outbox.Event { return ev("t", "", 0) })
	for _, tt := range []struct{ limit, want int }{{0, 100}, {-1, 100}, {5000, 1000}, {1000, 1000}} {
		p, err := s.List(ctx, boltstore.Query{Limit: tt.limit})
		if err != nil || len(p.Events) != tt.want || p.NextCursor == "" {
			t.Errorf("limit %d: %d events, cursor %q, %v; want %d", tt.limit, len(p.Events), p.NextCursor, err, tt.want)
		}
	}
}

func TestListBadCursor(t *testing.T) {
	ctx := context.Background()
	s, _ := listFixture(t)
	page := func(q boltstore.Query) string {
		q.Limit = 2
		p, err := s.List(ctx, q)
		if err != nil || p.NextCursor == "" {
			t.Fatalf("list %+v: %v, cursor %q", q, err, p.NextCursor)
		}
		return p.NextCursor
	}
	statusCursor := page(boltstore.Query{Status: outbox.StatusCompleted})
	userCursor := page(boltstore.Query{UserID: "u1"})
	raw, _ := base64.RawURLEncoding.DecodeString(statusCursor)
	tests := []struct {
		name   string
		q      boltstore.Query
		cursor string
	}{
		{"not base64", boltstore.Query{}, "!!not base64!!"},
		{"empty after decoding", boltstore.Query{}, "="},
		{"padded base64", boltstore.Query{Status: outbox.StatusCompleted}, base64.URLEncoding.EncodeToString(raw)},
		{"another index's cursor", boltstore.Query{Type: "t.a"}, statusCursor},
		{"another status's cursor", boltstore.Query{Status: outbox.StatusFailed}, statusCursor},
		{"another user's cursor", boltstore.Query{UserID: "u2"}, userCursor},
		{"truncated key", boltstore.Query{Status: outbox.StatusCompleted}, base64.RawURLEncoding.EncodeToString(raw[:len(raw)-1])},
		{"only the tag", boltstore.Query{Status: outbox.StatusCompleted}, base64.RawURLEncoding.EncodeToString(raw[:1])},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.q.Cursor = tt.cursor
			if _, err := s.List(ctx, tt.q); !errors.Is(err, boltstore.ErrBadCursor) {
				t.Fatalf("List: %v, want ErrBadCursor", err)
			}
		})
	}
	if _, err := s.List(ctx, boltstore.Query{Status: "done"}); !errors.Is(err, boltstore.ErrInvalidQuery) {
		t.Errorf("unknown status: %v, want ErrInvalidQuery", err)
	}
	// A cursor stays valid when its event is deleted meanwhile.
	p, err := s.List(ctx, boltstore.Query{Status: outbox.StatusCompleted, Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, p.Events[1].ID); err != nil {
		t.Fatal(err)
	}
	next, err := s.List(ctx, boltstore.Query{Status: outbox.StatusCompleted, Limit: 2, Cursor: p.NextCursor})
	if err != nil || len(next.Events) == 0 || next.Events[0].ID == p.Events[1].ID {
		t.Fatalf("after deleting the cursor's event: %v, %v", label(next.Events), err)
	}
}

// TestListScanLimit: filters no index serves (here the type, which no
// index serves since layout 3: the events are walked) examine at most 10,000
// entries per call: a page may come back empty with a cursor, and the
// listing still ends with every match.
func TestListScanLimit(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t, nil)
	s.DB().NoSync = true
	enqueueMany(t, s, 12_000, func(int) *outbox.Event { return ev("t.x", "", 0) })
	last := ev("t.y", "", 0)
	mustEnqueue(t, s, last)
	q := boltstore.Query{Type: "t.y"}
	p, err := s.List(ctx, q)
	if err != nil || len(p.Events) != 0 || p.NextCursor == "" {
		t.Fatalf("first page: %d events, cursor %q, %v; want an empty page with a cursor", len(p.Events), p.NextCursor, err)
	}
	got, _ := listAll(t, s, q)
	if len(got) != 1 || got[0].ID != last.ID {
		t.Fatalf("listed %v, want the failed event", label(got))
	}
}

func TestFetch(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	s := mustOpen(t, &boltstore.Options{Now: clk.Now})
	u := func(user string, prio int, entity string) *outbox.Event {
		e := ev("fetch."+user, entity, prio)
		e.UserID = user
		return e
	}
	a0, a5, b9, a5b, b1 := u("a", 0, ""), u("a", 5, "E"), u("b", 9, ""), u("a", 5, "E"), u("b", 1, "E")
	mustEnqueue(t, s, a0, a5)
	clk.Advance(time.Second)
	mustEnqueue(t, s, b9, a5b, b1)

	check := func(name string, got []*outbox.Event, err error, want ...*outbox.Event) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !slices.Equal(ids(got), ids(want)) {
			t.Errorf("%s = %v, want %v", name, label(got), label(want))
		}
	}
	got, err := s.FetchPending(ctx, "", 0)
	check("FetchPending(all)", got, err, b9, a5, a5b, b1, a0) // priority, then age
	got, err = s.FetchPending(ctx, "a", 2)
	check("FetchPending(a, 2)", got, err, a5, a5b)
	got, err = s.FetchPending(ctx, "b", 10)
	check("FetchPending(b)", got, err, b9, b1)

	complete(t, s, clk.Now(), a5) // the head of E: a5b leads now
	fail(t, s, boltstore.Failure{Seq: a5b.Seq, At: clk.Now(), Err: "x", Permanent: true})
	got, err = s.FetchByStatus(ctx, outbox.StatusCompleted, "", 0)
	check("FetchByStatus(completed)", got, err, a5)
	got, err = s.FetchByStatus(ctx, outbox.StatusFailed, "a", 0)
	check("FetchByStatus(failed, a)", got, err, a5b)
	got, err = s.FetchByStatus(ctx, outbox.StatusFailed, "b", 0)
	check("FetchByStatus(failed, b)", got, err)
	for _, st := range []outbox.Status{"", "done"} {
		if _, err := s.FetchByStatus(ctx, st, "", 0); !errors.Is(err, boltstore.ErrInvalidQuery) {
			t.Errorf("FetchByStatus(%q): %v, want ErrInvalidQuery", st, err)
		}
	}

	got, err = s.FetchByEntity(ctx, "E", "")
	check("FetchByEntity(E)", got, err, a5, a5b, b1) // entity_seq order
	got, err = s.FetchByEntity(ctx, "E", "fetch.b")
	check("FetchByEntity(E, fetch.b)", got, err, b1)
	got, err = s.FetchByEntity(ctx, "nope", "")
	check("FetchByEntity(nope)", got, err)
	if _, err := s.FetchByEntity(ctx, "", ""); !errors.Is(err, boltstore.ErrInvalidQuery) {
		t.Errorf("FetchByEntity(\"\"): %v, want ErrInvalidQuery", err)
	}
}
