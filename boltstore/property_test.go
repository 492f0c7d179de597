package boltstore_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
	bolt "go.etcd.io/bbolt"
)

// TestProperties runs random sequences of operations, the way a relay and an
// operator would issue them, and checks the store's invariants after every
// step. At the end it drains the store and checks that every entity's events
// completed in entity_seq order.
func TestProperties(t *testing.T) {
	seeds := []uint64{1, 2, 3, 4, 5, 6, 7, 8}
	steps := 300
	// BOLTSTORE_PROPERTY_SEEDS=n runs n more seeds of 800 steps (a soak).
	if n, _ := strconv.Atoi(os.Getenv("BOLTSTORE_PROPERTY_SEEDS")); n > 0 {
		for i := range n {
			seeds = append(seeds, uint64(100+i))
		}
		steps = 800
	}
	if testing.Short() {
		seeds, steps = seeds[:2], 100
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			t.Parallel()
			runProperties(t, seed, steps)
		})
	}
}

type propRun struct {
	t   *testing.T
	ctx context.Context
	rng *rand.Rand
	clk *clock
	s   *boltstore.Store

	ids       []string          // every id ever enqueued
	bySeq     map[uint64]string // seq → id
	published []uint64          // seqs Due has returned, as a relay holds them
	completed map[string][]uint64
	log       []string

	path        string
	opts        *boltstore.Options
	removeOnAck bool
	newest      time.Time            // the latest completion: Stats' newest_completed_at
	userNewest  map[string]time.Time // per user, forgotten when the user has no events
}

func runProperties(t *testing.T, seed uint64, steps int) {
	clk := newClock()
	r := &propRun{
		t: t, ctx: context.Background(), rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), clk: clk,
		bySeq: map[uint64]string{}, completed: map[string][]uint64{}, userNewest: map[string]time.Time{},
		path:        filepath.Join(t.TempDir(), "outbox.db"),
		removeOnAck: seed%3 == 0,
	}
	// Short times, so that the clock's steps make events stale and old.
	r.opts = &boltstore.Options{
		Now:        clk.Now,
		StaleAfter: 2 * time.Second, Retention: 5 * time.Second, RemoveOnAck: r.removeOnAck,
	}
	if seed%2 == 0 { // and a reopen switches it (reopen)
		r.opts.Fairness = boltstore.FairnessUser
	}
	r.open()
	defer func() {
		if t.Failed() {
			t.Logf("seed %d, last steps:\n%s", seed, lastLines(r.log, 30))
		}
	}()
	ops := []struct {
		weight int
		op     func()
	}{
		{25, r.enqueue},
		{4, r.enqueueRolledBack},
		{20, r.due},
		{15, r.complete},
		{12, r.fail},
		{5, r.retry},
		{5, r.delete},
		{8, func() { r.logf("advance %v", r.clk.Advance(time.Duration(r.rng.IntN(3000))*time.Millisecond).Sub(t0)) }},
		{1, func() {
			r.logf("clock back %v", r.clk.Advance(-time.Duration(r.rng.IntN(3000))*time.Millisecond).Sub(t0))
		}},
		{4, r.update},
		{4, r.markProcessing},
		{4, r.markCompleted},
		{3, r.markFailed},
		{2, r.retryWhere},
		{3, r.deleteCompletedBefore},
		{2, r.deleteByEntity},
		{1, r.deleteUser},
		{4, r.sweep},
		{1, r.cleanupOrphans},
		{2, r.reopen},
		{1, r.reset},
		{3, r.list},
	}
	total := 0
	for _, o := range ops {
		total += o.weight
	}
	for step := range steps {
		k := r.rng.IntN(total)
		for _, o := range ops {
			if k -= o.weight; k < 0 {
				o.op()
				break
			}
		}
		if err := checkInvariants(r.s); err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		r.checkNewest(step)
	}
	r.drain()
	for ent, es := range r.completed {
		for i := 1; i < len(es); i++ {
			if es[i] <= es[i-1] {
				t.Fatalf("entity %s completed in order %v, want strictly increasing entity_seq", ent, es)
			}
		}
	}
}

