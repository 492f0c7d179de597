package outbox_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
	"github.com/fitiqcore/outbox/publisher"
)

// TestOutcomeVocabularyIsShared: the store's and the publisher's names for
// the outcome vocabulary are the root package's own values, so that the
// relay, which imports neither, branches on what they return.
func TestOutcomeVocabularyIsShared(t *testing.T) {
	for _, tt := range []struct {
		name      string
		got, want error
	}{
		{"boltstore.ErrNotFound", boltstore.ErrNotFound, outbox.ErrNotFound},
		{"publisher.ErrUnavailable", publisher.ErrUnavailable, outbox.ErrUnavailable},
		{"publisher.ErrPermanent", publisher.ErrPermanent, outbox.ErrPermanent},
		{"publisher.ErrUnknownOutcome", publisher.ErrUnknownOutcome, outbox.ErrUnknownOutcome},
	} {
		if tt.got != tt.want {
			t.Errorf("%s is %v, want the value %v", tt.name, tt.got, tt.want)
		}
	}
	// boltstore.Ack and Failure are aliases: the same types.
	var _ []outbox.Ack = []boltstore.Ack{{Seq: 1}}
	var _ []outbox.Failure = []boltstore.Failure{{Seq: 1}}
}

// TestClassificationSentinelsAreDistinct: no classification matches another.
func TestClassificationSentinelsAreDistinct(t *testing.T) {
	all := []error{outbox.ErrNotFound, outbox.ErrUnavailable, outbox.ErrPermanent, outbox.ErrUnknownOutcome, outbox.ErrRejected}
	for i, a := range all {
		for j, b := range all {
			if (i == j) != errors.Is(a, b) {
				t.Errorf("errors.Is(%v, %v) = %v", a, b, errors.Is(a, b))
			}
		}
	}
}

// The relay's reading of a classified publish error: an outage first (no
// attempt consumed, even when the outcome is unknown too), then the rest.
func Example_classification() {
	for _, err := range []error{
		fmt.Errorf("%w: %w: nats: connection disconnected", outbox.ErrUnavailable, outbox.ErrUnknownOutcome),
		fmt.Errorf("%w: nats: message too large", outbox.ErrPermanent),
		fmt.Errorf("%w: nats: timeout", outbox.ErrUnknownOutcome),
		fmt.Errorf("%w: nats: no response from stream", outbox.ErrRejected),
	} {
		switch {
		case errors.Is(err, outbox.ErrUnavailable):
			fmt.Println("unavailable: publish again once the broker is back, no attempt consumed")
		case errors.Is(err, outbox.ErrPermanent):
			fmt.Println("permanent: fail the event now")
		case errors.Is(err, outbox.ErrUnknownOutcome):
			fmt.Println("unknown: publish again within the duplicate window, never fail it for this")
		case errors.Is(err, outbox.ErrRejected):
			fmt.Println("rejected: back off, fail at max_attempts")
		}
	}
	// Output:
	// unavailable: publish again once the broker is back, no attempt consumed
	// permanent: fail the event now
	// unknown: publish again within the duplicate window, never fail it for this
	// rejected: back off, fail at max_attempts
}
