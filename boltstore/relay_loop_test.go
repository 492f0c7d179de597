package boltstore_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/fitiqcore/outbox/boltstore"
)

// TestConcurrentProducersAndRelay runs producers against a relay-like loop
// that waits on Notify, takes what is due and completes it, all at once: every
// event is completed once, and each entity's in entity_seq order.
func TestConcurrentProducersAndRelay(t *testing.T) {
	const producers, perProducer, entities = 8, 60, 5
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := mustOpen(t, nil)

	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := range perProducer {
				e := ev("mood.updated", fmt.Sprint("ent-", (p+i)%entities), (p+i)%10)
				if i%7 == 0 {
					e.EntityID = ""
				}
				if _, err := s.Enqueue(ctx, e); err != nil {
					t.Errorf("producer %d: %v", p, err)
					return
				}
			}
		})
	}

	order := map[string][]uint64{}
	seen := map[uint64]bool{}
	total := producers * perProducer
	poll := time.NewTicker(20 * time.Millisecond) // a lost wake-up would only slow the loop down
	defer poll.Stop()
	for len(seen) < total {
		es, _, err := s.Due(ctx, time.Now(), 50, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(es) == 0 {
			select {
			case <-s.Notify():
			case <-poll.C:
			case <-ctx.Done():
				t.Fatalf("%d of %d events completed before the deadline", len(seen), total)
			}
			continue
		}
		acks := make([]boltstore.Ack, len(es))
		for i, e := range es {
			if seen[e.Seq] {
				t.Fatalf("seq %d due again after its completion", e.Seq)
			}
			seen[e.Seq] = true
			if e.EntityID != "" {
				order[e.EntityID] = append(order[e.EntityID], e.EntitySeq)
			}
			acks[i] = boltstore.Ack{Seq: e.Seq, At: time.Now()}
		}
		if err := s.Complete(ctx, acks); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	for ent, o := range order {
		for i, v := range o {
			if v != uint64(i+1) {
				t.Fatalf("entity %s published in order %v, want 1, 2, 3, ...", ent, o)
			}
		}
	}
	if st := mustStats(t, s); tallyOf(st) != tallyOf(boltstore.Stats{Total: int64(total), Completed: int64(total)}) {
		t.Fatalf("Stats = %+v", st)
	}
}
