package boltstore_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
)

var errRollback = errors.New("app: roll back")

func TestEnqueueTxAtomicWithAppData(t *testing.T) {
	appBucket, appKey := []byte("moods"), []byte("mood-1")
	tests := []struct {
		name     string
		rollback bool
	}{
		{"committed", false},
		{"rolled back", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustOpen(t, nil)
			ctx := context.Background()
			e := ev("mood.created", "mood-1", 0)
			err := s.DB().Update(func(tx *bolt.Tx) error {
				b, err := tx.CreateBucketIfNotExists(appBucket)
				if err != nil {
					return err
				}
				if err := b.Put(appKey, []byte("happy")); err != nil {
					return err
				}
				if _, err := s.EnqueueTx(tx, e); err != nil {
					return err
				}
				if tt.rollback {
					return errRollback
				}
				return nil
			})
			if tt.rollback != errors.Is(err, errRollback) || (!tt.rollback && err != nil) {
				t.Fatalf("update: %v", err)
			}
			var appValue []byte
			if err := s.DB().View(func(tx *bolt.Tx) error {
				if b := tx.Bucket(appBucket); b != nil {
					appValue = b.Get(appKey)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			_, getErr := s.Get(ctx, e.ID)
			st := mustStats(t, s)
			if tt.rollback {
				if appValue != nil {
					t.Errorf("app key survived the rollback: %q", appValue)
				}
				if !errors.Is(getErr, boltstore.ErrNotFound) {
					t.Errorf("Get after rollback: %v, want ErrNotFound", getErr)
				}
				if tallyOf(st) != tallyOf(boltstore.Stats{}) {
					t.Errorf("Stats after rollback = %+v, want zero", st)
				}
				return
			}
			if string(appValue) != "happy" {
				t.Errorf("app key = %q, want happy", appValue)
			}
			if getErr != nil {
				t.Errorf("Get after commit: %v", getErr)
			}
			if want := (boltstore.Stats{Total: 1, Pending: 1}); tallyOf(st) != tallyOf(want) {
				t.Errorf("Stats = %+v, want %+v", st, want)
			}
		})
	}
}

func TestEnqueueTxWrongDB(t *testing.T) {
	s := mustOpen(t, nil)
	other, err := bolt.Open(filepath.Join(t.TempDir(), "other.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	err = other.Update(func(tx *bolt.Tx) error {
		_, err := s.EnqueueTx(tx, ev("mood.created", "", 0))
		return err
	})
	if !errors.Is(err, boltstore.ErrWrongDB) {
		t.Fatalf("EnqueueTx with another DB's tx: %v, want ErrWrongDB", err)
	}
	if st := mustStats(t, s); st.Total != 0 {
		t.Fatalf("Stats = %+v, want empty", st)
	}
}

func TestEnqueueValidation(t *testing.T) {
	const maxPayload = 1024
	tests := []struct {
		name     string
		mutate   func(e *outbox.Event)
		field    string
		tooLarge bool
	}{
		{"bad id", func(e *outbox.Event) { e.ID = "not-a-uuid" }, "id", false},
		{"empty type", func(e *outbox.Event) { e.Type = "" }, "type", false},
		{"type empty token", func(e *outbox.Event) { e.Type = "a..b" }, "type", false},
		{"type trailing dot", func(e *outbox.Event) { e.Type = "a." }, "type", false},
		{"type wildcard", func(e *outbox.Event) { e.Type = "a.*" }, "type", false},
		{"type tail wildcard", func(e *outbox.Event) { e.Type = "a.>" }, "type", false},
		{"type space", func(e *outbox.Event) { e.Type = "a b" }, "type", false},
		{"type 129 chars", func(e *outbox.Event) { e.Type = strings.Repeat("a", 129) }, "type", false},
		{"entity_id 257 bytes", func(e *outbox.Event) { e.EntityID = strings.Repeat("e", 257) }, "entity_id", false},
		{"entity_id newline", func(e *outbox.Event) { e.EntityID = "a\nb" }, "entity_id", false},
		{"user_id control char", func(e *outbox.Event) { e.UserID = "bob\x07" }, "user_id", false},
		{"user_id NUL", func(e *outbox.Event) { e.UserID = "bob\x00" }, "user_id", false},
		{"user_id bad UTF-8", func(e *outbox.Event) { e.UserID = "bob\xff" }, "user_id", false},
		{"priority -1", func(e *outbox.Event) { e.Priority = -1 }, "priority", false},
		{"priority 10", func(e *outbox.Event) { e.Priority = 10 }, "priority", false},
		{"max_attempts -1", func(e *outbox.Event) { e.MaxAttempts = -1 }, "max_attempts", false},
		{"metadata array", func(e *outbox.Event) { e.Metadata = []byte("[1]") }, "metadata", false},
		{"metadata broken", func(e *outbox.Event) { e.Metadata = []byte(`{"a":`) }, "metadata", false},
		{"content_type two lines", func(e *outbox.Event) { e.ContentType = "a\r\nb" }, "content_type", false},
		{"payload too large", func(e *outbox.Event) { e.Payload = make([]byte, maxPayload+1) }, "payload", true},
		{"retry interval", func(e *outbox.Event) { e.Retry = &outbox.RetryPolicy{MaxInterval: time.Second, Multiplier: 2} }, "retry.initial_interval", false},
		{"created_at after 2262", func(e *outbox.Event) { e.CreatedAt = time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC) }, "created_at", false},
		{"created_at before 1678", func(e *outbox.Event) { e.CreatedAt = time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC) }, "created_at", false},
		{"created_at the epoch", func(e *outbox.Event) { e.CreatedAt = time.Unix(0, 0) }, "created_at", false},
	}
	check := func(t *testing.T, err error, field string, tooLarge bool) {
		t.Helper()
		if !errors.Is(err, outbox.ErrInvalidEvent) {
			t.Fatalf("err = %v, want ErrInvalidEvent", err)
		}
		var ve *outbox.ValidationError
		if !errors.As(err, &ve) || ve.Field != field {
			t.Errorf("err = %v, want a ValidationError for field %s", err, field)
		}
		if !strings.Contains(err.Error(), field) {
			t.Errorf("err %q does not name %s", err, field)
		}
		if errors.Is(err, outbox.ErrPayloadTooLarge) != tooLarge {
			t.Errorf("errors.Is(%v, ErrPayloadTooLarge) = %v, want %v", err, !tooLarge, tooLarge)
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			s := mustOpen(t, &boltstore.Options{Event: outbox.Options{MaxPayload: maxPayload}})
			bad := func() *outbox.Event {
				e := ev("mood.created", "mood-1", 3)
				tt.mutate(e)
				return e
			}

			_, err := s.Enqueue(ctx, bad())
			check(t, err, tt.field, tt.tooLarge)

			err = s.DB().Update(func(tx *bolt.Tx) error {
				_, err := s.EnqueueTx(tx, bad())
				return err
			})
			check(t, err, tt.field, tt.tooLarge)

			good := ev("mood.created", "mood-1", 3)
			_, err = s.Enqueue(ctx, good, bad())
			check(t, err, tt.field, tt.tooLarge)
			if !strings.Contains(err.Error(), "events[1]") {
				t.Errorf("multi-event error %q does not say events[1]", err)
			}
			if _, err := s.Get(ctx, good.ID); !errors.Is(err, boltstore.ErrNotFound) {
				t.Errorf("the valid event of a failed batch: Get = %v, want ErrNotFound", err)
			}
			if st := mustStats(t, s); tallyOf(st) != tallyOf(boltstore.Stats{}) {
				t.Errorf("Stats after failures = %+v, want zero", st)
			}
		})
	}
}

