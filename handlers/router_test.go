package handlers_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fitiqcore/outbox/internal/poll"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/handlers"
)

func TestRetrySpacingFollowsEventBackoff(t *testing.T) {
	v := newEnv(t, false)
	var c calls
	r := v.router("retry")
	r.HandleFunc("mood.logged", func(ctx context.Context, e *outbox.Event) error {
		if c.add(e) <= 3 {
			return errBoom
		}
		return nil
	})
	v.start(r, "retry")
	e := event(t, "mood.logged", "user-1", 1)
	e.MaxAttempts = 10
	e.Retry = &outbox.RetryPolicy{InitialInterval: 200 * time.Millisecond, MaxInterval: 2 * time.Second, Multiplier: 2}
	v.publish(e)

	poll.Until(t, 15*time.Second, "4 handler calls", func() bool { return c.n() >= 4 })
	v.settled("retry", 5*time.Second)
	at := c.at()
	if len(at) != 4 {
		t.Fatalf("handler called %d times, want 4", len(at))
	}
	var gaps []time.Duration
	for i, want := range []time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond} {
		gap := at[i+1].Sub(at[i])
		gaps = append(gaps, gap)
		// The backoff is spread by ±outbox.DefaultJitter; allow 5% more
		// for the round trips.
		if lower := time.Duration(float64(want) * (1 - outbox.DefaultJitter - 0.05)); gap < lower {
			t.Errorf("gap after delivery %d = %s, want at least %s (backoff %s ±20%%)", i+1, gap, lower, want)
		}
	}
	if gaps[2] < gaps[0]*3/2 {
		t.Errorf("gaps %v do not grow: the third should be well above the first", gaps)
	}
	t.Logf("gaps between deliveries: %v", gaps)
}

func TestDeadLetterAfterMaxAttempts(t *testing.T) {
	v := newEnv(t, false)
	var c calls
	// The event carries no policy: the Router's default applies.
	r := v.router("dlq", handlers.WithRetryPolicy(outbox.RetryPolicy{InitialInterval: 20 * time.Millisecond, MaxInterval: 50 * time.Millisecond, Multiplier: 2}))
	r.HandleFunc("mood.", func(ctx context.Context, e *outbox.Event) error {
		c.add(e)
		return fmt.Errorf("save mood: %w", errBoom)
	})
	v.start(r, "dlq")
	e := event(t, "mood.logged", "user-1", 1)
	e.MaxAttempts = 3
	v.publish(e)

	poll.Until(t, 10*time.Second, "one dead letter", func() bool { return v.dlqCount() == 1 })
	v.settled("dlq", 5*time.Second)
	if n := c.n(); n != 3 {
		t.Errorf("handler called %d times, want max_attempts = 3", n)
	}
	dl := v.deadLetters()[0]
	h := dl.Header
	for k, want := range map[string]string{
		handlers.HeaderDLQError:      "save mood: " + errBoom.Error(),
		handlers.HeaderDLQReason:     "max_attempts",
		handlers.HeaderDLQDeliveries: "3",
		handlers.HeaderDLQStream:     stream,
		handlers.HeaderDLQStreamSeq:  "1",
		handlers.HeaderDLQSubject:    prefix + ".mood.logged",
		handlers.HeaderDLQConsumer:   "dlq",
		outbox.HeaderID:              e.ID,
	} {
		if got := h.Get(k); got != want {
			t.Errorf("dead letter header %s = %q, want %q", k, got, want)
		}
	}
	if dl.Subject != dlqPrefix+".mood.logged" {
		t.Errorf("dead letter subject %q", dl.Subject)
	}
	got, err := outbox.FromMessage(dl.Header, dl.Data)
	if err != nil || got.ID != e.ID || string(got.Payload) != string(e.Payload) {
		t.Errorf("dead letter does not carry the event: %v %+v", err, got)
	}
	if info := v.consumerInfo("dlq"); info.NumAckPending != 0 {
		t.Errorf("message not terminated: %d ack pending", info.NumAckPending)
	}
}

