package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// openPaths answer without a token: probes must work for orchestrators that
// hold no secret.
var openPaths = []string{"/healthz", "/readyz"}

// authorized reports whether r may be served: always when no token is set,
// for the probes, and otherwise only with "Authorization: Bearer <token>".
// Both sides are hashed first, so the constant-time compare does not reveal
// the token's length either.
func (s *Server) authorized(r *http.Request) bool {
	if s.token == nil {
		return true
	}
	for _, p := range openPaths {
		if r.URL.Path == p {
			return true
		}
	}
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return subtle.ConstantTimeCompare(got[:], s.token[:]) == 1
}

// unauthorized answers 401 with a JSON body, without saying whether a route
// exists.
func (s *Server) unauthorized(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="outbox"`)
	msg := "unauthorized: missing Authorization: Bearer <token> (http.token is set)"
	if r.Header.Get("Authorization") != "" {
		msg = "unauthorized: wrong token"
	}
	s.writeJSON(w, http.StatusUnauthorized, errorBody{Error: msg})
}
