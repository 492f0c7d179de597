package poll_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/fitiqcore/outbox/internal/poll"
)

func TestWithin(t *testing.T) {
	var n atomic.Int32
	if !poll.Within(time.Second, func() bool { return n.Add(1) >= 3 }) || n.Load() != 3 {
		t.Errorf("a condition that holds on the third poll: polled %d times", n.Load())
	}
	start := time.Now()
	if poll.Within(50*time.Millisecond, func() bool { return false }) {
		t.Error("a condition that never holds reported true")
	}
	if took := time.Since(start); took < 50*time.Millisecond {
		t.Errorf("gave up after %s, before the deadline", took)
	}
}
