//go:build unix

package boltstore_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
	bolt "go.etcd.io/bbolt"
)

// crashChildEnv names the store file the child process writes to.
const crashChildEnv = "BOLTSTORE_CRASH_CHILD"

// TestCrashRecount runs this test binary as a child process that writes to
// a store as fast as it can (producers, a relay loop, an operator's bulk
// operations, the retention sweep) with real fsyncs, SIGKILLs it at a random
// moment, reopens the file and recounts every statistic and index against
// the records (checkInvariants) and checks bbolt's own consistency. Five
// rounds on the same file, each continuing from the state the last kill
// left. Every event the child saw enqueued (Enqueue returned) of the user
// "durable", which it never deletes, must have survived.
func TestCrashRecount(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	path := filepath.Join(t.TempDir(), "outbox.db")
	rng := rand.New(rand.NewPCG(1, 2))
	var durable []string
	for round := range 5 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+path, fmt.Sprintf("BOLTSTORE_CRASH_SEED=%d", round))
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 1024)
		var readers sync.WaitGroup
		readers.Go(func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		})
		// Wait until the child is writing, then let it run a while.
		deadline := time.After(30 * time.Second)
	wait:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("round %d: the child ended before it was ready", round)
				}
				if l == "ready" {
					break wait
				}
				if id, ok := strings.CutPrefix(l, "E "); ok {
					durable = append(durable, id)
				}
			case <-deadline:
				cmd.Process.Kill()
				t.Fatalf("round %d: the child is not ready after 30s", round)
			}
		}
		time.Sleep(time.Duration(200+rng.IntN(600)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		for l := range lines {
			if id, ok := strings.CutPrefix(l, "E "); ok {
				durable = append(durable, id)
			}
		}
		readers.Wait()
		err = cmd.Wait()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: child ended with %v, want killed", round, err)
		}

		checkFile(t, path) // bbolt's own check, before the store's recovery
		processing := rawProcessing(t, path)
		// A frozen clock: the recount compares stale counts read at
		// different moments.
		opts := crashOptions()
		frozen := time.Now()
		opts.Now = func() time.Time { return frozen }
		s, err := boltstore.Open(path, opts)
		if err != nil {
			t.Fatalf("round %d: reopen after SIGKILL: %v", round, err)
		}
		st, _ := s.Stats(context.Background())
		ierr := checkInvariants(s)
		for _, id := range durable {
			if _, err := s.Get(context.Background(), id); err != nil {
				ierr = errors.Join(ierr, fmt.Errorf("durable event %s lost: %w", id, err))
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if ierr != nil {
			t.Fatalf("round %d, after SIGKILL: %v", round, ierr)
		}
		t.Logf("round %d: killed with %d events (%d pending, %d processing recovered, %d failed, %d stale), %d durable ids checked",
			round, st.Total, st.Pending, processing, st.Failed, st.Stale, len(durable))
		if st.Processing != 0 {
			t.Errorf("round %d: %d events still processing after recovery", round, st.Processing)
		}
	}
	if len(durable) == 0 {
		t.Fatal("the children reported no enqueued events")
	}
}

// rawProcessing reads the processing counter of a closed store file.
func rawProcessing(t *testing.T, path string) int64 {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	raw, err := readRaw(db)
	if err != nil {
		t.Fatal(err)
	}
	return raw.counts.status[statusCode[outbox.StatusProcessing]]
}

func crashOptions() *boltstore.Options {
	return &boltstore.Options{StaleAfter: 50 * time.Millisecond, Retention: -1, Timeout: 5 * time.Second}
}

// crashChild is the child's writer loop: it never returns normally, the
// parent kills it.
func crashChild(path string) int {
	s, err := boltstore.Open(path, crashOptions())
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	var seed uint64
	fmt.Sscan(os.Getenv("BOLTSTORE_CRASH_SEED"), &seed)
	ctx := context.Background()
	var mu sync.Mutex // stdout lines
	say := func(format string, args ...any) {
		mu.Lock()
		fmt.Printf(format+"\n", args...)
		mu.Unlock()
	}
	die := func(err error) {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(3)
	}
	users := []string{"", "durable", "u1", "u-del"}
	entities := []string{"", "", "A", "B", "C", "del-1", "del-2"}
	// Producers, group-committed.
	for p := range 4 {
		go func() {
			rng := rand.New(rand.NewPCG(seed, uint64(p)))
			for {
				es := make([]*outbox.Event, 1+rng.IntN(3))
				for i := range es {
					e := &outbox.Event{
						Type: "crash.event", UserID: users[rng.IntN(len(users))], Priority: rng.IntN(10),
						MaxAttempts: 1 + rng.IntN(3), Payload: make([]byte, rng.IntN(300)),
					}
					if e.UserID != "durable" {
						e.EntityID = entities[rng.IntN(len(entities))]
					}
					es[i] = e
				}
				if _, err := s.Enqueue(ctx, es...); err != nil {
					die(err)
				}
				for _, e := range es {
					if e.UserID == "durable" {
						say("E %s", e.ID)
					}
				}
			}
		}()
	}
	// The retention sweep (here: the stale sweep only).
	go func() {
		if err := s.RunRetention(ctx, 20*time.Millisecond); err != nil {
			die(err)
		}
	}()
	// A relay and an operator, one step at a time.
	rng := rand.New(rand.NewPCG(seed, 99))
	for i := 0; ; i++ {
		if i == 20 {
			say("ready")
		}
		now := time.Now()
		es, _, err := s.Due(ctx, now, 50, nil)
		if err != nil {
			die(err)
		}
		var acks []boltstore.Ack
		var fails []boltstore.Failure
		for _, e := range es {
			switch rng.IntN(10) {
			case 0:
				fails = append(fails, boltstore.Failure{Seq: e.Seq, At: now, Err: "boom", NextAttemptAt: now.Add(10 * time.Millisecond)})
			case 1:
				if err := s.MarkProcessing(ctx, e.ID); err != nil && !errors.Is(err, boltstore.ErrWrongStatus) {
					die(err)
				}
			default:
				acks = append(acks, boltstore.Ack{Seq: e.Seq, At: now})
			}
		}
		if err := s.Complete(ctx, acks); err != nil {
			die(err)
		}
		if err := s.Fail(ctx, fails); err != nil {
			die(err)
		}
		switch rng.IntN(12) {
		case 0:
			if _, err := s.RetryWhere(ctx, "", ""); err != nil {
				die(err)
			}
		case 1:
			if _, err := s.DeleteUser(ctx, "u-del"); err != nil {
				die(err)
			}
		case 2:
			if _, err := s.DeleteByEntityIDs(ctx, []string{"del-1", "del-2"}); err != nil {
				die(err)
			}
		case 3:
			ps, err := s.FetchByStatus(ctx, outbox.StatusProcessing, "", 10)
			if err != nil {
				die(err)
			}
			for _, e := range ps {
				if rng.IntN(2) == 0 {
					err = s.MarkCompleted(ctx, e.ID)
				} else {
					err = s.MarkFailed(ctx, e.ID, "manual")
				}
				if err != nil {
					die(err)
				}
			}
		case 4:
			for _, e := range es {
				e.Priority = rng.IntN(10)
				if err := s.Update(ctx, e); err != nil && !errors.Is(err, boltstore.ErrWrongStatus) && !errors.Is(err, boltstore.ErrNotFound) {
					die(err)
				}
			}
		}
	}
}