func lastLines(log []string, n int) string {
	if len(log) > n {
		log = log[len(log)-n:]
	}
	out := ""
	for _, l := range log {
		out += "  " + l + "\n"
	}
	return out
}

func (r *propRun) logf(format string, args ...any) {
	r.log = append(r.log, fmt.Sprintf(format, args...))
}

var (
	propEntities = []string{"", "", "A", "B", "C", "D", "E"}
	propUserIDs  = []string{"", "u0", "u1", "u2", "u2"}
)

func (r *propRun) newEvents() []*outbox.Event {
	es := make([]*outbox.Event, 1+r.rng.IntN(3))
	for i := range es {
		es[i] = &outbox.Event{
			Type:        "prop.event",
			EntityID:    propEntities[r.rng.IntN(len(propEntities))],
			UserID:      propUserIDs[r.rng.IntN(len(propUserIDs))],
			Priority:    r.rng.IntN(outbox.MaxPriority + 1),
			MaxAttempts: 1 + r.rng.IntN(3),
			Payload:     fmt.Appendf(nil, "%d", r.rng.Uint64()),
		}
		if r.rng.IntN(5) == 0 { // delayed delivery: in the clock's near future or just past
			es[i].DeliverAt = r.clk.Now().Add(time.Duration(r.rng.IntN(12)-2) * time.Second)
		}
	}
	return es
}

func (r *propRun) enqueue() {
	es := r.newEvents()
	n, err := r.s.Enqueue(r.ctx, es...)
	if err != nil || n != len(es) {
		r.t.Fatalf("enqueue: created %d of %d, %v", n, len(es), err)
	}
	for _, e := range es {
		r.ids = append(r.ids, e.ID)
		r.bySeq[e.Seq] = e.ID
		r.logf("enqueue seq %d entity %q #%d p%d max %d deliver %v", e.Seq, e.EntityID, e.EntitySeq, e.Priority, e.MaxAttempts, e.DeliverAt)
	}
	// Re-enqueueing one of them is a no-op.
	if again := *es[0]; r.rng.IntN(4) == 0 {
		n, err := r.s.Enqueue(r.ctx, &again)
		if err != nil || n != 0 || again.Seq != es[0].Seq {
			r.t.Fatalf("re-enqueue: created %d, seq %d (was %d), %v", n, again.Seq, es[0].Seq, err)
		}
	}
}

func (r *propRun) enqueueRolledBack() {
	before := mustStats(r.t, r.s)
	err := r.s.DB().Update(func(tx *bolt.Tx) error {
		if _, err := r.s.EnqueueTx(tx, r.newEvents()...); err != nil {
			return err
		}
		return errRollback
	})
	if !errors.Is(err, errRollback) {
		r.t.Fatalf("rolled-back enqueue: %v", err)
	}
	if after := mustStats(r.t, r.s); !statsEqual(after, before) {
		r.t.Fatalf("rolled-back enqueue changed Stats: %+v → %+v", before, after)
	}
	r.logf("enqueue rolled back")
}

// due plays the relay: it asks for due events, skipping some it pretends are
// in flight, and checks what comes back.
func (r *propRun) due() {
	now := r.clk.Now()
	n := 1 + r.rng.IntN(8)
	var skip func(uint64) bool
	if r.rng.IntN(3) == 0 && len(r.published) > 0 {
		inflight := map[uint64]bool{}
		for range 3 {
			inflight[r.published[r.rng.IntN(len(r.published))]] = true
		}
		skip = func(seq uint64) bool { return inflight[seq] }
	}
	es, next, err := r.s.Due(r.ctx, now, n, skip)
	if err != nil {
		r.t.Fatalf("due: %v", err)
	}
	r.logf("due(n=%d) → %v next %v", n, label(es), next)
	if len(es) > n {
		r.t.Fatalf("Due(n=%d) returned %d events", n, len(es))
	}
	if r.opts.Fairness == boltstore.FairnessUser {
		if !slices.IsSortedFunc(es, func(a, b *outbox.Event) int { return b.Priority - a.Priority }) {
			r.t.Fatalf("Due returned %v, not by priority", label(es))
		}
	} else if !slices.IsSortedFunc(es, byPriority) {
		r.t.Fatalf("Due returned %v, not by priority then seq", label(es))
	}
	entities := map[string]bool{}
	for _, e := range es {
		if skip != nil && skip(e.Seq) {
			r.t.Fatalf("Due returned skipped seq %d", e.Seq)
		}
		if e.Status != outbox.StatusPending || e.NextAttemptAt.After(now) {
			r.t.Fatalf("Due returned seq %d: %s, next attempt %v (now %v)", e.Seq, e.Status, e.NextAttemptAt, now)
		}
		if e.EntityID != "" {
			if entities[e.EntityID] {
				r.t.Fatalf("Due returned two events of entity %s", e.EntityID)
			}
			entities[e.EntityID] = true
		}
		if !slices.Contains(r.published, e.Seq) {
			r.published = append(r.published, e.Seq)
		}
	}
	if !next.IsZero() && !next.After(now) && len(es) < n {
		r.t.Fatalf("Due: next %v is not after now %v though fewer than n events came back", next, now)
	}
}

