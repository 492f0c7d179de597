// Package poll is the tests' one way to wait for a condition: poll it, with a
// deadline, never a bare sleep standing in for synchronisation.
package poll

import (
	"testing"
	"time"
)

// Interval is how often a condition is polled.
const Interval = 5 * time.Millisecond

// Within polls cond until it holds, and reports true, or until within has
// passed, and reports false.
func Within(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(Interval)
	}
	return true
}

// Until polls cond until it holds; when within passes first, it fails t,
// naming what was awaited.
func Until(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Within(within, cond) {
		t.Fatalf("not within %s: %s", within, what)
	}
}
