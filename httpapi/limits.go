package httpapi

import (
	"fmt"
	"net/http"
	"sync"
)

// busyRetryAfter is the Retry-After, in seconds, of a 503 for a request
// over the concurrency cap or the body budget: both free up as soon as
// requests in progress end.
const busyRetryAfter = 1

// gate caps the requests served at once (Options.MaxConcurrent). A request
// over the cap is refused at once rather than queued: a queue would hold
// its connection and memory all the same. The zero gate has no cap.
type gate struct {
	slots chan struct{} // nil: no cap
}

func newGate(n int) gate {
	if n <= 0 {
		return gate{}
	}
	return gate{slots: make(chan struct{}, n)}
}

// enter takes a slot; it reports false, without waiting, when all are
// taken. Every true is paired with one leave.
func (g gate) enter() bool {
	if g.slots == nil {
		return true
	}
	select {
	case g.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

func (g gate) leave() {
	if g.slots != nil {
		<-g.slots
	}
}

// busy is the error of a request refused by enter: a 503 with Retry-After.
func (g gate) busy() error {
	return &requestError{
		status:     http.StatusServiceUnavailable,
		msg:        fmt.Sprintf("busy: the server is serving its limit of %d requests at once; retry after %ds", cap(g.slots), busyRetryAfter),
		retryAfter: busyRetryAfter,
	}
}

// budget is the byte budget that the bodies of the requests being served
// share (Options.MaxInflightBodyBytes). A nil budget has no limit.
type budget struct {
	mu   sync.Mutex
	used int64
	max  int64
}

func newBudget(max int64) *budget {
	if max <= 0 {
		return nil
	}
	return &budget{max: max}
}

// reserve takes n bytes of the budget; it reports false, without waiting,
// when the budget cannot cover them now. Every true is paired with one
// release of the same n.
func (b *budget) reserve(n int64) bool {
	if b == nil {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if n > b.max-b.used {
		return false
	}
	b.used += n
	return true
}

func (b *budget) release(n int64) {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
}

// reserveBody checks a request's declared body against the per-request
// limit (413, before anything is read) and reserves its size in the body
// budget (503 when the budget cannot cover it now): its Content-Length, or
// the per-request limit when it is sent chunked and its size is unknown
// until read. The limit is at most the budget (Options.setDefaults), so a
// body the budget could never cover is a 413. The caller releases the
// returned bytes when the handler returns.
func (s *Server) reserveBody(r *http.Request) (int64, error) {
	n := r.ContentLength
	if n > s.maxBody {
		return 0, reject(http.StatusRequestEntityTooLarge, "request body of %d bytes, over the limit of %d", n, s.maxBody)
	}
	if n < 0 {
		n = s.maxBody
	}
	if !s.bodies.reserve(n) {
		return 0, &requestError{
			status:     http.StatusServiceUnavailable,
			msg:        fmt.Sprintf("busy: the request bodies in progress hold the server's budget of %d bytes; retry after %ds", s.bodies.max, busyRetryAfter),
			retryAfter: busyRetryAfter,
		}
	}
	return n, nil
}
