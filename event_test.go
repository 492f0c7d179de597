package outbox_test

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/fitiqcore/outbox"
	"github.com/google/uuid"
)

func TestValidateNamesTheField(t *testing.T) {
	ok := func() outbox.Event {
		return outbox.Event{Type: "mood.created", EntityID: "m1", UserID: "u1", MaxAttempts: 5}
	}
	tests := []struct {
		name  string
		edit  func(*outbox.Event)
		field string
		large bool
	}{
		{"bad id", func(e *outbox.Event) { e.ID = "not-a-uuid" }, "id", false},
		{"empty type", func(e *outbox.Event) { e.Type = "" }, "type", false},
		{"wildcard star", func(e *outbox.Event) { e.Type = "mood.*" }, "type", false},
		{"wildcard gt", func(e *outbox.Event) { e.Type = "mood.>" }, "type", false},
		{"space", func(e *outbox.Event) { e.Type = "mood created" }, "type", false},
		{"empty token", func(e *outbox.Event) { e.Type = "mood..created" }, "type", false},
		{"leading dot", func(e *outbox.Event) { e.Type = ".mood" }, "type", false},
		{"trailing dot", func(e *outbox.Event) { e.Type = "mood." }, "type", false},
		{"too long type", func(e *outbox.Event) { e.Type = strings.Repeat("a", 129) }, "type", false},
		{"entity too long", func(e *outbox.Event) { e.EntityID = strings.Repeat("e", 257) }, "entity_id", false},
		{"entity newline", func(e *outbox.Event) { e.EntityID = "a\r\nb" }, "entity_id", false},
		{"user too long", func(e *outbox.Event) { e.UserID = strings.Repeat("u", 257) }, "user_id", false},
		{"user bad utf8", func(e *outbox.Event) { e.UserID = "\xff" }, "user_id", false},
		{"priority low", func(e *outbox.Event) { e.Priority = -1 }, "priority", false},
		{"priority high", func(e *outbox.Event) { e.Priority = 10 }, "priority", false},
		{"max attempts", func(e *outbox.Event) { e.MaxAttempts = 0 }, "max_attempts", false},
		{"metadata array", func(e *outbox.Event) { e.Metadata = json.RawMessage(`[1]`) }, "metadata", false},
		{"metadata broken", func(e *outbox.Event) { e.Metadata = json.RawMessage(`{"a":`) }, "metadata", false},
		{"payload too large", func(e *outbox.Event) { e.Payload = make([]byte, 1025) }, "payload", true},
		{"retry policy", func(e *outbox.Event) {
			e.Retry = &outbox.RetryPolicy{InitialInterval: 0, MaxInterval: 1, Multiplier: 2}
		}, "retry.initial_interval", false},
		{"content type newline", func(e *outbox.Event) { e.ContentType = "a\nb" }, "content_type", false},
		// Issue 9: what NATS or JSON would alter is refused, not stored.
		{"entity leading space", func(e *outbox.Event) { e.EntityID = " A" }, "entity_id", false},
		{"entity trailing space", func(e *outbox.Event) { e.EntityID = "A " }, "entity_id", false},
		{"entity trailing tab", func(e *outbox.Event) { e.EntityID = "A\t" }, "entity_id", false},
		{"user leading nbsp", func(e *outbox.Event) { e.UserID = "\u00a0u" }, "user_id", false},
		{"entity bad utf8", func(e *outbox.Event) { e.EntityID = "a\xffb" }, "entity_id", false},
		{"content type NUL", func(e *outbox.Event) { e.ContentType = "application/json\x00" }, "content_type", false},
		{"content type non-ASCII", func(e *outbox.Event) { e.ContentType = "text/plain; charset=\u00e9" }, "content_type", false},
		{"content type edge space", func(e *outbox.Event) { e.ContentType = " text/plain" }, "content_type", false},
		{"content type too long", func(e *outbox.Event) { e.ContentType = strings.Repeat("a", 257) }, "content_type", false},
		{"metadata bad utf8", func(e *outbox.Event) { e.Metadata = json.RawMessage("{\"a\":\"\xff\"}") }, "metadata", false},
		{"metadata too large", func(e *outbox.Event) {
			e.Metadata = json.RawMessage(`{"a":"` + strings.Repeat("x", outbox.MaxMetadataLen) + `"}`)
		}, "metadata", true},
		{"max attempts over the limit", func(e *outbox.Event) { e.MaxAttempts = outbox.MaxAttemptsLimit + 1 }, "max_attempts", false},
		// Issue 9 row 1: a retry interval past year 2262 once added to now.
		{"retry initial past the bound", func(e *outbox.Event) {
			e.Retry = &outbox.RetryPolicy{InitialInterval: 2200000 * time.Hour, MaxInterval: 2200000 * time.Hour, Multiplier: 2}
		}, "retry.initial_interval", false},
		{"retry max past the bound", func(e *outbox.Event) {
			e.Retry = &outbox.RetryPolicy{InitialInterval: time.Second, MaxInterval: outbox.MaxRetryInterval + 1, Multiplier: 2}
		}, "retry.max_interval", false},
		{"retry multiplier NaN", func(e *outbox.Event) {
			e.Retry = &outbox.RetryPolicy{InitialInterval: time.Second, MaxInterval: time.Minute, Multiplier: math.NaN()}
		}, "retry.multiplier", false},
		{"retry multiplier huge", func(e *outbox.Event) {
			e.Retry = &outbox.RetryPolicy{InitialInterval: time.Second, MaxInterval: time.Minute, Multiplier: 1e300}
		}, "retry.multiplier", false},
		// Issue 9 row 9: a client's created_at is bounded.
		{"created_at in 1700", func(e *outbox.Event) { e.CreatedAt = time.Date(1700, 1, 1, 0, 0, 0, 0, time.UTC) }, "created_at", false},
		{"created_at next week", func(e *outbox.Event) { e.CreatedAt = time.Now().Add(7 * 24 * time.Hour) }, "created_at", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := ok()
			tt.edit(&e)
			err := e.Validate(outbox.Options{MaxPayload: 1024})
			if !errors.Is(err, outbox.ErrInvalidEvent) {
				t.Fatalf("err = %v, want ErrInvalidEvent", err)
			}
			var ve *outbox.ValidationError
			if !errors.As(err, &ve) || ve.Field != tt.field {
				t.Fatalf("err = %v, want field %s", err, tt.field)
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Errorf("message %q does not name %s", err, tt.field)
			}
			if got := errors.Is(err, outbox.ErrPayloadTooLarge); got != tt.large {
				t.Errorf("errors.Is(ErrPayloadTooLarge) = %v", got)
			}
		})
	}
}