func TestEnqueueDefaults(t *testing.T) {
	tests := []struct {
		name            string
		opts            outbox.Options
		maxAttempts     int
		wantMaxAttempts int
	}{
		{"default", outbox.Options{}, 0, 5},
		{"from options", outbox.Options{MaxAttempts: 3}, 0, 3},
		{"explicit wins", outbox.Options{MaxAttempts: 3}, 7, 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			s := mustOpen(t, &boltstore.Options{Event: tt.opts, Now: clk.Now})
			var prev uint64
			for i := range 3 {
				e := &outbox.Event{Type: "mood.created", MaxAttempts: tt.maxAttempts, Payload: []byte{byte(i)}}
				mustEnqueue(t, s, e)
				u, err := uuid.Parse(e.ID)
				if err != nil || u.Version() != 7 {
					t.Errorf("id %q: version %v, err %v; want a UUIDv7", e.ID, u.Version(), err)
				}
				if e.MaxAttempts != tt.wantMaxAttempts {
					t.Errorf("max_attempts = %d, want %d", e.MaxAttempts, tt.wantMaxAttempts)
				}
				if e.Status != outbox.StatusPending {
					t.Errorf("status = %s, want pending", e.Status)
				}
				if !e.CreatedAt.Equal(clk.Now()) {
					t.Errorf("created_at = %v, want %v", e.CreatedAt, clk.Now())
				}
				if e.ContentType != outbox.ContentTypeBinary {
					t.Errorf("content_type = %q, want %q", e.ContentType, outbox.ContentTypeBinary)
				}
				if e.Seq <= prev {
					t.Errorf("seq %d after %d: not increasing", e.Seq, prev)
				}
				if e.EntitySeq != 0 || e.AttemptCount != 0 {
					t.Errorf("entity_seq %d attempt_count %d, want 0 0", e.EntitySeq, e.AttemptCount)
				}
				prev = e.Seq
				got := mustGet(t, s, e.ID)
				if got.Seq != e.Seq || got.MaxAttempts != e.MaxAttempts || !got.CreatedAt.Equal(e.CreatedAt) || got.Status != e.Status {
					t.Errorf("stored %+v differs from returned %+v", got, e)
				}
				clk.Advance(time.Second)
			}
		})
	}

	t.Run("created_at kept", func(t *testing.T) {
		s := mustOpen(t, &boltstore.Options{Now: newClock().Now})
		at := time.Date(2024, 1, 2, 3, 4, 5, 6, time.FixedZone("CET", 3600))
		e := &outbox.Event{Type: "mood.created", CreatedAt: at}
		mustEnqueue(t, s, e)
		if got := mustGet(t, s, e.ID).CreatedAt; !got.Equal(at) {
			t.Errorf("created_at = %v, want %v", got, at)
		}
	})

	t.Run("store-owned fields reset", func(t *testing.T) {
		s := mustOpen(t, nil)
		e := &outbox.Event{
			Type: "mood.created", EntityID: "m", Status: outbox.StatusCompleted, EntitySeq: 42, Seq: 99,
			AttemptCount: 3, LastError: "x", NextAttemptAt: t0.Add(time.Hour), CompletedAt: t0,
		}
		mustEnqueue(t, s, e)
		got := mustGet(t, s, e.ID)
		if got.Status != outbox.StatusPending || got.EntitySeq != 1 || got.Seq != 1 || got.AttemptCount != 0 ||
			got.LastError != "" || !got.NextAttemptAt.IsZero() || !got.CompletedAt.IsZero() {
			t.Errorf("store-owned fields not reset: %+v", got)
		}
		assertDue(t, s, time.Now(), got)
	})
}