// pickPublished returns up to k seqs the relay holds; some may be finished
// or deleted meanwhile, which Complete and Fail must ignore.
func (r *propRun) pickPublished(k int) []uint64 {
	if len(r.published) == 0 {
		return nil
	}
	var out []uint64
	for range 1 + r.rng.IntN(k) {
		out = append(out, r.published[r.rng.IntN(len(r.published))])
	}
	return out
}

// statusOf returns the stored event of seq, or nil when it was deleted.
func (r *propRun) statusOf(seq uint64) *outbox.Event {
	e, err := r.s.Get(r.ctx, r.bySeq[seq])
	if errors.Is(err, boltstore.ErrNotFound) {
		return nil
	}
	if err != nil {
		r.t.Fatalf("get seq %d: %v", seq, err)
	}
	return e
}

func (r *propRun) complete() {
	picked := r.pickPublished(3)
	before := map[uint64]*outbox.Event{}
	var acks []boltstore.Ack
	for _, seq := range picked {
		before[seq] = r.statusOf(seq)
		acks = append(acks, boltstore.Ack{Seq: seq, At: r.clk.Now()})
	}
	if err := r.s.Complete(r.ctx, acks); err != nil {
		r.t.Fatalf("complete: %v", err)
	}
	r.logf("complete %v", picked)
	r.recordCompletions(picked, before, r.clk.Now())
}

// completedNow reports whether after (nil: deleted) is what a completion
// leaves: a completed event, or none with RemoveOnAck.
func (r *propRun) completedNow(after *outbox.Event) bool {
	if r.removeOnAck {
		return after == nil
	}
	return after != nil && after.Status == outbox.StatusCompleted
}

func (r *propRun) recordCompletions(picked []uint64, before map[uint64]*outbox.Event, at time.Time) {
	done := map[uint64]bool{}
	for _, seq := range picked {
		b := before[seq]
		if done[seq] || b == nil {
			continue
		}
		done[seq] = true
		after := r.statusOf(seq)
		switch {
		case b.Status == outbox.StatusPending:
			if !r.completedNow(after) || after != nil && after.AttemptCount != b.AttemptCount+1 {
				r.t.Fatalf("seq %d: pending → %s after an ack", seq, describe(after))
			}
			r.noteCompleted(b, at)
		case after == nil || after.Status != b.Status || after.AttemptCount != b.AttemptCount:
			r.t.Fatalf("seq %d: an ack changed a %s event to %s", seq, b.Status, describe(after))
		}
	}
}

// noteCompleted records the completion of b at at, for the order check and
// the newest_completed_at model.
func (r *propRun) noteCompleted(b *outbox.Event, at time.Time) {
	if b.EntityID != "" {
		r.completed[b.EntityID] = append(r.completed[b.EntityID], b.EntitySeq)
	}
	if at.After(r.newest) {
		r.newest = at
	}
	if b.UserID != "" && at.After(r.userNewest[b.UserID]) {
		r.userNewest[b.UserID] = at
	}
}