func TestPermanentErrorDeadLetteredAtOnce(t *testing.T) {
	v := newEnv(t, false)
	var c calls
	r := v.router("perm")
	cause := errors.New("payload has no mood score")
	r.HandleFunc("mood.logged", func(ctx context.Context, e *outbox.Event) error {
		c.add(e)
		return handlers.Permanent(fmt.Errorf("validate: %w", cause))
	})
	v.start(r, "perm")
	e := event(t, "mood.logged", "user-1", 1)
	e.MaxAttempts = 5
	v.publish(e)

	poll.Until(t, 5*time.Second, "one dead letter", func() bool { return v.dlqCount() == 1 })
	v.settled("perm", 5*time.Second)
	if n := c.n(); n != 1 {
		t.Errorf("handler called %d times, want 1", n)
	}
	h := v.deadLetters()[0].Header
	if h.Get(handlers.HeaderDLQReason) != "permanent" || h.Get(handlers.HeaderDLQDeliveries) != "1" ||
		h.Get(handlers.HeaderDLQError) != "validate: "+cause.Error() {
		t.Errorf("dead letter headers: %v", h)
	}
}

func TestPermanent(t *testing.T) {
	cause := errors.New("cause")
	err := fmt.Errorf("outer: %w", handlers.Permanent(cause))
	if !errors.Is(err, handlers.ErrPermanent) || !errors.Is(err, cause) {
		t.Errorf("Permanent: errors.Is fails on %v", err)
	}
	if handlers.Permanent(nil) != nil {
		t.Error("Permanent(nil) != nil")
	}
	if errors.Is(cause, handlers.ErrPermanent) {
		t.Error("a plain error is permanent")
	}
}

func TestPanicIsRetriedAndServiceKeepsRunning(t *testing.T) {
	v := newEnv(t, false)
	var c calls
	var lastErr atomic.Value
	r := v.router("panic")
	r.Use(func(next handlers.Handler) handlers.Handler {
		return handlers.HandlerFunc(func(ctx context.Context, e *outbox.Event) error {
			err := next.Handle(ctx, e)
			if err != nil {
				lastErr.Store(err)
			}
			return err
		})
	})
	r.HandleFunc("mood.logged", func(ctx context.Context, e *outbox.Event) error {
		if c.add(e) == 1 {
			var m map[string]int
			m["boom"]++ // nil map write: a runtime panic
		}
		return nil
	})
	v.start(r, "panic")
	e := event(t, "mood.logged", "user-1", 1)
	e.Retry = &outbox.RetryPolicy{InitialInterval: 50 * time.Millisecond, MaxInterval: time.Second, Multiplier: 2}
	v.publish(e)

	poll.Until(t, 10*time.Second, "the panicking event retried", func() bool { return c.n() >= 2 })
	v.settled("panic", 5*time.Second)
	err, _ := lastErr.Load().(error)
	if !errors.Is(err, handlers.ErrPanic) || !strings.Contains(err.Error(), "assignment to entry in nil map") {
		t.Errorf("middleware saw %v, want an ErrPanic with the panic text", err)
	}
	// Still serving.
	v.publish(event(t, "mood.logged", "user-2", 1))
	poll.Until(t, 5*time.Second, "the next event handled", func() bool { return c.n() == 3 })
	if v.dlqCount() != 0 {
		t.Error("a panic was dead-lettered")
	}
}

func TestIdempotencyAcrossRedelivery(t *testing.T) {
	v := newEnv(t, false)
	var c calls
	r := v.router("idem", handlers.WithIdempotency("handled", time.Hour), handlers.WithAckWait(300*time.Millisecond))
	r.HandleFunc("mood.logged", func(ctx context.Context, e *outbox.Event) error {
		c.add(e)
		return nil
	})
	v.start(r, "idem")
	kv, err := v.js.KeyValue(context.Background(), "handled")
	if err != nil {
		t.Fatal(err)
	}
	// An earlier run handled the event, recorded its id and crashed before
	// the ack: the message comes (back) with its id recorded. It is acked
	// without running the handler again.
	done := event(t, "mood.logged", "user-1", 1)
	if _, err := kv.Put(context.Background(), "idem."+done.ID, []byte("1")); err != nil {
		t.Fatal(err)
	}
	v.publish(done)
	poll.Until(t, 10*time.Second, "the redelivery acked", func() bool {
		info := v.consumerInfo("idem")
		return info.Delivered.Consumer >= 1 && info.NumAckPending == 0 && info.NumPending == 0
	})
	if n := c.n(); n != 0 {
		t.Fatalf("handler ran %d times for an event whose id was recorded, want 0", n)
	}
	// An event handled here is recorded, and skipped when it comes again.
	e := event(t, "mood.logged", "user-1", 2)
	v.publish(e)
	poll.Until(t, 10*time.Second, "the event handled", func() bool { return c.n() == 1 })

	// A copy stored again past the stream's duplicate window (published here
	// without Nats-Msg-Id) is skipped too.
	m := e.Message(prefix, "", 2, nil)
	m.Header.Del(nats.MsgIdHdr)
	if _, err := v.js.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	v.settled("idem", 5*time.Second)
	if n := c.n(); n != 1 {
		t.Fatalf("handler ran %d times for a re-stored copy, want 1", n)
	}
	if _, err := kv.Get(context.Background(), "idem."+e.ID); err != nil {
		t.Errorf("handled id not recorded: %v", err)
	}
}