func TestEnqueueIdempotent(t *testing.T) {
	ctx := context.Background()
	orig := func() *outbox.Event {
		return &outbox.Event{
			ID: "0190a5b4-7c3e-7def-8123-456789abcdef", Type: "mood.created", EntityID: "mood-1", UserID: "u1",
			Priority: 4, Metadata: []byte(`{ "a" : 1 }`), Payload: []byte("hello"), ContentType: "text/plain",
		}
	}
	tests := []struct {
		name    string
		mutate  func(*outbox.Event)
		wantErr error
	}{
		{"same content", func(*outbox.Event) {}, nil},
		{"same content, upper-case id", func(e *outbox.Event) { e.ID = strings.ToUpper(e.ID) }, nil},
		{"same content, metadata spaced differently", func(e *outbox.Event) { e.Metadata = []byte(`{"a":1}`) }, nil},
		{"different payload", func(e *outbox.Event) { e.Payload = []byte("bye") }, boltstore.ErrDuplicate},
		{"different type", func(e *outbox.Event) { e.Type = "mood.deleted" }, boltstore.ErrDuplicate},
		{"different entity", func(e *outbox.Event) { e.EntityID = "mood-2" }, boltstore.ErrDuplicate},
		{"different priority", func(e *outbox.Event) { e.Priority = 5 }, boltstore.ErrDuplicate},
		{"different metadata", func(e *outbox.Event) { e.Metadata = []byte(`{"a":2}`) }, boltstore.ErrDuplicate},
		{"retry policy added", func(e *outbox.Event) {
			e.Retry = &outbox.RetryPolicy{InitialInterval: time.Second, MaxInterval: time.Minute, Multiplier: 2}
		}, boltstore.ErrDuplicate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			s := mustOpen(t, &boltstore.Options{Now: clk.Now})
			first := orig()
			mustEnqueue(t, s, first)
			before := mustStats(t, s)
			clk.Advance(time.Minute)

			for _, via := range []string{"Enqueue", "EnqueueTx"} {
				again := orig()
				tt.mutate(again)
				var n int
				var err error
				if via == "Enqueue" {
					n, err = s.Enqueue(ctx, again)
				} else {
					err = s.DB().Update(func(tx *bolt.Tx) error {
						n, err = s.EnqueueTx(tx, again)
						return err
					})
				}
				if st := mustStats(t, s); !statsEqual(st, before) {
					t.Errorf("%s: Stats %+v, was %+v", via, st, before)
				}
				if tt.wantErr != nil {
					if !errors.Is(err, tt.wantErr) {
						t.Errorf("%s: err = %v, want %v", via, err, tt.wantErr)
					}
					continue
				}
				if err != nil || n != 0 {
					t.Fatalf("%s: created %d, err %v; want 0, nil", via, n, err)
				}
				if again.Seq != first.Seq || again.EntitySeq != first.EntitySeq || !again.CreatedAt.Equal(first.CreatedAt) ||
					again.Status != outbox.StatusPending || again.ID != first.ID {
					t.Errorf("%s: event not filled from the store: %+v, stored %+v", via, again, first)
				}
			}
			if got := mustGet(t, s, first.ID); string(got.Payload) != "hello" || got.Type != "mood.created" {
				t.Errorf("stored event changed: %+v", got)
			}
		})
	}

	t.Run("completed event re-enqueued", func(t *testing.T) {
		s := mustOpen(t, nil)
		first := orig()
		mustEnqueue(t, s, first)
		complete(t, s, t0, first)
		again := orig()
		n, err := s.Enqueue(ctx, again)
		if err != nil || n != 0 || again.Status != outbox.StatusCompleted {
			t.Fatalf("created %d, err %v, status %s; want 0, nil, completed", n, err, again.Status)
		}
		assertDue(t, s, t0.Add(time.Hour))
	})

	t.Run("twice in one call", func(t *testing.T) {
		s := mustOpen(t, nil)
		a, b := orig(), orig()
		n, err := s.Enqueue(ctx, a, b)
		if err != nil || n != 1 || a.Seq != b.Seq {
			t.Fatalf("created %d, err %v, seqs %d %d; want 1 event", n, err, a.Seq, b.Seq)
		}
	})
}

