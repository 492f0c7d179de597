package boltstore

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/google/uuid"
)

// A retry multiplier that is not a finite number can never have been
// written by the store (RetryPolicy.Validate refuses it) and never compares
// equal to itself: a record carrying one is corrupt, in either layout. Found
// by FuzzRecordCodec in CI.
func TestRecordWithNonFiniteMultiplierIsCorrupt(t *testing.T) {
	for _, m := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		e := &outbox.Event{ID: uuid.NewString(), Type: "t", Status: outbox.StatusPending, Seq: 1, MaxAttempts: 5,
			CreatedAt: time.Now(), AcceptedAt: time.Now(),
			Retry: &outbox.RetryPolicy{InitialInterval: time.Second, MaxInterval: time.Minute, Multiplier: m}}
		if _, err := decodeEvent(1, encodeEvent(nil, e)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("layout 3, multiplier %g: got %v, want ErrCorrupt", m, err)
		}
		if _, err := decodeV2(encodeV2(nil, e)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("layout 2, multiplier %g: got %v, want ErrCorrupt", m, err)
		}
	}
}
