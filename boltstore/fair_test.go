package boltstore_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
	bolt "go.etcd.io/bbolt"
)

// drainBatches plays the relay: Due batches of n, each completed before the
// next, until the event with id comes back; it returns the batch (1-based)
// it came in.
func drainBatches(t *testing.T, s *boltstore.Store, n int, id string) int {
	t.Helper()
	ctx := context.Background()
	for batch := 1; ; batch++ {
		es, _, err := s.Due(ctx, time.Now(), n, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(es) == 0 {
			t.Fatalf("drained without seeing %s", id)
		}
		acks := make([]boltstore.Ack, len(es))
		for i, e := range es {
			if e.ID == id {
				return batch
			}
			acks[i] = boltstore.Ack{Seq: e.Seq, At: time.Now()}
		}
		if err := s.Complete(ctx, acks); err != nil {
			t.Fatal(err)
		}
	}
}

func enqueueTx(t *testing.T, s *boltstore.Store, events []*outbox.Event) {
	t.Helper()
	if err := s.DB().Update(func(tx *bolt.Tx) error {
		_, err := s.EnqueueTx(tx, events...)
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// One user's backlog of 3000 events, then another user's one event: FIFO
// hands it out after the backlog (batch 31 of 100), user fairness in the
// first batch.
func TestFairnessBacklogDoesNotDelayOthers(t *testing.T) {
	for _, tt := range []struct {
		fairness boltstore.Fairness
		want     int
	}{
		{boltstore.FairnessFIFO, 31},
		{boltstore.FairnessUser, 1},
	} {
		t.Run(string(tt.fairness), func(t *testing.T) {
			s := mustOpen(t, &boltstore.Options{Fairness: tt.fairness})
			var backlog []*outbox.Event
			for i := range 3000 {
				backlog = append(backlog, &outbox.Event{Type: "resync.item", UserID: "big", EntityID: fmt.Sprint("item-", i)})
			}
			enqueueTx(t, s, backlog)
			lone := &outbox.Event{Type: "mood.logged", UserID: "small", EntityID: "mood-1"}
			enqueueTx(t, s, []*outbox.Event{lone})
			if got := drainBatches(t, s, 100, lone.ID); got != tt.want {
				t.Errorf("the lone event came in batch %d, want %d", got, tt.want)
			}
		})
	}
}

// More users than a batch holds, each with a backlog: the batches go round
// the users (every user once before any twice), priorities come first, and
// each entity's events still come in order.
func TestFairnessRoundRobin(t *testing.T) {
	s := mustOpen(t, &boltstore.Options{Fairness: boltstore.FairnessUser})
	const users, each = 250, 3
	var events []*outbox.Event
	for range each {
		for u := range users {
			// One entity per user: its three events are a chain.
			events = append(events, &outbox.Event{Type: "t.x", UserID: fmt.Sprintf("u%03d", u), EntityID: fmt.Sprintf("e%03d", u)})
		}
	}
	urgent := &outbox.Event{Type: "t.urgent", UserID: "u000", EntityID: "urgent", Priority: 9}
	events = append(events, urgent)
	enqueueTx(t, s, events)
	ctx := context.Background()
	served := map[string]int{}
	lastSeq := map[string]uint64{}
	for batch := 0; ; batch++ {
		es, _, err := s.Due(ctx, time.Now(), 100, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(es) == 0 {
			break
		}
		if batch == 0 && es[0].ID != urgent.ID {
			t.Errorf("batch 1 starts with %s, want the priority 9 event", es[0].Type)
		}
		acks := make([]boltstore.Ack, len(es))
		for i, e := range es {
			if e.Priority == 0 {
				round := served[e.UserID]
				for u, n := range served {
					if n < round {
						t.Fatalf("batch %d: user %s served a %d. time while %s had %d", batch+1, e.UserID, round+1, u, n)
					}
				}
				served[e.UserID]++
			}
			if e.EntitySeq != lastSeq[e.EntityID]+1 {
				t.Fatalf("entity %s: #%d after #%d", e.EntityID, e.EntitySeq, lastSeq[e.EntityID])
			}
			lastSeq[e.EntityID] = e.EntitySeq
			acks[i] = boltstore.Ack{Seq: e.Seq, At: time.Now()}
		}
		if err := s.Complete(ctx, acks); err != nil {
			t.Fatal(err)
		}
	}
	if len(served) != users {
		t.Errorf("served %d users, want %d", len(served), users)
	}
	for u, n := range served {
		if n != each {
			t.Errorf("user %s served %d times, want %d", u, n, each)
		}
	}
}

// Opening a store with FairnessUser files its ready events by user, opening
// it FIFO again drops that index, and a third open rebuilds it: the
// invariants (checked at cleanup and here) hold the index to the ready set.
func TestFairnessSwitchOnOpen(t *testing.T) {
	path := t.TempDir() + "/outbox.db"
	s := mustOpenPath(t, path, nil)
	var events []*outbox.Event
	for i := range 50 {
		events = append(events, &outbox.Event{Type: "t.x", UserID: fmt.Sprint("u", i%5), EntityID: fmt.Sprint("e", i%7)})
	}
	enqueueTx(t, s, events)
	hasIndex := func(s *boltstore.Store) bool {
		var ok bool
		s.DB().View(func(tx *bolt.Tx) error { ok = tx.Bucket([]byte("ready_user")) != nil; return nil })
		return ok
	}
	for i, f := range []boltstore.Fairness{boltstore.FairnessUser, boltstore.FairnessFIFO, boltstore.FairnessUser} {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = mustOpenPath(t, path, &boltstore.Options{Fairness: f})
		if hasIndex(s) != (f == boltstore.FairnessUser) {
			t.Fatalf("open %d (%s): ready_user present = %v", i+1, f, hasIndex(s))
		}
		if err := checkInvariants(s); err != nil {
			t.Fatalf("open %d (%s): %v", i+1, f, err)
		}
		// Work a little in each mode: a batch completed.
		es, _, err := s.Due(context.Background(), time.Now(), 5, nil)
		if err != nil || len(es) == 0 {
			t.Fatalf("due: %d, %v", len(es), err)
		}
		acks := []boltstore.Ack{{Seq: es[0].Seq, At: time.Now()}}
		if err := s.Complete(context.Background(), acks); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFairnessOption(t *testing.T) {
	o := boltstore.Options{Fairness: "round-robin"}
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "Fairness") {
		t.Errorf("Validate: %v, want an error naming Fairness", err)
	}
}
