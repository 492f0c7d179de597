package outbox_test

import (
	"errors"
	"fmt"

	"github.com/fitiqcore/outbox"
)

func ExampleEvent_Validate() {
	e := &outbox.Event{Type: "mood.*", MaxAttempts: 5}
	err := e.Validate(outbox.Options{})
	var ve *outbox.ValidationError
	if errors.As(err, &ve) {
		fmt.Println("field:", ve.Field)
	}
	fmt.Println(errors.Is(err, outbox.ErrInvalidEvent))
	// Output:
	// field: type
	// true
}

func ExampleEvent_Message() {
	e := &outbox.Event{ID: "0192f0a0-0000-7000-8000-000000000001", Type: "mood.created", EntityID: "mood-1", EntitySeq: 1, MaxAttempts: 5}
	m := e.Message("outbox", "", 1, nil)
	fmt.Println(m.Subject)
	fmt.Println(m.Header.Get("Nats-Msg-Id") == e.ID, m.Header.Get("ce-subject"), m.Header.Get("ce-entityseq"))
	// Output:
	// outbox.mood.created
	// true mood-1 1
}

type MoodLogged struct {
	Score int    `json:"score"`
	Note  string `json:"note,omitempty"`
}

var moodLogged = outbox.NewType[MoodLogged]("mood.logged")

func ExampleNewType() {
	e, err := moodLogged.Event(MoodLogged{Score: 4})
	if err != nil {
		panic(err)
	}
	e.EntityID, e.UserID = "mood-1", "user-7"
	fmt.Println(e.Type, e.ContentType, string(e.Payload))

	back, err := moodLogged.Decode(e)
	fmt.Println(back.Score, err)
	// Output:
	// mood.logged application/json {"score":4}
	// 4 <nil>
}
