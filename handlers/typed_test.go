package handlers_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fitiqcore/outbox/internal/poll"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/handlers"
)

// TestHandleJSON: an event whose payload decodes reaches the handler as a
// T; one that does not (JSON that does not fit T, a payload that is not
// JSON) is dead-lettered at its first delivery, as permanent, without
// reaching the handler.
func TestHandleJSON(t *testing.T) {
	tests := []struct {
		name        string
		payload     string
		contentType string
		want        *MoodLogged // nil: dead-lettered
		wantErr     string      // in Outbox-DLQ-Error
	}{
		{"fits", `{"score":7,"note":"calm","unknown":true}`, outbox.ContentTypeJSON, &MoodLogged{Score: 7, Note: "calm"}, ""},
		{"JSON of another shape", `{"score":"seven"}`, outbox.ContentTypeJSON, nil, "cannot unmarshal"},
		{"not JSON", `score=7`, outbox.ContentTypeBinary, nil, "want JSON"},
	}
	v := newEnv(t, false)
	r := v.router("typed")
	var mu sync.Mutex
	got := map[string][]MoodLogged{} // by event id
	handlers.HandleJSON(r, moodLogged, func(_ context.Context, e *outbox.Event, m MoodLogged) error {
		mu.Lock()
		defer mu.Unlock()
		got[e.ID] = append(got[e.ID], m)
		return nil
	})
	v.start(r, "typed")
	ids := make([]string, len(tests))
	for i, tt := range tests {
		e := event(t, moodLogged.Name(), "user-1", uint64(i+1))
		e.Payload, e.ContentType = []byte(tt.payload), tt.contentType
		v.publish(e)
		ids[i] = e.ID
	}
	v.settled("typed", 10*time.Second)
	poll.Until(t, 5*time.Second, "2 dead letters", func() bool { return v.dlqCount() == 2 })
	dead := map[string]map[string]string{} // by event id: the Outbox-DLQ-* headers
	for _, m := range v.deadLetters() {
		dead[m.Header.Get(outbox.HeaderID)] = map[string]string{
			"reason": m.Header.Get(handlers.HeaderDLQReason), "deliveries": m.Header.Get(handlers.HeaderDLQDeliveries),
			"error": m.Header.Get(handlers.HeaderDLQError),
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := ids[i]
			if tt.want != nil {
				if len(got[id]) != 1 || got[id][0] != *tt.want {
					t.Errorf("handler got %+v, want %+v once", got[id], *tt.want)
				}
				if dead[id] != nil {
					t.Errorf("dead-lettered: %v", dead[id])
				}
				return
			}
			if len(got[id]) != 0 {
				t.Errorf("handler got %+v for a payload that does not decode", got[id])
			}
			d := dead[id]
			if d["reason"] != "permanent" || d["deliveries"] != "1" || !strings.Contains(d["error"], tt.wantErr) {
				t.Errorf("dead letter %v, want reason permanent after 1 delivery, error with %q", d, tt.wantErr)
			}
		})
	}
}

// TestHandleJSONPanics: HandleJSON refuses, as Handle does, what can only
// be a programming error.
func TestHandleJSONPanics(t *testing.T) {
	v := newEnv(t, true)
	r := v.router("typed")
	fn := func(context.Context, *outbox.Event, MoodLogged) error { return nil }
	for _, tt := range []struct {
		name     string
		register func()
	}{
		{"nil func", func() { handlers.HandleJSON[MoodLogged](r, moodLogged, nil) }},
		{"zero Type", func() { handlers.HandleJSON(r, outbox.Type[MoodLogged]{}, fn) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			tt.register()
		})
	}
}
