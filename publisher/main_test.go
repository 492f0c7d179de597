package publisher_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when a goroutine outlives them: a
// connection left open, a read-back consumer, an adapter of ViaJetStream's
// futures.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
