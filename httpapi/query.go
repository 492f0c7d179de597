package httpapi

import (
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fitiqcore/outbox"
)

// Limits of the listing routes.
const (
	DefaultLimit = 100  // events per page when limit is absent
	MaxLimit     = 1000 // the largest limit accepted
)

// params reads a request's query parameters, refusing unknown ones and
// single-valued ones given twice, so that a typo never widens what a
// destructive route touches. Every error names the parameter.
type params struct {
	q   url.Values
	err error
}

// queryParams checks r's query against the parameters a route accepts.
func queryParams(r *http.Request, known ...string) *params {
	q, err := url.ParseQuery(r.URL.RawQuery)
	p := &params{q: q}
	if err != nil {
		p.err = reject(http.StatusBadRequest, "malformed query: %v", err)
		return p
	}
	for _, k := range slices.Sorted(maps.Keys(q)) {
		if !slices.Contains(known, k) {
			p.err = reject(http.StatusBadRequest, "unknown parameter %q (this route takes: %s)", k, strings.Join(known, ", "))
			break
		}
	}
	return p
}

// str is a single-valued parameter, "" when absent.
func (p *params) str(name string) string {
	vs := p.q[name]
	if len(vs) > 1 && p.err == nil {
		p.err = reject(http.StatusBadRequest, "invalid %s: given %d times, want once", name, len(vs))
	}
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

// list is a repeatable parameter: each value is one item, byte for byte
// (never split on commas, never trimmed: an entity may be named "a,b" or
// " c"); empty values name nothing and are dropped, as an empty
// single-valued parameter counts as absent.
func (p *params) list(name string) []string {
	var out []string
	for _, v := range p.q[name] {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}

// status is an event status, "" when absent.
func (p *params) status(name string) outbox.Status {
	v := outbox.Status(p.str(name))
	if v != "" && !v.Valid() && p.err == nil {
		p.err = reject(http.StatusBadRequest, "invalid %s: %q (want pending, processing, completed or failed)", name, v)
	}
	return v
}

// limit is a page size in 1..MaxLimit, DefaultLimit when absent.
func (p *params) limit(name string) int {
	v := p.str(name)
	if v == "" {
		return DefaultLimit
	}
	n, err := strconv.Atoi(v)
	if (err != nil || n < 1 || n > MaxLimit) && p.err == nil {
		p.err = reject(http.StatusBadRequest, "invalid %s: %q (want an integer in 1..%d)", name, v, MaxLimit)
	}
	return n
}

// duration is a non-negative Go duration ("24h", "90m"); ok is false when
// absent.
func (p *params) duration(name string) (d time.Duration, ok bool) {
	v := p.str(name)
	if v == "" {
		return 0, false
	}
	d, err := time.ParseDuration(v)
	if (err != nil || d < 0) && p.err == nil {
		p.err = reject(http.StatusBadRequest, "invalid %s: %q (want a duration such as 24h or 90m)", name, v)
	}
	return d, true
}
