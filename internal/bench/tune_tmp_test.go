package bench

import (
	"context"
	"testing"
	"time"
)

func TestTuneTmp(t *testing.T) {
	for _, c := range []struct {
		n int
		d time.Duration
	}{{64, time.Millisecond}, {64, 2 * time.Millisecond}, {32, time.Millisecond}, {128, time.Millisecond}, {1000, time.Millisecond}, {1000, 2 * time.Millisecond}, {64, 500 * time.Microsecond}, {1000, 10 * time.Millisecond}} {
		bboltBatchSize, bboltBatchDelay = c.n, c.d
		for range 2 {
			res, err := Run(context.Background(), Options{Only: []string{"bbolt_ceiling"}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d %s: %.0f", c.n, c.d, res.BboltCeiling)
		}
	}
}
