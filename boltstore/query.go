package boltstore

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/fitiqcore/outbox"
	bolt "go.etcd.io/bbolt"
)

// Query selects events for List. Empty fields match everything.
type Query struct {
	Status   outbox.Status // "" any; otherwise one of the four statuses
	UserID   string        // "" any
	EntityID string        // "" any
	Type     string        // "" any (exact type)
	Limit    int           // events per page: default 100, at most 1000
	Cursor   string        // from Page.NextCursor; "" = first page
}

// Page is one page of a List.
type Page struct {
	Events []*outbox.Event
	// NextCursor continues the listing; "" on the last page.
	NextCursor string
}

// Limits of a listing.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
	// listScanLimit bounds the index entries one List call examines: when
	// the filters that no index serves reject that many, List returns the
	// page it has (possibly empty) with a NextCursor to continue.
	listScanLimit = 10000
)

// Cursor tags: which index a cursor walks.
const (
	tagEvents     = 'e'
	tagStatus     = 's'
	tagUserStatus = 'u'
	tagUser       = 'w'
	tagEntity     = 'n'
)

// plan is how a query walks an index.
type plan struct {
	tag    byte
	bucket *bolt.Bucket
	prefix []byte // every key of interest starts with it
	keyLen int    // and has this length
	seqOf  func(k, v []byte) uint64
	match  func(e *outbox.Event) bool // the filters the index does not serve
	// value, when set, is checked on each entry's value first: an entry it
	// refuses is passed over without reading its record.
	value func(v []byte) bool
}

func seqFromKeyEnd(k, _ []byte) uint64 { return binary.BigEndian.Uint64(k[len(k)-8:]) }