func TestPerEntityOrderWith8Workers(t *testing.T) {
	v := newEnv(t, false)
	const entities, perEntity = 40, 10
	var (
		mu                   sync.Mutex
		seen                 = map[string][]uint64{}
		active               = map[string]bool{}
		running, maxParallel int
		overlap              []string
	)
	r := v.router("order", handlers.WithWorkers(8))
	r.HandleFunc(handlers.MatchAll, func(ctx context.Context, e *outbox.Event) error {
		mu.Lock()
		if active[e.EntityID] {
			overlap = append(overlap, e.EntityID)
		}
		active[e.EntityID] = true
		running++
		maxParallel = max(maxParallel, running)
		seen[e.EntityID] = append(seen[e.EntityID], e.EntitySeq)
		mu.Unlock()
		time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
		mu.Lock()
		active[e.EntityID] = false
		running--
		mu.Unlock()
		return nil
	})
	for seq := uint64(1); seq <= perEntity; seq++ {
		for i := range entities {
			v.publish(event(t, "workout.logged", "entity-"+strconv.Itoa(i), seq))
		}
	}
	v.start(r, "order")
	v.settled("order", 30*time.Second)

	mu.Lock()
	defer mu.Unlock()
	if len(overlap) > 0 {
		t.Errorf("events of one entity ran at once: %v", overlap)
	}
	if len(seen) != entities {
		t.Fatalf("%d entities handled, want %d", len(seen), entities)
	}
	for id, seqs := range seen {
		if len(seqs) != perEntity || !slices.IsSorted(seqs) {
			t.Errorf("entity %s handled in order %v", id, seqs)
		}
	}
	if maxParallel < 2 {
		t.Errorf("at most %d handlers ran at once with 8 workers", maxParallel)
	}
	t.Logf("at most %d handlers at once", maxParallel)
}