func TestValidTypes(t *testing.T) {
	for _, typ := range []string{"a", "mood.created", "progressEntry", "a-b_c.D9", strings.Repeat("a", 128)} {
		if err := outbox.ValidateType(typ); err != nil {
			t.Errorf("%q: %v", typ, err)
		}
	}
}

func TestPrepareDefaults(t *testing.T) {
	e := &outbox.Event{Type: "t", Metadata: json.RawMessage("{ \"a\" : 1 }")}
	if err := e.Prepare(outbox.Options{MaxAttempts: 7}); err != nil {
		t.Fatal(err)
	}
	u, err := uuid.Parse(e.ID)
	if err != nil || u.Version() != 7 {
		t.Errorf("id %q is not a UUIDv7", e.ID)
	}
	if e.MaxAttempts != 7 || e.ContentType != outbox.ContentTypeBinary || string(e.Metadata) != `{"a":1}` {
		t.Errorf("defaults: max_attempts %d content_type %q metadata %s", e.MaxAttempts, e.ContentType, e.Metadata)
	}
	n := &outbox.Event{Type: "t", Metadata: json.RawMessage("null")}
	if err := n.Prepare(outbox.Options{}); err != nil || n.Metadata != nil || n.MaxAttempts != 5 {
		t.Errorf("null metadata: %v %s, max_attempts %d", err, n.Metadata, n.MaxAttempts)
	}
	c := &outbox.Event{ID: "{6BA7B810-9DAD-11D1-80B4-00C04FD430C8}", Type: "t"}
	if err := c.Prepare(outbox.Options{}); err != nil || c.ID != "6ba7b810-9dad-11d1-80b4-00c04fd430c8" {
		t.Errorf("id not canonical: %q %v", c.ID, err)
	}
}