// checkNewest compares newest_completed_at with the model: the latest
// completion ever for all users; per user, the latest while the user has
// events (the store forgets a user with none).
func (r *propRun) checkNewest(step int) {
	check := func(who string, got *time.Time, want time.Time) {
		if (got == nil) != want.IsZero() || got != nil && !got.Equal(want) {
			r.t.Fatalf("step %d: %s newest_completed_at = %v, want %v", step, who, got, want)
		}
	}
	check("all", mustStats(r.t, r.s).NewestCompletedAt, r.newest)
	for _, u := range propUsers {
		st, err := r.s.UserStats(r.ctx, u)
		if err != nil {
			r.t.Fatal(err)
		}
		if st.Total == 0 {
			delete(r.userNewest, u)
		}
		check("user "+u, st.NewestCompletedAt, r.userNewest[u])
	}
}

var propUsers = []string{"u0", "u1", "u2"}

func (r *propRun) fail() {
	picked := r.pickPublished(2)
	now := r.clk.Now()
	var fs []boltstore.Failure
	before := map[uint64]*outbox.Event{}
	for _, seq := range picked {
		if _, ok := before[seq]; ok {
			continue // one failure per event per call
		}
		before[seq] = r.statusOf(seq)
		f := boltstore.Failure{Seq: seq, At: now, Err: "boom", Permanent: r.rng.IntN(5) == 0}
		if r.rng.IntN(4) != 0 {
			f.NextAttemptAt = now.Add(time.Duration(r.rng.IntN(4000)) * time.Millisecond)
		}
		fs = append(fs, f)
	}
	if err := r.s.Fail(r.ctx, fs); err != nil {
		r.t.Fatalf("fail: %v", err)
	}
	r.logf("fail %+v", fs)
	for _, f := range fs {
		b := before[f.Seq]
		if b == nil {
			continue
		}
		after := r.statusOf(f.Seq)
		if b.Status != outbox.StatusPending {
			if after.Status != b.Status || after.AttemptCount != b.AttemptCount {
				r.t.Fatalf("seq %d: a failure changed a %s event", f.Seq, b.Status)
			}
			continue
		}
		want := outbox.StatusPending
		if f.Permanent || b.AttemptCount+1 >= b.MaxAttempts {
			want = outbox.StatusFailed
		}
		if after.Status != want || after.AttemptCount != b.AttemptCount+1 || after.LastError != "boom" {
			r.t.Fatalf("seq %d after failure: %s, %d attempts, want %s, %d", f.Seq, after.Status, after.AttemptCount, want, b.AttemptCount+1)
		}
	}
}

func (r *propRun) pickID() string {
	if len(r.ids) == 0 {
		return "0190a5b4-7c3e-7def-8123-456789abcdef"
	}
	return r.ids[r.rng.IntN(len(r.ids))]
}

func (r *propRun) retry() {
	// Prefer failed events, when there are any.
	id := r.pickID()
	for range 5 {
		if e, err := r.s.Get(r.ctx, id); err == nil && e.Status == outbox.StatusFailed {
			break
		}
		id = r.pickID()
	}
	b, getErr := r.s.Get(r.ctx, id)
	_, err := r.s.Retry(r.ctx, id)
	r.logf("retry %s: %v", id, err)
	switch {
	case getErr != nil:
		if !errors.Is(err, boltstore.ErrNotFound) {
			r.t.Fatalf("retry of a missing event: %v, want ErrNotFound", err)
		}
	case b.Status != outbox.StatusFailed:
		if !errors.Is(err, boltstore.ErrNotRetryable) {
			r.t.Fatalf("retry of a %s event: %v, want ErrNotRetryable", b.Status, err)
		}
	case err != nil:
		r.t.Fatalf("retry of a failed event: %v", err)
	}
}

func (r *propRun) delete() {
	id := r.pickID()
	_, getErr := r.s.Get(r.ctx, id)
	err := r.s.Delete(r.ctx, id)
	r.logf("delete %s: %v", id, err)
	if getErr != nil && !errors.Is(err, boltstore.ErrNotFound) {
		r.t.Fatalf("delete of a missing event: %v, want ErrNotFound", err)
	}
	if getErr == nil && err != nil {
		r.t.Fatalf("delete: %v", err)
	}
}