func TestShutdownWithInFlightWorkLosesNothing(t *testing.T) {
	v := newEnv(t, false)
	const total = 60
	var (
		mu      sync.Mutex
		handled = map[string]int{}
		started atomic.Int32
	)
	h := func(ctx context.Context, e *outbox.Event) error {
		started.Add(1)
		select {
		case <-time.After(40 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
		mu.Lock()
		handled[e.ID]++
		mu.Unlock()
		return nil
	}
	var ids []string
	for i := range total {
		e := event(t, "sleep.synced", "user-"+strconv.Itoa(i%12), uint64(i/12+1))
		ids = append(ids, e.ID)
		v.publish(e)
	}

	// Released messages stay unacked until redelivered, so the second Run holds
	// its first fetch for up to an ack wait: keep it short.
	r1 := v.router("drain", handlers.WithWorkers(4), handlers.WithShutdownTimeout(100*time.Millisecond), handlers.WithAckWait(time.Second))
	r1.HandleFunc("sleep.", h)
	stop := v.start(r1, "drain")
	poll.Until(t, 10*time.Second, "handlers in flight", func() bool { return started.Load() >= 8 })
	if err := stop(); err != nil && !errors.Is(err, handlers.ErrShutdownTimeout) {
		t.Fatalf("first Run: %v", err)
	}
	mu.Lock()
	first := len(handled)
	mu.Unlock()
	if first >= total {
		t.Fatalf("shutdown came too late to test anything: %d handled", first)
	}
	t.Logf("handled before the shutdown: %d of %d", first, total)

	r2 := v.router("drain", handlers.WithWorkers(4), handlers.WithAckWait(time.Second))
	r2.HandleFunc("sleep.", h)
	stop2 := v.start(r2, "drain")
	v.settled("drain", 30*time.Second)
	if err := stop2(); err != nil {
		t.Fatalf("second Run: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, id := range ids {
		if handled[id] < 1 {
			t.Errorf("event %s lost", id)
		}
	}
	if info := v.consumerInfo("drain"); info.NumAckPending != 0 || info.NumPending != 0 {
		t.Errorf("consumer not settled: %d ack pending, %d pending", info.NumAckPending, info.NumPending)
	}
	if v.dlqCount() != 0 {
		t.Error("an interrupted handler was dead-lettered")
	}
}

func TestLongHandlerKeepsItsMessage(t *testing.T) {
	v := newEnv(t, false)
	var c calls
	r := v.router("long", handlers.WithAckWait(300*time.Millisecond))
	r.HandleFunc("report.built", func(ctx context.Context, e *outbox.Event) error {
		c.add(e)
		time.Sleep(1200 * time.Millisecond) // four ack waits
		return nil
	})
	v.start(r, "long")
	v.publish(event(t, "report.built", "user-1", 1))
	v.settled("long", 10*time.Second)
	if n := c.n(); n != 1 {
		t.Errorf("handler called %d times, want 1", n)
	}
	if info := v.consumerInfo("long"); info.NumRedelivered != 0 {
		t.Errorf("%d redelivered while the handler ran", info.NumRedelivered)
	}
}

type declines struct{ handlers.HandlerFunc }

func (declines) CanHandle(e *outbox.Event) bool { return e.UserID == "accepted" }

func TestRoutingAndFilterSubjects(t *testing.T) {
	v := newEnv(t, false)
	var mu sync.Mutex
	got := map[string]string{} // type -> handler
	rec := func(name string) func(context.Context, *outbox.Event) error {
		return func(ctx context.Context, e *outbox.Event) error {
			mu.Lock()
			got[e.Type] = name
			mu.Unlock()
			return nil
		}
	}
	r := v.router("routes")
	r.HandleFunc("mood.", rec("mood-prefix"))
	r.HandleFunc("mood.logged", rec("mood-exact"))
	r.HandleFunc("mood.daily.", rec("mood-daily-prefix"))
	r.Handle("sleep.synced", declines{rec("sleep")})
	v.start(r, "routes")
	for _, typ := range []string{"mood.logged", "mood.deleted", "mood.daily.summary", "sleep.synced", "weight.logged"} {
		v.publish(event(t, typ, "", 0))
	}
	accepted := event(t, "sleep.synced", "", 0)
	accepted.UserID = "accepted"
	accepted.Type = "sleep.synced"
	v.publish(accepted)
	v.settled("routes", 10*time.Second)
	poll.Until(t, 5*time.Second, "the declined event dead-lettered", func() bool { return v.dlqCount() == 1 })

	mu.Lock()
	want := map[string]string{"mood.logged": "mood-exact", "mood.deleted": "mood-prefix", "mood.daily.summary": "mood-daily-prefix", "sleep.synced": "sleep"}
	for typ, h := range want {
		if got[typ] != h {
			t.Errorf("%s handled by %q, want %q", typ, got[typ], h)
		}
	}
	if _, ok := got["weight.logged"]; ok {
		t.Error("weight.logged delivered: outside the filter")
	}
	mu.Unlock()
	dl := v.deadLetters()[0]
	if dl.Header.Get(handlers.HeaderDLQReason) != "no_handler" || !strings.Contains(dl.Header.Get(handlers.HeaderDLQError), handlers.ErrNoHandler.Error()) {
		t.Errorf("declined event's dead letter: %v", dl.Header)
	}
	cfg := v.consumerInfo("routes").Config
	filters := append(cfg.FilterSubjects, cfg.FilterSubject)
	filters = slices.DeleteFunc(filters, func(s string) bool { return s == "" })
	slices.Sort(filters)
	if want := []string{prefix + ".mood.>", prefix + ".sleep.synced"}; !slices.Equal(filters, want) {
		t.Errorf("filter subjects %q, want %q", filters, want)
	}
}

func TestUndecodableMessageDeadLettered(t *testing.T) {
	v := newEnv(t, false)
	var c calls
	r := v.router("junk")
	r.HandleFunc(handlers.MatchAll, func(ctx context.Context, e *outbox.Event) error { c.add(e); return nil })
	v.start(r, "junk")
	if _, err := v.js.Publish(context.Background(), prefix+".mood.logged", []byte("not an event")); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 5*time.Second, "one dead letter", func() bool { return v.dlqCount() == 1 })
	v.settled("junk", 5*time.Second)
	dl := v.deadLetters()[0]
	if c.n() != 0 || dl.Header.Get(handlers.HeaderDLQReason) != "undecodable" || string(dl.Data) != "not an event" ||
		dl.Subject != dlqPrefix+".mood.logged" {
		t.Errorf("calls %d, dead letter %s %v %q", c.n(), dl.Subject, dl.Header, dl.Data)
	}
}

func TestDeadLetterWithoutStreamGoesToCoreNATS(t *testing.T) {
	v := newEnv(t, true)
	sub, err := v.nc.SubscribeSync(dlqPrefix + ".>")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	r := v.router("core")
	r.HandleFunc("mood.logged", func(ctx context.Context, e *outbox.Event) error { return handlers.Permanent(errBoom) })
	v.start(r, "core")
	e := event(t, "mood.logged", "user-1", 1)
	v.publish(e)
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Get(outbox.HeaderID) != e.ID || m.Header.Get(handlers.HeaderDLQError) != errBoom.Error() {
		t.Errorf("core dead letter: %v", m.Header)
	}
	v.settled("core", 5*time.Second)
}

func TestNewRouterOptions(t *testing.T) {
	v := newEnv(t, false)
	for _, tc := range []struct {
		name    string
		stream  string
		durable string
		opts    []handlers.Option
		want    error
	}{
		{name: "defaults", stream: stream, durable: "svc"},
		{name: "all set", stream: stream, durable: "svc", opts: []handlers.Option{
			handlers.WithSubjectPrefix(prefix), handlers.WithDeadLetterPrefix("dead"), handlers.WithWorkers(8),
			handlers.WithAckWait(time.Second), handlers.WithMaxAckPending(64), handlers.WithMaxAttempts(3),
			handlers.WithRetryPolicy(handlers.DefaultRetryPolicy), handlers.WithIdempotency("b", time.Minute),
			handlers.WithShutdownTimeout(time.Second), handlers.WithLogger(quietLogger()), handlers.WithStartupHold(false),
			handlers.WithTracerProvider(noop.NewTracerProvider()),
		}},
		{name: "empty stream", stream: "", durable: "svc", want: handlers.ErrInvalidOption},
		{name: "durable with a dot", stream: stream, durable: "a.b", want: handlers.ErrInvalidOption},
		{name: "zero workers", stream: stream, durable: "svc", opts: []handlers.Option{handlers.WithWorkers(0)}, want: handlers.ErrInvalidOption},
		{name: "max ack pending below workers", stream: stream, durable: "svc", opts: []handlers.Option{handlers.WithWorkers(8), handlers.WithMaxAckPending(4)}, want: handlers.ErrInvalidOption},
		{name: "tiny ack wait", stream: stream, durable: "svc", opts: []handlers.Option{handlers.WithAckWait(time.Millisecond)}, want: handlers.ErrInvalidOption},
		{name: "wildcard prefix", stream: stream, durable: "svc", opts: []handlers.Option{handlers.WithSubjectPrefix("a.*")}, want: handlers.ErrInvalidOption},
		{name: "dlq under the prefix", stream: stream, durable: "svc", opts: []handlers.Option{handlers.WithSubjectPrefix("a"), handlers.WithDeadLetterPrefix("a.dlq")}, want: handlers.ErrInvalidOption},
		{name: "bad retry policy", stream: stream, durable: "svc", opts: []handlers.Option{handlers.WithRetryPolicy(outbox.RetryPolicy{})}, want: handlers.ErrInvalidOption},
		{name: "zero max attempts", stream: stream, durable: "svc", opts: []handlers.Option{handlers.WithMaxAttempts(0)}, want: handlers.ErrInvalidOption},
		{name: "bad bucket", stream: stream, durable: "svc", opts: []handlers.Option{handlers.WithIdempotency("a.b", time.Hour)}, want: handlers.ErrInvalidOption},
		{name: "nil logger", stream: stream, durable: "svc", opts: []handlers.Option{handlers.WithLogger(nil)}, want: handlers.ErrInvalidOption},
		{name: "nil tracer provider", stream: stream, durable: "svc", opts: []handlers.Option{handlers.WithTracerProvider(nil)}, want: handlers.ErrInvalidOption},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := handlers.NewRouter(v.js, tc.stream, tc.durable, tc.opts...)
			if !errors.Is(err, tc.want) {
				t.Errorf("NewRouter: %v, want %v", err, tc.want)
			}
		})
	}
}