func TestJSONPayloadForms(t *testing.T) {
	var j outbox.Event
	if err := json.Unmarshal([]byte(`{"type":"t","payload":{ "a" : [1, 2] }}`), &j); err != nil {
		t.Fatal(err)
	}
	if string(j.Payload) != `{"a":[1,2]}` || j.ContentType != outbox.ContentTypeJSON {
		t.Errorf("JSON payload: %s %s", j.Payload, j.ContentType)
	}
	var b outbox.Event
	if err := json.Unmarshal([]byte(`{"type":"t","payload_base64":"AAEC/w=="}`), &b); err != nil {
		t.Fatal(err)
	}
	if string(b.Payload) != "\x00\x01\x02\xff" || b.ContentType != outbox.ContentTypeBinary {
		t.Errorf("base64 payload: %q %s", b.Payload, b.ContentType)
	}
	out, _ := json.Marshal(b)
	if !strings.Contains(string(out), `"payload_base64":"AAEC/w=="`) {
		t.Errorf("binary payload marshalled as %s", out)
	}
	out, _ = json.Marshal(j)
	if !strings.Contains(string(out), `"payload":{"a":[1,2]}`) {
		t.Errorf("JSON payload marshalled as %s", out)
	}
	var both outbox.Event
	err := json.Unmarshal([]byte(`{"type":"t","payload":1,"payload_base64":"AA=="}`), &both)
	if !errors.Is(err, outbox.ErrInvalidEvent) {
		t.Errorf("payload and payload_base64: %v", err)
	}
	var bad outbox.Event
	if err := json.Unmarshal([]byte(`{"type":"t","payload_base64":"!!"}`), &bad); !errors.Is(err, outbox.ErrInvalidEvent) {
		t.Errorf("bad base64: %v", err)
	}
	var rp outbox.Event
	if err := json.Unmarshal([]byte(`{"type":"t","retry":{"initial_interval":"2s","max_interval":"1m","multiplier":3}}`), &rp); err != nil {
		t.Fatal(err)
	}
	if rp.Retry == nil || rp.Retry.InitialInterval != 2*time.Second || rp.Retry.MaxInterval != time.Minute || rp.Retry.Multiplier != 3 {
		t.Errorf("retry policy: %+v", rp.Retry)
	}
}

func TestCloudEventsRoundTrip(t *testing.T) {
	in := &outbox.Event{
		ID: uuid.NewString(), Type: "journal.updated", EntityID: "journal-9", UserID: "user 1", Priority: 8,
		IsNewRecord: true, MaxAttempts: 3, Metadata: json.RawMessage(`{"k":"v\nw"}`), Payload: []byte{0, 1, 2},
		ContentType: "application/octet-stream", EntitySeq: 42, CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC),
		Retry: &outbox.RetryPolicy{InitialInterval: time.Second, MaxInterval: time.Minute, Multiplier: 2.5},
	}
	m := in.Message("app.events", "", 2, nil)
	if m.Subject != "app.events.journal.updated" {
		t.Errorf("subject %s", m.Subject)
	}
	for k, want := range map[string]string{
		"ce-specversion": "1.0", "ce-id": in.ID, "ce-type": in.Type, "ce-source": outbox.DefaultSource,
		"ce-subject": "journal-9", "Nats-Msg-Id": in.ID, "ce-attempt": "2", "ce-entityseq": "42",
		"ce-time": "2026-01-02T03:04:05.000000006Z", "content-type": "application/octet-stream",
	} {
		if got := m.Header.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	out, err := outbox.FromMessage(m.Header, m.Data)
	if err != nil {
		t.Fatal(err)
	}
	if out.ID != in.ID || out.Type != in.Type || out.EntityID != in.EntityID || out.UserID != in.UserID ||
		out.Priority != in.Priority || out.IsNewRecord != in.IsNewRecord || out.MaxAttempts != in.MaxAttempts ||
		string(out.Metadata) != string(in.Metadata) || string(out.Payload) != string(in.Payload) ||
		out.ContentType != in.ContentType || out.EntitySeq != in.EntitySeq || !out.CreatedAt.Equal(in.CreatedAt) ||
		out.AttemptCount != 2 || *out.Retry != *in.Retry {
		t.Errorf("round trip differs:\n in %+v\nout %+v", in, out)
	}
	// The relay's policy travels for events without their own.
	def := &outbox.RetryPolicy{InitialInterval: 3 * time.Second, MaxInterval: time.Hour, Multiplier: 4}
	plain := &outbox.Event{ID: uuid.NewString(), Type: "t", MaxAttempts: 1}
	got, err := outbox.FromMessage(plain.Message("p", "src", 1, def).Header, nil)
	if err != nil || got.Retry == nil || *got.Retry != *def || got.EntityID != "" || got.EntitySeq != 0 {
		t.Errorf("default policy: %+v %v", got, err)
	}
	if _, err := outbox.FromMessage(nil, nil); !errors.Is(err, outbox.ErrInvalidEvent) {
		t.Errorf("empty headers: %v", err)
	}
}

