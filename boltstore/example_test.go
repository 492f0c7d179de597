package boltstore_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
	bolt "go.etcd.io/bbolt"
)

// An application saves a record and the event announcing it in one
// transaction: both commit or neither does.
func ExampleStore_EnqueueTx() {
	dir, err := os.MkdirTemp("", "outbox-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	store, err := boltstore.Open(filepath.Join(dir, "outbox.db"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	event := &outbox.Event{
		Type:        "mood.created",
		EntityID:    "mood-1",
		Payload:     []byte(`{"id":"mood-1","feeling":"happy"}`),
		ContentType: outbox.ContentTypeJSON,
	}
	err = store.DB().Update(func(tx *bolt.Tx) error {
		moods, err := tx.CreateBucketIfNotExists([]byte("moods"))
		if err != nil {
			return err
		}
		if err := moods.Put([]byte("mood-1"), []byte("happy")); err != nil {
			return err
		}
		_, err = store.EnqueueTx(tx, event)
		return err
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(event.Type, event.Status, "entity_seq", event.EntitySeq)

	stats, err := store.Stats(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("pending:", stats.Pending)
	// Output:
	// mood.created pending entity_seq 1
	// pending: 1
}

// Enqueue stores events in a transaction of its own. Events of one entity
// are published one after the other: only the first is due until it
// completes.
func ExampleStore_Enqueue() {
	dir, err := os.MkdirTemp("", "outbox-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	store, err := boltstore.Open(filepath.Join(dir, "outbox.db"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	ctx := context.Background()
	created, err := store.Enqueue(ctx,
		&outbox.Event{Type: "mood.created", EntityID: "mood-1", Payload: []byte(`{"feeling":"happy"}`)},
		&outbox.Event{Type: "mood.updated", EntityID: "mood-1", Payload: []byte(`{"feeling":"calm"}`)},
	)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("created:", created)

	for range 2 {
		due, _, err := store.Due(ctx, time.Now(), 10, nil)
		if err != nil {
			log.Fatal(err)
		}
		for _, e := range due {
			fmt.Println("due:", e.Type, e.EntitySeq)
			if err := store.Complete(ctx, []boltstore.Ack{{Seq: e.Seq, At: time.Now()}}); err != nil {
				log.Fatal(err)
			}
		}
	}
	// Output:
	// created: 2
	// due: mood.created 1
	// due: mood.updated 2
}

// An operator pages through one user's failed events, retries them, and
// reads the user's statistics.
func ExampleStore_List() {
	dir, err := os.MkdirTemp("", "outbox-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	store, err := boltstore.Open(filepath.Join(dir, "outbox.db"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	ctx := context.Background()

	// Five events of alice that failed for good.
	var fails []boltstore.Failure
	for i := range 5 {
		e := &outbox.Event{Type: "mood.created", UserID: "alice", EntityID: fmt.Sprint("mood-", i)}
		if _, err := store.Enqueue(ctx, e); err != nil {
			log.Fatal(err)
		}
		fails = append(fails, boltstore.Failure{Seq: e.Seq, At: time.Now(), Err: "no stream", Permanent: true})
	}
	if err := store.Fail(ctx, fails); err != nil {
		log.Fatal(err)
	}

	q := boltstore.Query{UserID: "alice", Status: outbox.StatusFailed, Limit: 2}
	for {
		page, err := store.List(ctx, q)
		if err != nil {
			log.Fatal(err)
		}
		for _, e := range page.Events {
			fmt.Println(e.EntityID, e.Status, e.LastError)
		}
		if page.NextCursor == "" {
			break
		}
		q.Cursor = page.NextCursor
	}
	n, err := store.RetryWhere(ctx, outbox.StatusFailed, "alice")
	if err != nil {
		log.Fatal(err)
	}
	st, err := store.UserStats(ctx, "alice")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("retried %d; alice: %d pending, %d failed, issues %v\n", n, st.Pending, st.Failed, st.HasIssues)
	// Output:
	// mood-0 failed no stream
	// mood-1 failed no stream
	// mood-2 failed no stream
	// mood-3 failed no stream
	// mood-4 failed no stream
	// retried 5; alice: 5 pending, 0 failed, issues false
}