func TestRunErrors(t *testing.T) {
	v := newEnv(t, false)
	r := v.router("empty")
	if err := r.Run(context.Background()); !errors.Is(err, handlers.ErrNoHandlers) {
		t.Errorf("Run without handlers: %v", err)
	}
	r.HandleFunc("x", func(context.Context, *outbox.Event) error { return nil })
	stop := v.start(r, "empty")
	poll.Until(t, 5*time.Second, "the consumer created", func() bool {
		_, err := v.js.Consumer(context.Background(), stream, "empty")
		return err == nil
	})
	if err := r.Run(context.Background()); !errors.Is(err, handlers.ErrRunning) {
		t.Errorf("second Run: %v", err)
	}
	if err := stop(); err != nil {
		t.Errorf("Run: %v", err)
	}

	// A stream whose subjects do not tell the prefix needs WithSubjectPrefix.
	if _, err := v.js.CreateStream(context.Background(), jetstreamConfig("MIXED", "a.>", "b.>")); err != nil {
		t.Fatal(err)
	}
	r2, err := handlers.NewRouter(v.js, "MIXED", "svc", handlers.WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	r2.HandleFunc("x", func(context.Context, *outbox.Event) error { return nil })
	if err := r2.Run(context.Background()); !errors.Is(err, handlers.ErrInvalidOption) {
		t.Errorf("Run on a stream with two subjects: %v", err)
	}
}

func TestHandlePanicsOnBadPattern(t *testing.T) {
	v := newEnv(t, false)
	r := v.router("p")
	for _, p := range []string{"", "a..b", "a.*", "a b", ".", "mood.>"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Handle(%q) did not panic", p)
				}
			}()
			r.HandleFunc(p, func(context.Context, *outbox.Event) error { return nil })
		}()
	}
}

