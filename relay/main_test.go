package relay_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when a goroutine outlives them: a Run
// whose waiter or completer did not end, a connection or a store left open.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
