package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fitiqcore/outbox"
)

func TestRecordSkipsRecordedIDsAndCutsATornLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "handled.jsonl")
	log := slog.New(slog.DiscardHandler)
	r, err := openRecord(path, log)
	if err != nil {
		t.Fatal(err)
	}
	e1 := &outbox.Event{ID: "id-1", Type: "mood.logged", EntityID: "user-1", EntitySeq: 1}
	for range 2 { // a redelivery is not recorded twice
		if err := r.Handle(context.Background(), e1); err != nil {
			t.Fatal(err)
		}
	}
	r.Close()

	// A crash in the middle of the next append.
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"id":"id-2","ty`)
	f.Close()

	r, err = openRecord(path, log)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, e := range []*outbox.Event{e1, {ID: "id-2", Type: "mood.logged", EntityID: "user-1", EntitySeq: 2}} {
		if err := r.Handle(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"id-1","type":"mood.logged","entity_id":"user-1","entity_seq":1}` + "\n" +
		`{"id":"id-2","type":"mood.logged","entity_id":"user-1","entity_seq":2}` + "\n"
	if string(data) != want {
		t.Errorf("record:\n%s\nwant:\n%s", data, want)
	}
	if strings.Count(string(data), "id-1") != 1 {
		t.Error("id-1 recorded twice")
	}
}