// A process that dies holding messages (its connection closed, nothing
// acked): the next Run waits for them to come back and handles them before the
// later events of their entities.
func TestCrashedProcessKeepsPerEntityOrder(t *testing.T) {
	v := newEnv(t, false)
	const entities, perEntity = 8, 5
	for seq := uint64(1); seq <= perEntity; seq++ {
		for i := range entities {
			v.publish(event(t, "mood.logged", "user-"+strconv.Itoa(i), seq))
		}
	}

	// The first process takes 8 messages and dies before acking any.
	nc, err := nats.Connect(v.nc.ConnectedUrl())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js1, err := jetstreamNew(nc)
	if err != nil {
		t.Fatal(err)
	}
	var took atomic.Int32
	r1, err := handlers.NewRouter(js1, stream, "crash", handlers.WithLogger(quietLogger()), handlers.WithWorkers(4),
		handlers.WithMaxAckPending(8), handlers.WithAckWait(time.Second), handlers.WithShutdownTimeout(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	r1.HandleFunc("mood.", func(ctx context.Context, e *outbox.Event) error {
		took.Add(1)
		<-ctx.Done() // stuck until the "crash"
		return ctx.Err()
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r1.Run(ctx) }()
	poll.Until(t, 5*time.Second, "the first process busy", func() bool {
		return took.Load() >= 4 && v.consumerInfo("crash").NumAckPending == 8
	})
	nc.Close() // the crash: no ack, nak or in-progress ack gets out any more
	cancel()
	<-done

	var (
		mu   sync.Mutex
		seen = map[string][]uint64{}
	)
	r2 := v.router("crash", handlers.WithWorkers(4), handlers.WithAckWait(time.Second))
	r2.HandleFunc("mood.", func(ctx context.Context, e *outbox.Event) error {
		mu.Lock()
		seen[e.EntityID] = append(seen[e.EntityID], e.EntitySeq)
		mu.Unlock()
		return nil
	})
	v.start(r2, "crash")
	v.settled("crash", 15*time.Second)
	mu.Lock()
	defer mu.Unlock()
	for id, seqs := range seen {
		if len(seqs) != perEntity || !slices.IsSorted(seqs) {
			t.Errorf("entity %s handled in order %v after the crash", id, seqs)
		}
	}
	if len(seen) != entities {
		t.Errorf("%d entities handled, want %d", len(seen), entities)
	}
}