// drain publishes everything: complete what is due, retry what failed,
// complete what is processing, until nothing is left.
func (r *propRun) drain() {
	for round := 0; ; round++ {
		if round > 10000 {
			r.t.Fatalf("drain does not end: %+v", mustStats(r.t, r.s))
		}
		now := r.clk.Advance(time.Hour)
		es, _, err := r.s.Due(r.ctx, now, 1+r.rng.IntN(20), nil)
		if err != nil {
			r.t.Fatal(err)
		}
		if len(es) == 0 {
			st := mustStats(r.t, r.s)
			switch {
			case st.Processing > 0:
				ps, err := r.s.FetchByStatus(r.ctx, outbox.StatusProcessing, "", 1000)
				if err != nil {
					r.t.Fatal(err)
				}
				for _, e := range ps {
					if err := r.s.MarkCompleted(r.ctx, e.ID); err != nil {
						r.t.Fatal(err)
					}
					r.noteCompleted(e, now)
				}
			case st.Failed > 0:
				if _, err := r.s.RetryWhere(r.ctx, "", ""); err != nil {
					r.t.Fatal(err)
				}
			case st.Pending != 0:
				r.t.Fatalf("nothing due, processing or failed, but %d pending", st.Pending)
			default:
				return
			}
			continue
		}
		picked := seqs(es)
		before := map[uint64]*outbox.Event{}
		var acks []boltstore.Ack
		for _, e := range es {
			before[e.Seq] = e
			acks = append(acks, boltstore.Ack{Seq: e.Seq, At: now})
		}
		if err := r.s.Complete(r.ctx, acks); err != nil {
			r.t.Fatal(err)
		}
		r.recordCompletions(picked, before, now)
		if err := checkInvariants(r.s); err != nil {
			r.t.Fatalf("drain: %v", err)
		}
	}
}

func (r *propRun) open() {
	r.s = mustOpenPath(r.t, r.path, r.opts)
	// The properties are about the store's logic, not durability: skip the
	// fsyncs that would make this test take a minute.
	r.s.DB().NoSync = true
}

// reopen closes the store and opens it again, as a restarted process
// would: events left processing become pending (recovery).
func (r *propRun) reopen() {
	processing := mustStats(r.t, r.s).Processing
	if err := r.s.Close(); err != nil {
		r.t.Fatal(err)
	}
	// Switch the fairness now and then: Open builds or drops ready_user,
	// which the invariants check against ready.
	if r.rng.IntN(3) == 0 {
		if r.opts.Fairness == boltstore.FairnessUser {
			r.opts.Fairness = boltstore.FairnessFIFO
		} else {
			r.opts.Fairness = boltstore.FairnessUser
		}
		r.logf("fairness %s", r.opts.Fairness)
	}
	r.open()
	if st := mustStats(r.t, r.s); st.Processing != 0 {
		r.t.Fatalf("reopen left %d processing (were %d)", st.Processing, processing)
	}
	r.logf("reopen (%d processing recovered)", processing)
}

// heads returns pending heads, in or out of backoff, as the relay would see
// them in an hour.
func (r *propRun) heads() []*outbox.Event {
	es, _, err := r.s.Due(r.ctx, r.clk.Now().Add(time.Hour), 50, nil)
	if err != nil {
		r.t.Fatal(err)
	}
	return es
}

// pickMarkable prefers a head or a processing event, else any id.
func (r *propRun) pickMarkable() string {
	switch r.rng.IntN(3) {
	case 0:
		if hs := r.heads(); len(hs) > 0 {
			return hs[r.rng.IntN(len(hs))].ID
		}
	case 1:
		ps, err := r.s.FetchByStatus(r.ctx, outbox.StatusProcessing, "", 50)
		if err != nil {
			r.t.Fatal(err)
		}
		if len(ps) > 0 {
			return ps[r.rng.IntN(len(ps))].ID
		}
	}
	return r.pickID()
}

