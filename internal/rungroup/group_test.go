package rungroup_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/fitiqcore/outbox/internal/rungroup"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var errA, errB = errors.New("a"), errors.New("b")

// blocker is an actor that runs until it is interrupted, then returns ret.
func blocker(g *rungroup.Group, ret error) {
	stop := make(chan struct{})
	var once sync.Once
	g.Add(func() error { <-stop; return ret }, func(error) { once.Do(func() { close(stop) }) })
}

// TestRunError: the first actor to return stops the others; Run returns the
// first non-nil error in the order the actors returned.
func TestRunError(t *testing.T) {
	for _, tc := range []struct {
		name string
		// first is what the actor that returns by itself returns; rest is
		// what each interrupted actor returns.
		first error
		rest  []error
		want  error
	}{
		{"first error wins", errA, []error{errB, nil}, errA},
		{"first error wins over nils", errA, []error{nil, nil}, errA},
		{"nil first, then an interrupted actor's error", nil, []error{nil, errB}, errB},
		{"all nil", nil, []error{nil, nil}, nil},
		{"alone", errA, nil, errA},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var g rungroup.Group
			for _, e := range tc.rest {
				blocker(&g, e)
			}
			g.Add(func() error { return tc.first }, func(error) {})
			if err := g.Run(); !errors.Is(err, tc.want) {
				t.Fatalf("Run = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestRunInterruptsAllInOrder: every actor is interrupted, in the order
// added, with the error of the first to return, and Run returns only when
// every execute has.
func TestRunInterruptsAllInOrder(t *testing.T) {
	const n = 5
	var g rungroup.Group
	var mu sync.Mutex
	var order []int
	var got []error
	var returned atomic.Int32
	for i := range n {
		stop := make(chan struct{})
		var once sync.Once
		g.Add(func() error {
			if i == 2 { // the one that returns by itself
				returned.Add(1)
				return errA
			}
			<-stop
			returned.Add(1)
			return nil
		}, func(err error) {
			mu.Lock()
			order, got = append(order, i), append(got, err)
			mu.Unlock()
			once.Do(func() { close(stop) })
		})
	}
	if err := g.Run(); !errors.Is(err, errA) {
		t.Fatalf("Run = %v, want %v", err, errA)
	}
	if r := returned.Load(); r != n {
		t.Errorf("Run returned with %d of %d actors returned", r, n)
	}
	if want := []int{0, 1, 2, 3, 4}; !slices.Equal(order, want) {
		t.Errorf("interrupted in order %v, want %v", order, want)
	}
	for i, err := range got {
		if !errors.Is(err, errA) {
			t.Errorf("interrupt %d got %v, want the first error %v", i, err, errA)
		}
	}
}

// TestRunInterruptBlocks: an interrupt that waits for its actor to stop
// holds back the next interrupt, as `relay serve` stops ingest before it
// drains the relay.
func TestRunInterruptBlocks(t *testing.T) {
	var g rungroup.Group
	ingestCtx, stopIngest := context.WithCancel(context.Background())
	ingestDone := make(chan struct{})
	g.Add(func() error {
		defer close(ingestDone)
		<-ingestCtx.Done()
		return nil
	}, func(error) {
		stopIngest()
		<-ingestDone // as http.Server.Shutdown waits for its requests
	})
	drainCtx, drain := context.WithCancel(context.Background())
	var ingestStoppedFirst bool
	g.Add(func() error {
		<-drainCtx.Done()
		return nil
	}, func(error) {
		select {
		case <-ingestDone:
			ingestStoppedFirst = true
		default:
		}
		drain()
	})
	g.Add(func() error { return nil }, func(error) {}) // the signal
	if err := g.Run(); err != nil {
		t.Fatal(err)
	}
	if !ingestStoppedFirst {
		t.Error("the relay was interrupted before ingest had stopped")
	}
}

func TestRunEmpty(t *testing.T) {
	var g rungroup.Group
	if err := g.Run(); err != nil {
		t.Fatal(err)
	}
}

func ExampleGroup() {
	var g rungroup.Group
	ctx, cancel := context.WithCancel(context.Background())
	g.Add(func() error {
		<-ctx.Done() // a server, a relay: runs until interrupted
		fmt.Println("worker stopped")
		return nil
	}, func(error) { cancel() })
	g.Add(func() error {
		return errors.New("signal received")
	}, func(error) {})
	fmt.Println("group:", g.Run())
	// Output:
	// worker stopped
	// group: signal received
}
