package boltstore

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/fitiqcore/outbox"
	bolt "go.etcd.io/bbolt"
)

// The commit pipeline: one goroutine owns the store's own write side and
// commits everything that is ready — producers' Enqueue calls and the relay's
// Record calls — in one transaction, with one pair of fsyncs, the way a
// database's log writer does group commit. It commits as soon as the previous
// commit has returned, so a lone event waits for no timer, and a busy store
// spreads its fsyncs over everything queued meanwhile. An idle store costs
// nothing: the goroutine waits on a channel. EnqueueTx, in the application's
// own transaction, does not go through it; bbolt orders the two.
//
// One call's failure never undoes another's: an enqueue decides every error
// that is the caller's (an id stored with other content, a high-water mark)
// before it writes anything, so a refused call leaves the transaction as it
// found it. An error of the file or the disk fails every call of the
// transaction: nothing of it is stored.

// maxPipelineEvents bounds the events and outcomes one transaction commits:
// the callers that joined it wait for all of them.
const maxPipelineEvents = 16384

// maxYields bounds how often the pipeline yields to let callers join a
// commit before it starts it.
const maxYields = 16

// ErrClosed: the store was closed.
var ErrClosed = errors.New("boltstore: store closed")

// op is one call waiting for the pipeline: an enqueue of events, or a record
// of the relay's outcomes.
type op struct {
	events []*outbox.Event // enqueue

	record bool // Record: acks, fails and mark
	acks   []Ack
	fails  []Failure
	mark   uint64

	created int
	err     error
	done    chan struct{}
}

func (o *op) size() int { return len(o.events) + len(o.acks) + len(o.fails) + 1 }

// pipe is the pipeline's state, owned by the Store.
type pipe struct {
	mu     sync.RWMutex // held for reading while submitting; Close takes it to close ops
	closed bool
	ops    chan *op
	done   chan struct{} // closed when the goroutine has returned
}

func (s *Store) startPipeline() {
	s.pipe.ops = make(chan *op, 1024)
	s.pipe.done = make(chan struct{})
	go s.runPipeline()
}

// stopPipeline lets the pipeline commit what was submitted, then waits for
// its goroutine. Calls submitted afterwards fail with ErrClosed.
func (s *Store) stopPipeline() {
	s.pipe.mu.Lock()
	if !s.pipe.closed {
		s.pipe.closed = true
		close(s.pipe.ops)
	}
	s.pipe.mu.Unlock()
	<-s.pipe.done
}

// submit hands o to the pipeline and waits until it is committed or ctx
// ends. When ctx ends first, o may still commit: as for a lost answer, the
// caller does not know, and re-enqueueing the same ids is safe.
func (s *Store) submit(ctx context.Context, o *op) error {
	o.done = make(chan struct{})
	s.pipe.mu.RLock()
	if s.pipe.closed {
		s.pipe.mu.RUnlock()
		return ErrClosed
	}
	select {
	case s.pipe.ops <- o:
	case <-ctx.Done():
		s.pipe.mu.RUnlock()
		return ctx.Err()
	}
	s.pipe.mu.RUnlock()
	select {
	case <-o.done:
		return o.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Store) runPipeline() {
	defer close(s.pipe.done)
	batch := make([]*op, 0, 256)
	last := 0 // calls in the last commit
	for first := range s.pipe.ops {
		batch = append(batch[:0], first)
		n := first.size()
		// The callers the last commit answered are runnable but may not
		// have run yet: when it answered several, let them submit again
		// while the queue still grows, so that they join this commit
		// rather than wait out the next one. A lone caller does not wait
		// (a yield queues the pipeline behind every runnable goroutine:
		// 1.8 ms more at p99 in relay bench's latency phase), and no timer
		// ever holds a commit.
		for range maxYields * min(last-1, 1) {
			before := len(s.pipe.ops)
			runtime.Gosched()
			if len(s.pipe.ops) == before {
				break
			}
		}
	fill:
		for n < maxPipelineEvents {
			select {
			case o, ok := <-s.pipe.ops:
				if !ok {
					break fill
				}
				batch = append(batch, o)
				n += o.size()
			default:
				break fill
			}
		}
		s.commitOps(batch)
		last = len(batch)
		for i := range batch {
			batch[i] = nil
		}
	}
}

// commitOps commits batch in one transaction and answers every call of it.
func (s *Store) commitOps(batch []*op) {
	now := s.opts.Now().UTC()
	err := s.update(func(tx *bolt.Tx) error {
		w := s.writer(tx)
		for _, o := range batch {
			o.created, o.err = 0, nil
			if o.record {
				if err := w.record(o.acks, o.fails, o.mark, now); err != nil {
					return err
				}
				continue
			}
			created, callerErr, err := w.enqueueAll(o.events, now)
			if err != nil {
				return err
			}
			o.created, o.err = created, callerErr
		}
		return w.finish()
	})
	for _, o := range batch {
		switch {
		case err == nil:
		case o.record:
			o.err = fmt.Errorf("boltstore: record outcomes: %w", err)
		case o.err == nil:
			o.created, o.err = 0, err
		}
		close(o.done)
	}
}
