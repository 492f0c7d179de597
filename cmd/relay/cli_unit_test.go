package main

import (
	"flag"
	"io"
	"slices"
	"testing"
)

func TestSubjectCoverage(t *testing.T) {
	tests := []struct {
		filters []string
		want    string
		covered bool
	}{
		{[]string{"outbox.>"}, "outbox.>", true},
		{[]string{">"}, "outbox.>", true},
		{[]string{"*.>"}, "outbox.>", true},
		{[]string{"outbox.*"}, "outbox.>", false},
		{[]string{"outbox.*"}, "outbox.mood", true},
		{[]string{"outbox.*"}, "outbox.mood.created", false},
		{[]string{"other.>"}, "outbox.>", false},
		{[]string{"other.>", "outbox.>"}, "outbox.>", true},
		{[]string{"outbox.mood.>"}, "outbox.>", false},
		{[]string{"outbox.mood.>"}, "outbox.mood.created", true},
		{[]string{"outbox.>"}, "outbox", false},
		{[]string{"app.events.>"}, "app.events.>", true},
		{[]string{"app.*.>"}, "app.events.>", true},
		{nil, "outbox.>", false},
	}
	for _, tt := range tests {
		if got := covers(tt.filters, tt.want); got != tt.covered {
			t.Errorf("covers(%q, %q) = %v, want %v", tt.filters, tt.want, got, tt.covered)
		}
	}
}

func TestNewClientAddr(t *testing.T) {
	tests := []struct {
		addr, base string
		ok         bool
	}{
		{"127.0.0.1:7070", "http://127.0.0.1:7070", true},
		{"http://relay:7070", "http://relay:7070", true},
		{"https://relay.example.com/", "https://relay.example.com", true},
		{"http://relay:7070/prefix/", "http://relay:7070/prefix", true},
		{"ftp://relay", "", false},
		{"http://", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		c, err := newClient(tt.addr, "")
		if (err == nil) != tt.ok {
			t.Errorf("newClient(%q): %v, ok want %v", tt.addr, err, tt.ok)
			continue
		}
		if err == nil && c.String() != tt.base {
			t.Errorf("newClient(%q) = %s, want %s", tt.addr, c, tt.base)
		}
	}
}

func TestParseArgsInterspersed(t *testing.T) {
	tests := []struct {
		args []string
		pos  []string
		json bool
		user string
	}{
		{[]string{"a", "b"}, []string{"a", "b"}, false, ""},
		{[]string{"a", "--json", "b", "--user", "u"}, []string{"a", "b"}, true, "u"},
		{[]string{"--json", "a"}, []string{"a"}, true, ""},
		{[]string{"a", "--", "--json"}, []string{"a", "--json"}, false, ""},
	}
	for _, tt := range tests {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		j := fs.Bool("json", false, "")
		u := fs.String("user", "", "")
		pos, err := parseArgs(fs, tt.args)
		if err != nil || !slices.Equal(pos, tt.pos) || *j != tt.json || *u != tt.user {
			t.Errorf("parseArgs(%q) = %q %v, json %v user %q", tt.args, pos, err, *j, *u)
		}
	}
}

func TestPercentile(t *testing.T) {
	var ds []float64
	for i := 1; i <= 100; i++ {
		ds = append(ds, float64(i))
	}
	for p, want := range map[float64]float64{50: 50, 90: 90, 99: 99, 100: 100, 0: 1} {
		if got := percentile(ds, p); got != want {
			t.Errorf("p%g = %g, want %g", p, got, want)
		}
	}
	if got := percentile([]float64{7}, 99); got != 7 {
		t.Errorf("p99 of one = %g", got)
	}
}

func TestAllowedTypes(t *testing.T) {
	if got := allowedTypes(nil); got != nil {
		t.Errorf("no event_types: %v, want nil (any type)", got)
	}
	in := []string{"mood.created"}
	if got := allowedTypes(in); !slices.Equal(got, []string{"mood.created", "outbox.verify"}) || len(in) != 1 {
		t.Errorf("allowedTypes = %v (input now %v)", got, in)
	}
	if got := allowedTypes([]string{"outbox.verify"}); !slices.Equal(got, []string{"outbox.verify"}) {
		t.Errorf("allowedTypes = %v", got)
	}
}
