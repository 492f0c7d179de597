package boltstore_test

import (
	"context"
	"errors"
	"testing"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
)

// FuzzListCursor: a cursor is client input (GET /v1/events?cursor=): any
// string, with any filters, lists a page or fails with ErrBadCursor or
// ErrInvalidQuery, never panics, and a page is never larger than asked.
// Seeds: testdata/fuzz/FuzzListCursor, plus real cursors of every index.
func FuzzListCursor(f *testing.F) {
	s := mustOpen(f, nil)
	ctx := context.Background()
	for i := range 30 {
		e := userEv([]string{"u1", "u2"}[i%2], []string{"e1", "e2", "e3"}[i%3], i%10)
		mustEnqueue(f, s, e)
	}
	for _, q := range []boltstore.Query{{}, {Status: outbox.StatusPending}, {UserID: "u1"}, {UserID: "u1", Status: outbox.StatusPending},
		{EntityID: "e1"}, {Type: "mood.updated"}} {
		q.Limit = 2
		p, err := s.List(ctx, q)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(p.NextCursor, string(q.Status), q.UserID, q.EntityID, q.Type, 2)
	}
	f.Add("", "", "", "", "", 0)
	f.Add("!!!", "failed", "u1", "", "", 1000)
	f.Fuzz(func(t *testing.T, cursor, status, user, entity, typ string, limit int) {
		q := boltstore.Query{Status: outbox.Status(status), UserID: user, EntityID: entity, Type: typ, Limit: limit, Cursor: cursor}
		p, err := s.List(ctx, q)
		if err != nil {
			if !errors.Is(err, boltstore.ErrBadCursor) && !errors.Is(err, boltstore.ErrInvalidQuery) {
				t.Fatalf("List(%+v): %v", q, err)
			}
			return
		}
		want := limit
		if want <= 0 {
			want = boltstore.DefaultListLimit
		}
		if len(p.Events) > min(want, boltstore.MaxListLimit) {
			t.Fatalf("List(%+v): %d events", q, len(p.Events))
		}
	})
}
