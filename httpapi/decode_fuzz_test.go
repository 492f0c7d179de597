package httpapi_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
	"github.com/fitiqcore/outbox/httpapi"
)

// FuzzPostEvent: any body posted to POST /v1/events and, wrapped in a batch,
// to POST /v1/events/batch is answered with a client status and a JSON error
// naming what is wrong, or stored: never a 5xx, never a panic. What is
// stored is what was posted: the answer's application fields are the stored
// event's, and identifiers survive as sent (a client's entity_id is never
// altered on its way in). Seeds: testdata/fuzz/FuzzPostEvent.
func FuzzPostEvent(f *testing.F) {
	for _, s := range []string{
		`{"type":"mood.created","entity_id":"m-1","user_id":"u1","payload":{"score":4}}`,
		`{"id":"0192f0a0-0000-7000-8000-000000000001","type":"a.b","priority":9,"metadata":{"k":"v"},"payload_base64":"AAE=","content_type":"application/octet-stream"}`,
		`{"type":"t","retry":{"initial_interval":"1s","max_interval":"1m","multiplier":2},"max_attempts":3,"is_new_record":true}`,
		`{"type":"t","entity_id":" A"}`, `{"type":"t","entity_id":"\udc00"}`, `{"type":"t","metadata":{"n":12345678901234567890}}`,
		`{"type":"t","created_at":"1700-01-01T00:00:00Z"}`, `{"type":"t","payload":"\ud800"}`, `[]`, `{"type":1}`, `{`,
	} {
		f.Add([]byte(s))
	}
	store, err := boltstore.Open(filepath.Join(f.TempDir(), "outbox.db"), nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { store.Close() })
	store.DB().NoSync = true // fuzzing measures decoding, not the disk
	api := httpapi.New(store, httpapi.Options{})
	post := func(t *testing.T, path string, body []byte) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("POST %s %q: %d %s", path, body, rec.Code, rec.Body)
		}
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("POST %s %q: answer is not JSON: %q", path, body, rec.Body)
		}
		return rec
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, r := range []struct {
			path string
			body []byte
		}{{"/v1/events", body}, {"/v1/events/batch", append(append([]byte(`{"events":[`), body...), "]}"...)}} {
			rec := post(t, r.path, r.body)
			if rec.Code != http.StatusCreated {
				if rec.Code == http.StatusOK {
					continue // stored already, by the other route
				}
				var e struct{ Error string }
				if json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Error == "" {
					t.Fatalf("POST %s: %d without an error message: %s", r.path, rec.Code, rec.Body)
				}
				continue
			}
			var got outbox.Event
			if r.path == "/v1/events" {
				err = json.Unmarshal(rec.Body.Bytes(), &got)
			} else {
				var b struct{ Events []outbox.Event }
				if err = json.Unmarshal(rec.Body.Bytes(), &b); err == nil && len(b.Events) == 1 {
					got = b.Events[0]
				}
			}
			if err != nil {
				t.Fatalf("answer does not decode: %v", err)
			}
			stored, err := store.Get(t.Context(), got.ID)
			if err != nil {
				t.Fatalf("201 but not stored: %v", err)
			}
			if !stored.SameContent(&got) {
				t.Fatalf("answered\n%+v\nstored\n%+v", got, stored)
			}
			var sent struct {
				EntityID *string `json:"entity_id"`
				UserID   *string `json:"user_id"`
			}
			if json.Unmarshal(body, &sent) == nil && sent.EntityID != nil && *sent.EntityID != stored.EntityID {
				t.Fatalf("entity_id %q stored as %q", *sent.EntityID, stored.EntityID)
			}
			if sent.UserID != nil && *sent.UserID != stored.UserID {
				t.Fatalf("user_id %q stored as %q", *sent.UserID, stored.UserID)
			}
		}
	})
}
