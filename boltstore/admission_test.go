package boltstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
	bolt "go.etcd.io/bbolt"
)

// TestAdmission fills the store to each high-water mark: past it, new
// events are refused with a FullError naming the mark (both through Enqueue
// and EnqueueTx), re-posts of stored events are still answered, nothing
// stored is dropped, and draining lets events in again.
func TestAdmission(t *testing.T) {
	tests := []struct {
		name  string
		opts  boltstore.Options
		fill  int           // events to enqueue one call at a time before the mark is passed
		after time.Duration // clock advance after filling
		mark  string
	}{
		{"max_pending", boltstore.Options{MaxPending: 3}, 3, 0, "max_pending"},
		{"max_bytes", boltstore.Options{MaxBytes: 500}, 2, 0, "max_bytes"}, // records of 300+ bytes
		{"max_pending_age", boltstore.Options{MaxPendingAge: time.Minute}, 1, time.Minute + time.Nanosecond, "max_pending_age"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			clk := newClock()
			tt.opts.Now = clk.Now
			s := mustOpen(t, &tt.opts)
			var stored []*outbox.Event
			for range tt.fill {
				e := ev("adm", "", 0)
				e.Payload = make([]byte, 200)
				mustEnqueue(t, s, e)
				stored = append(stored, e)
			}
			clk.Advance(tt.after)
			check := func(err error) {
				t.Helper()
				var full *boltstore.FullError
				if !errors.Is(err, boltstore.ErrOutboxFull) || !errors.As(err, &full) {
					t.Fatalf("err = %v, want a FullError", err)
				}
				if full.Mark != tt.mark || full.RetryAfter <= 0 || full.Value < full.Limit {
					t.Errorf("FullError %+v, want mark %s and a retry hint", full, tt.mark)
				}
			}
			_, err := s.Enqueue(ctx, ev("adm", "", 0))
			check(err)
			err = s.DB().Update(func(tx *bolt.Tx) error {
				_, err := s.EnqueueTx(tx, ev("adm", "", 0))
				return err
			})
			check(err)
			// One new event among stored ones: the whole call is refused.
			again := *stored[0]
			_, err = s.Enqueue(ctx, &again, ev("adm", "", 0))
			check(err)
			// Re-posts of stored events are answered as usual.
			again = *stored[0]
			again.Seq, again.Status = 0, ""
			if n, err := s.Enqueue(ctx, &again); err != nil || n != 0 || again.Seq != stored[0].Seq {
				t.Errorf("re-post while full: %d, seq %d, %v", n, again.Seq, err)
			}
			changed := *stored[0]
			changed.Payload = []byte("other")
			if _, err := s.Enqueue(ctx, &changed); !errors.Is(err, boltstore.ErrDuplicate) {
				t.Errorf("conflicting re-post while full: %v, want ErrDuplicate", err)
			}
			if st := mustStats(t, s); st.Pending != int64(tt.fill) {
				t.Errorf("pending %d, want the %d accepted", st.Pending, tt.fill)
			}
			// Draining one event lets new ones in.
			complete(t, s, clk.Now(), stored[0])
			if tt.name == "max_bytes" {
				if _, err := s.DeleteCompletedBefore(ctx, clk.Now().Add(time.Second), 0); err != nil {
					t.Fatal(err)
				}
			}
			mustEnqueue(t, s, ev("adm", "", 0))
			assertInvariants(t, s)
		})
	}
}

func TestAdmissionOff(t *testing.T) {
	s := mustOpen(t, nil)
	s.DB().NoSync = true
	enqueueMany(t, s, 2000, func(int) *outbox.Event { return ev("adm", "", 0) })
	mustEnqueue(t, s, ev("adm", "", 0))
}