func (r *propRun) update() {
	id := r.pickID()
	b, getErr := r.s.Get(r.ctx, id)
	if getErr != nil {
		err := r.s.Update(r.ctx, &outbox.Event{ID: id, Type: "prop.event"})
		if !errors.Is(err, boltstore.ErrNotFound) {
			r.t.Fatalf("update of a missing event: %v, want ErrNotFound", err)
		}
		return
	}
	e := *b
	e.Priority = r.rng.IntN(outbox.MaxPriority + 1)
	e.MaxAttempts = 1 + r.rng.IntN(3)
	e.Payload = fmt.Appendf(nil, "updated %d", r.rng.Uint64())
	changeType := r.rng.IntN(6) == 0
	if changeType {
		e.Type = "prop.other"
	}
	err := r.s.Update(r.ctx, &e)
	r.logf("update seq %d (%s) p%d→p%d type change %v: %v", b.Seq, b.Status, b.Priority, e.Priority, changeType, err)
	var ve *outbox.ValidationError
	switch {
	case b.Status != outbox.StatusPending && b.Status != outbox.StatusFailed:
		if !errors.Is(err, boltstore.ErrWrongStatus) {
			r.t.Fatalf("update of a %s event: %v, want ErrWrongStatus", b.Status, err)
		}
	case changeType:
		if !errors.As(err, &ve) || ve.Field != "type" {
			r.t.Fatalf("update changing the type: %v, want a validation error naming type", err)
		}
	case err != nil:
		r.t.Fatalf("update: %v", err)
	default:
		after := mustGet(r.t, r.s, id)
		if after.Priority != e.Priority || string(after.Payload) != string(e.Payload) || after.Status != b.Status {
			r.t.Fatalf("after update: p%d %q %s, want p%d %q %s", after.Priority, after.Payload, after.Status, e.Priority, e.Payload, b.Status)
		}
	}
}

func (r *propRun) markProcessing() {
	id := r.pickMarkable()
	b, getErr := r.s.Get(r.ctx, id)
	err := r.s.MarkProcessing(r.ctx, id)
	r.logf("mark processing %s (%s): %v", id, describe(b), err)
	switch {
	case getErr != nil:
		if !errors.Is(err, boltstore.ErrNotFound) {
			r.t.Fatalf("mark processing of a missing event: %v", err)
		}
	case b.Status != outbox.StatusPending:
		if !errors.Is(err, boltstore.ErrWrongStatus) {
			r.t.Fatalf("mark processing of a %s event: %v, want ErrWrongStatus", b.Status, err)
		}
	case errors.Is(err, boltstore.ErrNotHead):
		if b.EntityID == "" {
			r.t.Fatalf("mark processing of an event without entity: %v", err)
		}
	case err != nil:
		r.t.Fatalf("mark processing: %v", err)
	default:
		if after := mustGet(r.t, r.s, id); after.Status != outbox.StatusProcessing {
			r.t.Fatalf("after mark processing: %s", after.Status)
		}
	}
}

func (r *propRun) markCompleted() {
	id := r.pickMarkable()
	b, getErr := r.s.Get(r.ctx, id)
	at := r.clk.Now()
	err := r.s.MarkCompleted(r.ctx, id)
	r.logf("mark completed %s (%s): %v", id, describe(b), err)
	switch {
	case getErr != nil:
		if !errors.Is(err, boltstore.ErrNotFound) {
			r.t.Fatalf("mark completed of a missing event: %v", err)
		}
	case errors.Is(err, boltstore.ErrNotHead):
		if b.Status != outbox.StatusPending || b.EntityID == "" {
			r.t.Fatalf("mark completed of a %s: %v", describe(b), err)
		}
	case err != nil:
		r.t.Fatalf("mark completed: %v", err)
	case b.Status == outbox.StatusCompleted:
		if after := mustGet(r.t, r.s, id); after.Status != outbox.StatusCompleted || !after.CompletedAt.Equal(b.CompletedAt) {
			r.t.Fatalf("marking a completed event again changed it: %s", describe(after))
		}
	default:
		after, _ := r.s.Get(r.ctx, id)
		if !r.completedNow(after) {
			r.t.Fatalf("after mark completed: %s", describe(after))
		}
		r.noteCompleted(b, at)
	}
}

