package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/fitiqcore/outbox/boltstore"
	"github.com/fitiqcore/outbox/httpapi"
)

// newControl is the control API (see the package doc).
func newControl(cfg *config, g *generator, w writer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, r *http.Request) {
		writeJSON(rw, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /stats", func(rw http.ResponseWriter, r *http.Request) {
		writeJSON(rw, http.StatusOK, g.Stats())
	})
	mux.HandleFunc("GET /accepted", func(rw http.ResponseWriter, r *http.Request) {
		list, err := w.Accepted(r.Context())
		if err != nil {
			writeJSON(rw, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		if list == nil {
			list = []accepted{}
		}
		writeJSON(rw, http.StatusOK, list)
	})
	// POST /pause waits (up to ?wait=, default 30s) until no batch is in
	// hand, so that every event is either accepted or abandoned when it
	// answers 200; 503 if a batch is still being retried then.
	mux.HandleFunc("POST /pause", func(rw http.ResponseWriter, r *http.Request) {
		g.SetPaused(true)
		wait := 30 * time.Second
		if s := r.URL.Query().Get("wait"); s != "" {
			d, err := time.ParseDuration(s)
			if err != nil {
				writeJSON(rw, http.StatusBadRequest, map[string]string{"error": "wait: " + err.Error()})
				return
			}
			wait = d
		}
		deadline := time.Now().Add(wait)
		for !g.Idle() {
			if time.Now().After(deadline) || r.Context().Err() != nil {
				writeJSON(rw, http.StatusServiceUnavailable, g.Stats())
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		writeJSON(rw, http.StatusOK, g.Stats())
	})
	mux.HandleFunc("POST /resume", func(rw http.ResponseWriter, r *http.Request) {
		g.SetPaused(false)
		writeJSON(rw, http.StatusOK, g.Stats())
	})
	mux.HandleFunc("POST /rate", func(rw http.ResponseWriter, r *http.Request) {
		eps, err := strconv.ParseFloat(r.URL.Query().Get("eps"), 64)
		if err != nil || eps <= 0 {
			writeJSON(rw, http.StatusBadRequest, map[string]string{"error": "eps: want a positive number of events per second"})
			return
		}
		g.SetRate(eps)
		writeJSON(rw, http.StatusOK, g.Stats())
	})
	if ew, ok := w.(interface {
		OutboxStats(context.Context) (boltstore.Stats, error)
	}); ok {
		mux.HandleFunc("GET /outbox/stats", func(rw http.ResponseWriter, r *http.Request) {
			st, err := ew.OutboxStats(r.Context())
			if err != nil {
				writeJSON(rw, http.StatusInternalServerError, map[string]string{"error": err.Error()})
				return
			}
			writeJSON(rw, http.StatusOK, httpapi.StatsOf(st)) // the relay's GET /v1/stats form
		})
	}
	if cfg.exposeFile != "" {
		mux.HandleFunc("GET /tail", func(rw http.ResponseWriter, r *http.Request) {
			serveTail(rw, r, cfg.exposeFile)
		})
	}
	return mux
}

// serveTail answers the bytes of path from ?offset= on (at most 8 MiB), with
// the file's size in X-File-Size. A missing file is empty.
func serveTail(rw http.ResponseWriter, r *http.Request, path string) {
	off, _ := strconv.ParseInt(r.URL.Query().Get("offset"), 10, 64)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		rw.Header().Set("X-File-Size", "0")
		rw.WriteHeader(http.StatusOK)
		return
	}
	if err != nil {
		writeJSON(rw, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		writeJSON(rw, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	rw.Header().Set("Content-Type", "application/octet-stream")
	rw.Header().Set("X-File-Size", strconv.FormatInt(st.Size(), 10))
	if off < 0 || off > st.Size() {
		off = st.Size()
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return
	}
	_, _ = io.Copy(rw, io.LimitReader(f, 8<<20))
}

func writeJSON(rw http.ResponseWriter, status int, v any) {
	rw.Header().Set("Content-Type", "application/json")
	rw.WriteHeader(status)
	_ = json.NewEncoder(rw).Encode(v)
}
