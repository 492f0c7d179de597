package httpapi

import (
	"net/http"
	"time"
)

// Streaming exempts a route that streams its answer (POST /v1/backup, an
// event stream) from the http.Server's WriteTimeout: net/http sets the
// connection's write deadline once per request, when it reads the
// request, so a long answer would be cut off mid-stream. Before h runs,
// Streaming clears that deadline; the answer may take as long as it needs,
// and a client that goes away still ends it (a failed write, the request's
// context). The read side needs nothing: the request's head and body are
// read under ReadTimeout, and net/http lifts the read deadline itself
// once the body is read. Wrap the daemon's own streaming routes with it
// when registering them (Server.Handle); the backup route is wrapped
// already.
func Streaming(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A writer without deadlines (http.ErrNotSupported, as
		// httptest.ResponseRecorder) has nothing to lift.
		_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
		h.ServeHTTP(w, r)
	})
}