func (r *propRun) markFailed() {
	id := r.pickMarkable()
	b, getErr := r.s.Get(r.ctx, id)
	err := r.s.MarkFailed(r.ctx, id, "manual")
	r.logf("mark failed %s (%s): %v", id, describe(b), err)
	switch {
	case getErr != nil:
		if !errors.Is(err, boltstore.ErrNotFound) {
			r.t.Fatalf("mark failed of a missing event: %v", err)
		}
	case b.Status == outbox.StatusCompleted:
		if !errors.Is(err, boltstore.ErrWrongStatus) {
			r.t.Fatalf("mark failed of a completed event: %v, want ErrWrongStatus", err)
		}
	case errors.Is(err, boltstore.ErrNotHead):
		if b.Status != outbox.StatusPending || b.EntityID == "" {
			r.t.Fatalf("mark failed of a %s: %v", describe(b), err)
		}
	case err != nil:
		r.t.Fatalf("mark failed: %v", err)
	default:
		if after := mustGet(r.t, r.s, id); after.Status != outbox.StatusFailed || after.LastError != "manual" {
			r.t.Fatalf("after mark failed: %s %q", describe(after), after.LastError)
		}
	}
}

func (r *propRun) userStats(user string) boltstore.Stats {
	st, err := r.s.UserStats(r.ctx, user)
	if err != nil {
		r.t.Fatal(err)
	}
	return st
}

func (r *propRun) retryWhere() {
	user := []string{"", "u0", "u1", "u2"}[r.rng.IntN(4)]
	if r.rng.IntN(8) == 0 {
		if _, err := r.s.RetryWhere(r.ctx, outbox.StatusPending, user); !errors.Is(err, boltstore.ErrNotRetryable) {
			r.t.Fatalf("retry where status pending: %v, want ErrNotRetryable", err)
		}
		return
	}
	want := r.userStats(user).Failed
	st := outbox.StatusFailed
	if r.rng.IntN(2) == 0 {
		st = ""
	}
	n, err := r.s.RetryWhere(r.ctx, st, user)
	r.logf("retry where user %q: %d, %v", user, n, err)
	if err != nil || int64(n) != want {
		r.t.Fatalf("retry where user %q: %d, %v; %d were failed", user, n, err, want)
	}
	if f := r.userStats(user).Failed; f != 0 {
		r.t.Fatalf("retry where user %q left %d failed", user, f)
	}
}

// completedBefore counts the completed events completed before t.
func (r *propRun) completedBefore(t time.Time) int {
	es, err := r.s.FetchByStatus(r.ctx, outbox.StatusCompleted, "", 1<<20)
	if err != nil {
		r.t.Fatal(err)
	}
	n := 0
	for _, e := range es {
		if e.CompletedAt.Before(t) {
			n++
		}
	}
	return n
}

func (r *propRun) deleteCompletedBefore() {
	before := r.clk.Now().Add(-time.Duration(r.rng.IntN(6000)) * time.Millisecond)
	limit := 1 + r.rng.IntN(4)
	old := r.completedBefore(before)
	n, err := r.s.DeleteCompletedBefore(r.ctx, before, limit)
	r.logf("delete completed before %v max %d: %d, %v", before.Sub(t0), limit, n, err)
	if err != nil || n != min(old, limit) {
		r.t.Fatalf("delete completed before: %d, %v; want %d", n, err, min(old, limit))
	}
	if left := r.completedBefore(before); left != old-n {
		r.t.Fatalf("delete completed before: %d old ones left, want %d", left, old-n)
	}
}

// entityEvents counts the stored events of entities.
func (r *propRun) entityEvents(ids ...string) int {
	n := 0
	for _, id := range ids {
		if id == "" {
			continue
		}
		es, err := r.s.FetchByEntity(r.ctx, id, "")
		if err != nil {
			r.t.Fatal(err)
		}
		n += len(es)
	}
	return n
}

