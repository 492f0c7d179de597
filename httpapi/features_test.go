package httpapi_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fitiqcore/outbox/httpapi"
)

const (
	reqParent   = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ownParent   = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	badParentUC = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01"
)

func (e *env) postWith(t testing.TB, path, body string, header map[string]string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := res.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return response{status: res.StatusCode, header: res.Header, body: []byte(b.String())}
}

// The request's traceparent and tracestate go with events that carry none;
// an event's own traceparent wins in a batch; a request header that does not
// parse is ignored, as W3C asks, while an event's own bad one is a 400.
func TestTraceContextAtIngest(t *testing.T) {
	v := newEnv(t, httpapi.Options{}, nil)
	hdr := map[string]string{"traceparent": reqParent, "tracestate": "rojo=00f067aa0ba902b7"}
	r := v.postWith(t, "/v1/events", `{"type":"mood.logged","payload":{}}`, hdr)
	r.wantStatus(t, http.StatusCreated)
	m := r.object(t)
	if m["traceparent"] != reqParent || m["tracestate"] != "rojo=00f067aa0ba902b7" {
		t.Fatalf("stored %v", m)
	}
	stored, err := v.store.Get(context.Background(), m["id"].(string))
	if err != nil || stored.TraceParent != reqParent {
		t.Fatalf("store has %+v, %v", stored, err)
	}

	r = v.postWith(t, "/v1/events/batch", `{"events":[{"type":"a.b"},{"type":"a.b","traceparent":"`+ownParent+`"}]}`, hdr)
	r.wantStatus(t, http.StatusCreated)
	evs := r.object(t)["events"].([]any)
	if got := evs[0].(map[string]any)["traceparent"]; got != reqParent {
		t.Errorf("events[0] traceparent %v, want the request's", got)
	}
	if got := evs[1].(map[string]any); got["traceparent"] != ownParent || got["tracestate"] != nil {
		t.Errorf("events[1] %v, want its own traceparent and no tracestate", got)
	}

	r = v.postWith(t, "/v1/events", `{"type":"a.b"}`, map[string]string{"traceparent": badParentUC})
	r.wantStatus(t, http.StatusCreated)
	if m := r.object(t); m["traceparent"] != nil {
		t.Errorf("a bad traceparent header was stored: %v", m)
	}
	v.post(t, "/v1/events", `{"type":"a.b","traceparent":"`+badParentUC+`"}`).wantError(t, http.StatusBadRequest, "traceparent")
	v.post(t, "/v1/events", `{"type":"a.b","tracestate":"a=b"}`).wantError(t, http.StatusBadRequest, "tracestate")
}

// deliver_at: stored pending with next_attempt_at = deliver_at; past means
// now; more than 366 days ahead is a 400 naming deliver_at.
func TestDeliverAtAtIngest(t *testing.T) {
	v := newEnv(t, httpapi.Options{}, nil)
	at := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	r := v.post(t, "/v1/events", `{"type":"reminder.due","entity_id":"r-1","deliver_at":"`+at.Format(time.RFC3339)+`"}`)
	r.wantStatus(t, http.StatusCreated)
	m := r.object(t)
	if m["status"] != "pending" || m["deliver_at"] != at.Format(time.RFC3339) || m["next_attempt_at"] != at.Format(time.RFC3339) {
		t.Fatalf("stored %v", m)
	}
	past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	m = v.post(t, "/v1/events", `{"type":"reminder.due","deliver_at":"`+past+`"}`).object(t)
	if m["next_attempt_at"] != nil {
		t.Errorf("a deliver_at in the past is now, got next_attempt_at %v", m["next_attempt_at"])
	}
	far := time.Now().Add(367 * 24 * time.Hour).UTC().Format(time.RFC3339)
	v.post(t, "/v1/events", `{"type":"reminder.due","deliver_at":"`+far+`"}`).wantError(t, http.StatusBadRequest, "deliver_at")
	v.post(t, "/v1/events", `{"type":"reminder.due","deliver_at":"at nine"}`).wantError(t, http.StatusBadRequest, "deliver_at")
}

// Outbox-Created says how many events of a post were newly stored, where the
// status (201 when any was) does not tell.
func TestCreatedHeader(t *testing.T) {
	v := newEnv(t, httpapi.Options{}, nil)
	a, b, c := "0192f0a0-0000-7000-8000-00000000000a", "0192f0a0-0000-7000-8000-00000000000b", "0192f0a0-0000-7000-8000-00000000000c"
	ev := func(id string) string { return `{"id":"` + id + `","type":"a.b"}` }
	for _, tt := range []struct {
		body, want string
		status     int
	}{
		{`{"events":[` + ev(a) + `,` + ev(b) + `]}`, "2", http.StatusCreated},
		{`{"events":[` + ev(a) + `,` + ev(b) + `,` + ev(c) + `]}`, "1", http.StatusCreated},
		{`{"events":[` + ev(c) + `,` + ev(a) + `]}`, "0", http.StatusOK},
	} {
		r := v.post(t, "/v1/events/batch", tt.body)
		r.wantStatus(t, tt.status)
		if got := r.header.Get(httpapi.HeaderCreated); got != tt.want {
			t.Errorf("%s: %s %q, want %q", tt.body, httpapi.HeaderCreated, got, tt.want)
		}
	}
	if got := v.post(t, "/v1/events", ev(a)).header.Get(httpapi.HeaderCreated); got != "0" {
		t.Errorf("single re-post: %s %q, want 0", httpapi.HeaderCreated, got)
	}
}
