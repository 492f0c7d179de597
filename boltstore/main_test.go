package boltstore_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when a goroutine outlives them (a
// pending Batch, a store left open).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
