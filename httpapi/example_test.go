package httpapi_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/boltstore"
	"github.com/fitiqcore/outbox/httpapi"
)

func Example() {
	dir, err := os.MkdirTemp("", "outbox")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	store, err := boltstore.Open(filepath.Join(dir, "outbox.db"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	srv := httptest.NewServer(httpapi.New(store, httpapi.Options{}))
	defer srv.Close()

	res, err := srv.Client().Post(srv.URL+"/v1/events", "application/json",
		strings.NewReader(`{"type":"mood.created","entity_id":"mood-1","payload":{"score": 7}}`))
	if err != nil {
		log.Fatal(err)
	}
	var e outbox.Event
	if err := json.NewDecoder(res.Body).Decode(&e); err != nil {
		log.Fatal(err)
	}
	res.Body.Close()
	fmt.Println(res.StatusCode, e.Status, e.EntitySeq, string(e.Payload))

	res, err = srv.Client().Post(srv.URL+"/v1/events", "application/json", strings.NewReader(`{"type":"mood.*"}`))
	if err != nil {
		log.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	fmt.Print(res.StatusCode, " ", string(body))
	// Output:
	// 201 pending 1 {"score":7}
	// 400 {"error":"invalid type: character '*' not allowed in \"mood.*\" (tokens of [A-Za-z0-9_-] separated by dots)"}
}