func TestSameContent(t *testing.T) {
	a := &outbox.Event{ID: "x", Type: "t", Metadata: json.RawMessage(`{"a":1,"b":2}`), Payload: []byte("p")}
	b := *a
	b.Metadata = json.RawMessage(`{"b":2, "a":1}`)
	b.Status, b.Seq = outbox.StatusCompleted, 9 // store-owned fields do not count
	if !a.SameContent(&b) {
		t.Error("same content reported different")
	}
	b.Payload = []byte("q")
	if a.SameContent(&b) {
		t.Error("different payload reported same")
	}
	// Numbers are compared as written, not as float64 (issue 9 row 15).
	c, d := *a, *a
	c.Metadata = json.RawMessage(`{"n":12345678901234567890}`)
	d.Metadata = json.RawMessage(`{"n":12345678901234567891}`)
	if c.SameContent(&d) {
		t.Error("metadata with different big numbers reported same")
	}
}

// TestMessageLimit: an event whose headers and payload together exceed the
// broker's limit is refused with 413's sentinel, naming the field that makes
// it large (issue 9 rows 2 and 3); one within it is accepted.
func TestMessageLimit(t *testing.T) {
	lim := outbox.MessageLimit(outbox.DefaultMaxMessage)
	base := func() outbox.Event { return outbox.Event{Type: "t", EntityID: "e", UserID: "u", MaxAttempts: 5} }
	tests := []struct {
		name  string
		edit  func(*outbox.Event)
		field string // "" = accepted
	}{
		{"small", func(e *outbox.Event) { e.Payload = []byte("x") }, ""},
		{"payload at the default limit", func(e *outbox.Event) { e.Payload = make([]byte, outbox.DefaultPayload) }, "payload"},
		{"payload just fits", func(e *outbox.Event) { e.Payload = make([]byte, lim-outbox.HeaderAllowance-3) }, ""},
		{"payload plus metadata over", func(e *outbox.Event) {
			e.Metadata = json.RawMessage(`{"a":"` + strings.Repeat("m", 30<<10) + `"}`)
			e.Payload = make([]byte, lim-outbox.HeaderAllowance-(20<<10))
		}, "payload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := base()
			tt.edit(&e)
			err := e.Validate(outbox.Options{MaxPayload: 4 << 20})
			if tt.field == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var ve *outbox.ValidationError
			if !errors.As(err, &ve) || ve.Field != tt.field || !errors.Is(err, outbox.ErrPayloadTooLarge) {
				t.Fatalf("err = %v, want a too-large error naming %s", err, tt.field)
			}
		})
	}
	// A broker that told a larger limit admits more; a negative limit none.
	e := base()
	e.Payload = make([]byte, 2<<20)
	if err := e.Validate(outbox.Options{MaxPayload: 4 << 20, MaxMessage: outbox.MessageLimit(4 << 20)}); err != nil {
		t.Errorf("2 MiB under a 4 MiB broker: %v", err)
	}
	if err := e.Validate(outbox.Options{MaxPayload: 4 << 20, MaxMessage: -1}); err != nil {
		t.Errorf("no message limit: %v", err)
	}
}

