package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"slices"
	"strings"
)

// openPaths answer without a token and are never refused as busy: probes
// must work for orchestrators that hold no secret, and a busy server is
// alive.
var openPaths = []string{"/healthz", "/readyz"}

func isOpenPath(path string) bool { return slices.Contains(openPaths, path) }

// authorized reports whether r may be served: always when no token is set,
// for the probes, and otherwise only with "Authorization: Bearer <token>".
// Both sides are hashed first, so the constant-time compare does not reveal
// the token's length either.
func (s *Server) authorized(r *http.Request) bool {
	if s.token == nil {
		return true
	}
	if isOpenPath(r.URL.Path) {
		return true
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