// seqFromValue reads a seq value; 0, which no event has, when it is damaged.
func seqFromValue(_, v []byte) uint64 {
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// planFor chooses the index for q, the most selective one first: entity
// (its chain, entity_seq order); user (the user's list, seq order; a status
// is checked on the list's values); status (by_status); none (events, seq
// order). No index serves a type alone: a
// listing by type walks the events, seq order, with the scan bound of List. by_status and
// by_user_status list a status highest priority first, oldest first within
// a priority, and completed events by completion time (see stateKey). The
// other filters are checked on the records.
func planFor(r *writer, q *Query) plan {
	matchStatus := q.Status == ""
	matchUser := q.UserID == ""
	matchType := q.Type == ""
	matchEntity := q.EntityID == ""
	var p plan
	switch {
	case q.EntityID != "":
		p = entityPlan(r, q.EntityID)
		matchEntity = true
	case q.UserID != "" && q.Status != "":
		p = userStatusPlan(r, q.UserID, q.Status)
		matchUser, matchStatus = true, true
	case q.UserID != "":
		p = userPlan(r, q.UserID)
		matchUser = true
	case q.Status != "":
		p = plan{tag: tagStatus, bucket: r.byStatus, prefix: []byte{statusCode(q.Status)}, keyLen: stateKeyLen, seqOf: seqFromKeyEnd}
		matchStatus = true
	default:
		p = plan{tag: tagEvents, bucket: r.events, keyLen: 8, seqOf: seqFromKeyEnd}
	}
	p.match = func(e *outbox.Event) bool {
		return (matchStatus || e.Status == q.Status) && (matchUser || e.UserID == q.UserID) &&
			(matchType || e.Type == q.Type) && (matchEntity || e.EntityID == q.EntityID)
	}
	return p
}

// entityPlan walks an entity's chain, in entity_seq order.
func entityPlan(r *writer, entity string) plan {
	p := plan{tag: tagEntity, bucket: r.entities, prefix: chainPrefix(lenPrefixed(entity, 9)), seqOf: seqFromValue}
	p.keyLen = len(p.prefix) + 8
	return p
}

// userStatusPlan walks a user's events in status st, in seq order: its
// list, passing over the other statuses by the entries' values.
func userStatusPlan(r *writer, user string, st outbox.Status) plan {
	p := userPlan(r, user)
	p.tag = tagUserStatus
	code := statusCode(st)
	p.value = func(v []byte) bool { return len(v) == 2 && v[0] == code }
	return p
}

// userPlan walks all a user's events, in seq order.
func userPlan(r *writer, user string) plan {
	p := plan{tag: tagUser, bucket: r.users, prefix: userSeqPrefix(user), seqOf: seqFromKeyEnd}
	p.keyLen = len(p.prefix) + 8
	return p
}

func (p *plan) validKey(k []byte) bool { return len(k) == p.keyLen && hasPrefix(k, p.prefix) }

func (p *plan) cursor(k []byte) string {
	return base64.RawURLEncoding.EncodeToString(append([]byte{p.tag}, k...))
}

// start decodes a cursor into the key to continue after; nil for "".
func (p *plan) start(cursor string) ([]byte, error) {
	if cursor == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil || len(b) < 1 || b[0] != p.tag || !p.validKey(b[1:]) {
		return nil, fmt.Errorf("%w: %q", ErrBadCursor, cursor)
	}
	return b[1:], nil
}

func validStatus(st outbox.Status) error {
	if st != "" && !st.Valid() {
		return fmt.Errorf("%w: unknown status %q", ErrInvalidQuery, st)
	}
	return nil
}

// List returns a page of the events that match q, and a cursor to the next
// page. It walks the most selective index for the filters given (see
// Query) and checks the other filters on the records, examining at most
// 10,000 index entries per call: a page may be short, even empty, while
// NextCursor is not; NextCursor is "" only when nothing more matches. Each
// page is read in a transaction of its own: an event that changes status
// between pages may be missed or listed twice. A cursor that is not one
// List handed out for the same filters fails with ErrBadCursor; an unknown
// status with ErrInvalidQuery.
func (s *Store) List(ctx context.Context, q Query) (Page, error) {
	if err := ctx.Err(); err != nil {
		return Page{}, err
	}
	if err := validStatus(q.Status); err != nil {
		return Page{}, err
	}
	limit := q.Limit
	if limit <= 0 {
		limit = DefaultListLimit
	}
	limit = min(limit, MaxListLimit)
	page := Page{Events: []*outbox.Event{}}
	err := s.view(func(tx *bolt.Tx) error {
		r := s.reader(tx)
		p := planFor(r, &q)
		after, err := p.start(q.Cursor)
		if err != nil {
			return err
		}
		page.Events, page.NextCursor, err = r.walk(&p, after, limit, listScanLimit)
		return err
	})
	if err != nil {
		return Page{}, fmt.Errorf("boltstore: list: %w", err)
	}
	return page, nil
}

// walk reads up to limit matching events after key after (nil: from the
// start), examining at most scan index entries (0: no bound). next is the
// cursor to continue, "" when nothing more matches.
func (r *writer) walk(p *plan, after []byte, limit, scan int) (events []*outbox.Event, next string, err error) {
	events = []*outbox.Event{}
	c := p.bucket.Cursor()
	var k, v []byte
	if after != nil {
		k, v = c.Seek(after)
		if k != nil && bytes.Equal(k, after) {
			k, v = c.Next()
		}
	} else {
		k, v = c.Seek(p.prefix)
	}
	var last []byte // the last key examined
	for examined := 0; k != nil && hasPrefix(k, p.prefix); k, v = c.Next() {
		if !p.validKey(k) {
			continue
		}
		if scan > 0 && examined == scan {
			return events, p.cursor(last), nil
		}
		examined++
		if p.value != nil && !p.value(v) {
			last = k
			continue
		}
		e, err := r.get(p.seqOf(k, v))
		if err != nil {
			return nil, "", err
		}
		if e == nil || !p.match(e) {
			last = k
			continue
		}
		if len(events) == limit { // one more matches: there is a next page
			return events, p.cursor(last), nil
		}
		events = append(events, e)
		last = k
	}
	return events, "", nil
}

// FetchPending returns up to limit pending events (default 100 when limit
// <= 0) of a user ("" = all users), highest priority first, FIFO within a
// priority. It reads the by_status (or by_user_status) index: O(limit).
// Pending events include those waiting out a backoff or behind an earlier
// event of their entity; Due is what the relay reads.
func (s *Store) FetchPending(ctx context.Context, userID string, limit int) ([]*outbox.Event, error) {
	return s.FetchByStatus(ctx, outbox.StatusPending, userID, limit)
}

// FetchByStatus returns up to limit events (default 100 when limit <= 0) in
// status st of a user ("" = all users), highest priority first, oldest
// first within a priority; completed events by completion time, and a
// user's completed events by seq. It reads by_status or by_user_status:
// O(limit); a user's completed events come from by_user, filtered: O(the
// user's events) at worst. An invalid status fails with ErrInvalidQuery.
func (s *Store) FetchByStatus(ctx context.Context, st outbox.Status, userID string, limit int) ([]*outbox.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if st == "" || !st.Valid() {
		return nil, fmt.Errorf("%w: unknown status %q", ErrInvalidQuery, st)
	}
	if limit <= 0 {
		limit = DefaultListLimit
	}
	var events []*outbox.Event
	err := s.view(func(tx *bolt.Tx) error {
		r := s.reader(tx)
		if userID != "" {
			var err error
			events, err = r.userByStatus(userID, st, limit)
			return err
		}
		p := planFor(r, &Query{Status: st})
		var err error
		events, _, err = r.walk(&p, nil, limit, 0)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("boltstore: fetch %s: %w", st, err)
	}
	return events, nil
}

// userByStatus returns up to limit events of a user in status st, highest
// priority first, oldest (lowest seq) first within a priority; completed
// ones by seq. It reads the values of the user's list, from its first
// pending event for pending ones: O(the user's events) index entries, and
// the records it returns.
func (r *writer) userByStatus(user string, st outbox.Status, limit int) ([]*outbox.Event, error) {
	type hit struct {
		rank byte
		seq  uint64
	}
	var hits []hit
	pfx, code := userSeqPrefix(user), statusCode(st)
	c := r.users.Cursor()
	k, v := c.Seek(pfx)
	if st == outbox.StatusPending {
		u, err := loadUserCounts(r.users.Get(userCountsKey(user)))
		if err != nil {
			return nil, r.corrupt("counters of user %q: %v", user, err)
		}
		if u.firstPending == 0 {
			return nil, nil
		}
		k, v = c.Seek(userSeqKey(user, u.firstPending))
	}
	for ; k != nil && len(k) == len(pfx)+8 && hasPrefix(k, pfx); k, v = c.Next() {
		if len(v) == 2 && v[0] == code {
			hits = append(hits, hit{v[1], binary.BigEndian.Uint64(k[len(pfx):])})
			if st == outbox.StatusCompleted && len(hits) == limit {
				break
			}
		}
	}
	slices.SortStableFunc(hits, func(a, b hit) int { return int(a.rank) - int(b.rank) })
	events := make([]*outbox.Event, 0, min(limit, len(hits)))
	for _, h := range hits[:min(limit, len(hits))] {
		e, err := r.get(h.seq)
		if err != nil {
			return nil, err
		}
		if e == nil {
			return nil, r.corrupt("user %q lists seq %d, which has no record", user, h.seq)
		}
		events = append(events, e)
	}
	return events, nil
}

// FetchByEntity returns every stored event of an entity, of one type
// (eventType "" = all), in entity_seq order. It seeks in by_entity: O(events
// of the entity). An empty entityID fails with ErrInvalidQuery.
func (s *Store) FetchByEntity(ctx context.Context, entityID, eventType string) ([]*outbox.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if entityID == "" {
		return nil, fmt.Errorf("%w: entity_id required", ErrInvalidQuery)
	}
	var events []*outbox.Event
	err := s.view(func(tx *bolt.Tx) error {
		r := s.reader(tx)
		p := planFor(r, &Query{EntityID: entityID, Type: eventType})
		var err error
		events, _, err = r.walk(&p, nil, -1, 0)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("boltstore: fetch entity %q: %w", entityID, err)
	}
	return events, nil
}

// StaleEvents returns up to limit (default 100 when limit <= 0) pending
// events of a user ("" = all users) accepted longer than Options.StaleAfter
// ago, oldest first. It walks the pending entries of by_status (or the user's list) from
// its start: O(limit), and exact whatever the stale sweep did.
func (s *Store) StaleEvents(ctx context.Context, userID string, limit int) ([]*outbox.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = DefaultListLimit
	}
	cutoff := s.staleCutoff()
	var events []*outbox.Event
	err := s.view(func(tx *bolt.Tx) error {
		r := s.reader(tx)
		if userID != "" {
			var err error
			events, err = r.userStale(userID, cutoff, limit)
			return err
		}
		m := newPendingCursor(r.byStatus, nil, nil, false)
		for tk, _ := m.next(); tk != nil && bytes.Compare(tk, cutoff) < 0 && len(events) < limit; tk, _ = m.next() {
			e, err := r.get(binary.BigEndian.Uint64(tk[8:]))
			if err != nil {
				return err
			}
			if e != nil {
				events = append(events, e)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("boltstore: stale events: %w", err)
	}
	return events, nil
}

// userStale returns up to limit pending events of a user accepted before
// the time key cutoff, oldest first: it walks the user's list from its
// first pending event, reading the pending ones, until one is not stale (the
// list is in seq order, which is the order of acceptance).
func (r *writer) userStale(user string, cutoff []byte, limit int) ([]*outbox.Event, error) {
	u, err := loadUserCounts(r.users.Get(userCountsKey(user)))
	if err != nil {
		return nil, r.corrupt("counters of user %q: %v", user, err)
	}
	if u.firstPending == 0 {
		return nil, nil
	}
	var events []*outbox.Event
	pfx, pending := userSeqPrefix(user), statusCode(outbox.StatusPending)
	c := r.users.Cursor()
	for k, v := c.Seek(userSeqKey(user, u.firstPending)); k != nil && len(k) == len(pfx)+8 && hasPrefix(k, pfx) && len(events) < limit; k, v = c.Next() {
		if len(v) != 2 || v[0] != pending {
			continue
		}
		e, err := r.get(binary.BigEndian.Uint64(k[len(pfx):]))
		if err != nil {
			return nil, err
		}
		if e == nil {
			return nil, r.corrupt("user %q lists seq %d, which has no record", user, binary.BigEndian.Uint64(k[len(pfx):]))
		}
		if bytes.Compare(timeKey(e.AcceptedAt, e.Seq), cutoff) >= 0 {
			break
		}
		events = append(events, e)
	}
	return events, nil
}