// TestWireSizeBoundsTheMessage: WireSize is never below what NATS counts for
// the message (headers block and body), for events at the bounds of every
// field, whatever the relay's retry policy and a source of MaxSourceLen.
func TestWireSizeBoundsTheMessage(t *testing.T) {
	long := func(n int) string { return strings.Repeat("z", n) }
	e := &outbox.Event{
		ID: uuid.NewString(), Type: long(outbox.MaxTypeLen), EntityID: long(outbox.MaxIDFieldLen),
		UserID: long(outbox.MaxIDFieldLen), Priority: 9, IsNewRecord: true, MaxAttempts: outbox.MaxAttemptsLimit,
		Metadata: json.RawMessage(`{"k":"` + long(outbox.MaxMetadataLen-8) + `"}`), Payload: []byte("body"), ContentType: long(outbox.MaxContentTypeLen),
		EntitySeq: math.MaxUint64, CreatedAt: time.Now().Add(-time.Hour).Truncate(time.Second).Add(999999999).In(time.FixedZone("x", -3600)),
		Retry: &outbox.RetryPolicy{InitialInterval: outbox.MaxRetryInterval - 1, MaxInterval: outbox.MaxRetryInterval - 1, Multiplier: 1.0000000000000002},
	}
	m := e.Message("prefix", long(outbox.MaxSourceLen), math.MaxInt32, nil)
	n := len("NATS/1.0\r\n") + len("\r\n") + len(m.Data)
	for k, vs := range m.Header {
		for _, v := range vs {
			n += len(k) + len(": ") + len(v) + len("\r\n")
		}
	}
	if err := e.Validate(outbox.Options{}); err != nil {
		t.Fatalf("the event at every bound is not valid: %v", err)
	}
	if n > e.WireSize() {
		t.Errorf("message is %d bytes, WireSize says at most %d", n, e.WireSize())
	}
	// JetStream refuses a header block over 65,535 bytes (10097): the
	// largest valid event's block leaves room for a dead letter's headers.
	if block := n - len(m.Data); block > outbox.MaxHeaderBlock-outbox.DeadLetterReserve {
		t.Errorf("header block of %d bytes, over %d - %d", block, outbox.MaxHeaderBlock, outbox.DeadLetterReserve)
	}
}

// TestTruncateError: at most MaxErrorLen bytes of valid UTF-8, cut on a
// character boundary (an error text is served as JSON and sent in headers).
func TestTruncateError(t *testing.T) {
	for _, in := range []string{
		"short", strings.Repeat("x", outbox.MaxErrorLen), strings.Repeat("x", outbox.MaxErrorLen+1),
		strings.Repeat("é", outbox.MaxErrorLen), strings.Repeat("\xff", outbox.MaxErrorLen*2), "a\xffb",
		strings.Repeat("x", outbox.MaxErrorLen-2) + "€€",
	} {
		got := outbox.TruncateError(in)
		if len(got) > outbox.MaxErrorLen || !utf8.ValidString(got) {
			t.Errorf("TruncateError(%d bytes) = %d bytes, valid UTF-8 %v", len(in), len(got), utf8.ValidString(got))
		}
		if len(in) <= outbox.MaxErrorLen && utf8.ValidString(in) && got != in {
			t.Errorf("a short valid text was changed")
		}
	}
}

// TestMarshalInvalidUTF8Payload: a JSON-typed payload that is not valid
// UTF-8 is served as payload_base64, so the answer stays valid JSON.
func TestMarshalInvalidUTF8Payload(t *testing.T) {
	e := outbox.Event{Type: "t", ContentType: outbox.ContentTypeJSON, Payload: []byte("\"\xff\"")}
	b, err := json.Marshal(e)
	if err != nil || !json.Valid(b) || !strings.Contains(string(b), `"payload_base64"`) {
		t.Errorf("marshalled as %q (%v)", b, err)
	}
}

// TestMarshalKeepsPayloadBytes: a JSON payload is written as stored, with no
// HTML escaping ("&" came back as "\u0026" in the API's answers; found by
// FuzzPostEvent). An encoder that escapes HTML around the event still does.
func TestMarshalKeepsPayloadBytes(t *testing.T) {
	e := outbox.Event{Type: "t", ContentType: outbox.ContentTypeJSON, Payload: []byte(`{"q":"a&b<c>"}`)}
	raw, err := e.MarshalJSON()
	if err != nil || !strings.Contains(string(raw), `"payload":{"q":"a&b<c>"}`) {
		t.Fatalf("MarshalJSON escaped the payload: %s (%v)", raw, err)
	}
	var back outbox.Event
	if err := json.Unmarshal(raw, &back); err != nil || string(back.Payload) != string(e.Payload) {
		t.Errorf("payload came back as %s (%v)", back.Payload, err)
	}
}