func TestNotify(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t, nil)
	ch := s.Notify()
	drain := func() {
		select {
		case <-ch:
		default:
		}
	}
	expect := func(what string) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(time.Second):
			t.Fatalf("no signal after %s", what)
		}
	}
	expectNone := func(what string) {
		t.Helper()
		select {
		case <-ch:
			t.Fatalf("signal after %s", what)
		default:
		}
	}

	drain()
	a := ev("mood.created", "m", 0)
	mustEnqueue(t, s, a)
	expect("Enqueue")

	drain()
	err := s.DB().Update(func(tx *bolt.Tx) error {
		if _, err := s.EnqueueTx(tx, ev("mood.created", "", 0)); err != nil {
			return err
		}
		return errRollback
	})
	if !errors.Is(err, errRollback) {
		t.Fatal(err)
	}
	expectNone("a rolled-back EnqueueTx")

	drain()
	if err := s.DB().Update(func(tx *bolt.Tx) error {
		_, err := s.EnqueueTx(tx, ev("mood.created", "", 0))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	expect("a committed EnqueueTx")

	b := ev("mood.updated", "m", 0)
	mustEnqueue(t, s, b)
	drain()
	complete(t, s, t0, a)
	expect("Complete promoting the next event of an entity")

	fail(t, s, boltstore.Failure{Seq: b.Seq, Err: "nope", Permanent: true})
	drain()
	if _, err := s.Retry(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	expect("Retry")
}

// TestEnqueueConcurrent drives Enqueue's group commit from many goroutines
// that share entities.
func TestEnqueueConcurrent(t *testing.T) {
	const goroutines, perG, entities = 64, 50, 10
	tests := []struct {
		name      string
		conflicts bool // every 10th call conflicts with a stored id: Batch re-runs the others
	}{
		{"plain", false},
		{"with failing callers", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			s := mustOpen(t, nil)
			taken := ev("taken", "", 0)
			mustEnqueue(t, s, taken)

			got := make([][]*outbox.Event, goroutines)
			var wg sync.WaitGroup
			errs := make(chan error, goroutines)
			for g := range goroutines {
				wg.Go(func() {
					for i := range perG {
						if tt.conflicts && i%10 == 5 {
							dup := ev("different", "", 0)
							dup.ID = taken.ID
							if _, err := s.Enqueue(ctx, dup); !errors.Is(err, boltstore.ErrDuplicate) {
								errs <- fmt.Errorf("conflicting enqueue: %v", err)
								return
							}
						}
						e := ev("mood.created", fmt.Sprintf("ent-%d", (g+i)%entities), (g*i)%10)
						e.Payload = fmt.Appendf(nil, "%d/%d", g, i)
						n, err := s.Enqueue(ctx, e)
						if err != nil || n != 1 {
							errs <- fmt.Errorf("g%d i%d: created %d, %v", g, i, n, err)
							return
						}
						got[g] = append(got[g], e)
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}

			st := mustStats(t, s)
			if want := int64(goroutines*perG + 1); st.Total != want || st.Pending != want {
				t.Fatalf("Stats = %+v, want %d pending", st, want)
			}
			perEntity := map[string][]uint64{}
			seen := map[uint64]bool{}
			for g, es := range got {
				last := map[string]uint64{}
				for _, e := range es {
					if seen[e.Seq] {
						t.Fatalf("seq %d returned twice", e.Seq)
					}
					seen[e.Seq] = true
					if e.EntitySeq <= last[e.EntityID] {
						t.Errorf("g%d: entity %s got entity_seq %d after %d", g, e.EntityID, e.EntitySeq, last[e.EntityID])
					}
					last[e.EntityID] = e.EntitySeq
					perEntity[e.EntityID] = append(perEntity[e.EntityID], e.EntitySeq)
					stored := mustGet(t, s, e.ID)
					if stored.Seq != e.Seq || stored.EntitySeq != e.EntitySeq || string(stored.Payload) != string(e.Payload) {
						t.Fatalf("stored %+v, returned %+v", stored, e)
					}
				}
			}
			for ent, es := range perEntity {
				slices.Sort(es)
				for i, v := range es {
					if v != uint64(i+1) {
						t.Fatalf("entity %s: entity_seqs %v, want 1..%d without gaps", ent, es, len(es))
					}
				}
			}
			// Exactly one head per entity is due, plus the entity-less event.
			es, _ := due(t, s, time.Now(), 1000)
			if len(es) != entities+1 {
				t.Fatalf("Due returned %d events, want %d heads and one entity-less event", len(es), entities+1)
			}
			for _, e := range es {
				if e.EntityID != "" && e.EntitySeq != 1 {
					t.Errorf("due event of %s has entity_seq %d, want 1", e.EntityID, e.EntitySeq)
				}
			}
		})
	}
}