func (r *propRun) deleteByEntity() {
	var ids []string
	for _, id := range []string{"", "A", "B", "C", "D", "E", "Z"} {
		if r.rng.IntN(3) == 0 {
			ids = append(ids, id)
		}
	}
	want := r.entityEvents(ids...)
	n, err := r.s.DeleteByEntityIDs(r.ctx, ids)
	r.logf("delete entities %q: %d, %v", ids, n, err)
	if err != nil || n != want {
		r.t.Fatalf("delete entities %q: %d, %v; want %d", ids, n, err, want)
	}
	if left := r.entityEvents(ids...); left != 0 {
		r.t.Fatalf("delete entities %q left %d events", ids, left)
	}
}

func (r *propRun) deleteUser() {
	user := propUsers[r.rng.IntN(len(propUsers))]
	want := r.userStats(user).Total
	n, err := r.s.DeleteUser(r.ctx, user)
	r.logf("delete user %s: %d, %v", user, n, err)
	if err != nil || int64(n) != want {
		r.t.Fatalf("delete user %s: %d, %v; want %d", user, n, err, want)
	}
	if st := r.userStats(user); st.Total != 0 {
		r.t.Fatalf("delete user %s left %d events", user, st.Total)
	}
}

func (r *propRun) sweep() {
	before := r.clk.Now().Add(-r.opts.Retention)
	want := r.completedBefore(before)
	n, err := r.s.SweepOnce(r.ctx)
	r.logf("sweep: %d deleted, %v", n, err)
	if err != nil || n != want {
		r.t.Fatalf("sweep: %d deleted, %v; want %d", n, err, want)
	}
}

func (r *propRun) cleanupOrphans() {
	alive := map[string]bool{}
	var dead []string
	for _, id := range []string{"A", "B", "C", "D", "E"} {
		if r.rng.IntN(3) == 0 {
			dead = append(dead, id)
		} else {
			alive[id] = true
		}
	}
	want := r.entityEvents(dead...)
	n, err := r.s.CleanupOrphans(r.ctx, func(id string) bool { return alive[id] })
	r.logf("cleanup orphans %q: %d, %v", dead, n, err)
	if err != nil || n != want {
		r.t.Fatalf("cleanup orphans %q: %d, %v; want %d", dead, n, err, want)
	}
}

func (r *propRun) reset() {
	want := mustStats(r.t, r.s).Total
	n, err := r.s.Reset(r.ctx)
	r.logf("reset: %d, %v", n, err)
	if err != nil || int64(n) != want {
		r.t.Fatalf("reset: %d, %v; want %d", n, err, want)
	}
	if st := mustStats(r.t, r.s); st.Total != 0 {
		r.t.Fatalf("reset left %d events", st.Total)
	}
}

// list pages through a random query with a small limit and compares the
// events with those of the records that match, in the promised order.
func (r *propRun) list() {
	statuses := []outbox.Status{"", outbox.StatusPending, outbox.StatusProcessing, outbox.StatusCompleted, outbox.StatusFailed}
	q := boltstore.Query{
		Status: statuses[r.rng.IntN(len(statuses))],
		Limit:  1 + r.rng.IntN(5),
	}
	if r.rng.IntN(2) == 0 {
		q.UserID = propUsers[r.rng.IntN(len(propUsers))]
	}
	if r.rng.IntN(3) == 0 {
		q.EntityID = propEntities[r.rng.IntN(len(propEntities))]
	}
	if r.rng.IntN(3) == 0 {
		q.Type = []string{"prop.event", "prop.other"}[r.rng.IntN(2)]
	}
	var want []*outbox.Event
	for _, id := range r.ids {
		if e, err := r.s.Get(r.ctx, id); err == nil && matches(q, e) {
			want = append(want, e)
		}
	}
	slices.SortFunc(want, listOrder(q))
	var got []*outbox.Event
	for pages := 0; ; pages++ {
		p, err := r.s.List(r.ctx, q)
		if err != nil || len(p.Events) > q.Limit || pages > 10_000 {
			r.t.Fatalf("list %+v: %d events, %v", q, len(p.Events), err)
		}
		got = append(got, p.Events...)
		if p.NextCursor == "" {
			break
		}
		q.Cursor = p.NextCursor
	}
	r.logf("list %+v: %d events", q, len(got))
	if !slices.Equal(ids(got), ids(want)) {
		r.t.Fatalf("list %+v = %v, want %v", q, label(got), label(want))
	}
}
