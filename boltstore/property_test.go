package boltstore_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
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
}

func runProperties(t *testing.T, seed uint64, steps int) {
	clk := newClock()
	r := &propRun{
		t: t, ctx: context.Background(), rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), clk: clk,
		s:     mustOpen(t, &boltstore.Options{Now: clk.Now, MaxBatchDelay: time.Millisecond}),
		bySeq: map[uint64]string{}, completed: map[string][]uint64{},
	}
	// The properties are about the store's logic, not durability: skip the
	// fsyncs that would make this test take a minute.
	r.s.DB().NoSync = true
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

var propEntities = []string{"", "", "A", "B", "C", "D", "E"}

func (r *propRun) newEvents() []*outbox.Event {
	es := make([]*outbox.Event, 1+r.rng.IntN(3))
	for i := range es {
		es[i] = &outbox.Event{
			Type:        "prop.event",
			EntityID:    propEntities[r.rng.IntN(len(propEntities))],
			UserID:      fmt.Sprint("u", r.rng.IntN(3)),
			Priority:    r.rng.IntN(outbox.MaxPriority + 1),
			MaxAttempts: 1 + r.rng.IntN(3),
			Payload:     fmt.Appendf(nil, "%d", r.rng.Uint64()),
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
		r.logf("enqueue seq %d entity %q #%d p%d max %d", e.Seq, e.EntityID, e.EntitySeq, e.Priority, e.MaxAttempts)
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
	if after := mustStats(r.t, r.s); after != before {
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
	if !slices.IsSortedFunc(es, byPriority) {
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
	r.recordCompletions(picked, before)
}

func (r *propRun) recordCompletions(picked []uint64, before map[uint64]*outbox.Event) {
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
			if after.Status != outbox.StatusCompleted || after.AttemptCount != b.AttemptCount+1 {
				r.t.Fatalf("seq %d: pending → %s with %d attempts after an ack", seq, after.Status, after.AttemptCount)
			}
			if b.EntityID != "" {
				r.completed[b.EntityID] = append(r.completed[b.EntityID], b.EntitySeq)
			}
		case after.Status != b.Status || after.AttemptCount != b.AttemptCount:
			r.t.Fatalf("seq %d: an ack changed a %s event to %s", seq, b.Status, after.Status)
		}
	}
}

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

// drain publishes everything: complete what is due, retry what failed, until
// nothing is left.
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
			if st.Failed == 0 {
				if st.Pending != 0 {
					r.t.Fatalf("nothing due and nothing failed, but %d pending", st.Pending)
				}
				break
			}
			for _, id := range r.ids {
				if e, err := r.s.Get(r.ctx, id); err == nil && e.Status == outbox.StatusFailed {
					if _, err := r.s.Retry(r.ctx, id); err != nil {
						r.t.Fatal(err)
					}
				}
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
		r.recordCompletions(picked, before)
		if err := checkInvariants(r.s); err != nil {
			r.t.Fatalf("drain: %v", err)
		}
	}
}
