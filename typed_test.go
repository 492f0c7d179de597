package outbox_test

import (
	"testing"

	"github.com/fitiqcore/outbox"
)

func TestTypeDecodeRefuses(t *testing.T) {
	for _, tt := range []struct {
		name string
		e    *outbox.Event
	}{
		{"another type", &outbox.Event{Type: "sleep.synced", ContentType: outbox.ContentTypeJSON, Payload: []byte(`{"score":1}`)}},
		{"not JSON", &outbox.Event{Type: "mood.logged", ContentType: outbox.ContentTypeBinary, Payload: []byte(`{"score":1}`)}},
		{"wrong shape", &outbox.Event{Type: "mood.logged", ContentType: outbox.ContentTypeJSON, Payload: []byte(`{"score":"high"}`)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := moodLogged.Decode(tt.e); err == nil {
				t.Fatal("decoded")
			}
		})
	}
	defer func() {
		if recover() == nil {
			t.Error("NewType took an invalid type")
		}
	}()
	outbox.NewType[MoodLogged]("mood.*")
}
