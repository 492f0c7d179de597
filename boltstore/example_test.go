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
