//go:build integration

package integration

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// counters are the figures read from logs and apps at one moment.
type counters struct {
	httpAccepted, embAccepted int
	relayDups, embDups        int // duplicate acks: publishes JetStream de-duplicated
	retries                   int // publish attempts that failed and were retried later (both relays)
	readBack                  int // unknown outcomes found in the stream at start, completed without a publish
	redeliveries              int // events the subscriber got again after it had recorded them
	reposts                   int64
}

func (s *stack) counters() counters {
	var c counters
	if st, err := s.appStats(s.appURL); err == nil {
		c.httpAccepted = int(num(st["accepted"]))
		c.reposts = num(st["reposts_200"])
	}
	if st, err := s.appStats(s.embURL); err == nil {
		c.embAccepted = int(num(st["accepted"]))
	}
	c.relayDups = s.logCount("relay", "event published", "duplicate=true")
	c.embDups = s.logCount("app-embedded", "duplicate ack", "duplicate=true")
	c.retries = s.logCount("relay", "publish failed, will retry") + s.logCount("app-embedded", "publish failed, will retry")
	c.redeliveries = s.logCount("subscriber", "already recorded")
	c.readBack = s.logCount("relay", "found in the stream after a restart") + s.logCount("app-embedded", "found in the stream after a restart")
	return c
}

// waitDrained waits until nothing is pending in either outbox and the
// subscriber has handled every accepted event. It returns when that held.
func (s *stack) waitDrained(timeout time.Duration) time.Time {
	s.t.Helper()
	acc := s.allAccepted()
	eventually(s.t, timeout, "the backlog to drain", func() (bool, string) {
		rs, err := s.relayStats()
		if err != nil {
			return false, "relay: " + err.Error()
		}
		es, err := s.embeddedStats()
		if err != nil {
			return false, "embedded: " + err.Error()
		}
		lines, _ := s.tail.Lines()
		got := make(map[string]bool, len(lines))
		for _, h := range lines {
			got[h.ID] = true
		}
		missing := 0
		for id := range acc {
			if !got[id] {
				missing++
			}
		}
		msg := fmt.Sprintf("relay pending %d processing %d, embedded pending %d processing %d, %d accepted not yet handled",
			rs.Pending, rs.Processing, es.Pending, es.Processing, missing)
		return rs.Pending == 0 && rs.Processing == 0 && es.Pending == 0 && es.Processing == 0 && missing == 0, msg
	})
	return time.Now()
}

// allAccepted is every event either app accepted, by id.
func (s *stack) allAccepted() map[string]accepted {
	s.t.Helper()
	acc := map[string]accepted{}
	for _, u := range []string{s.appURL, s.embURL} {
		list, err := s.accepted(u)
		if err != nil {
			s.t.Fatalf("accepted events: %v", err)
		}
		for _, a := range list {
			if _, dup := acc[a.ID]; dup {
				s.t.Errorf("%s lists %s as accepted twice", u, a.ID)
			}
			acc[a.ID] = a
		}
	}
	return acc
}

// verify checks the promise over everything accepted since the stack came
// up: each accepted event handled exactly once, in per-entity order, with
// the entity_seq it was accepted with; entity_seq gapless per entity; the
// stream holding each event exactly once; nothing pending or failed.
func (s *stack) verify() (acc map[string]accepted, lines []handled, stream []streamMsg) {
	t := s.t
	t.Helper()
	acc = s.allAccepted()
	lines, err := s.tail.Lines()
	if err != nil {
		t.Errorf("subscriber record: %v", err)
	}
	var problems []string
	report := func(format string, args ...any) {
		if len(problems) < 20 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}

	// Exactly once, nothing lost, nothing handled that was not accepted.
	count := make(map[string]int, len(lines))
	for _, h := range lines {
		count[h.ID]++
		if count[h.ID] == 2 {
			report("event %s (entity %s seq %d) handled twice", h.ID, h.EntityID, h.EntitySeq)
		}
		a, ok := acc[h.ID]
		switch {
		case !ok:
			report("event %s (entity %s seq %d) handled but never accepted", h.ID, h.EntityID, h.EntitySeq)
		case a.EntitySeq != h.EntitySeq || a.EntityID != h.EntityID:
			report("event %s accepted as %s/%d, handled as %s/%d", h.ID, a.EntityID, a.EntitySeq, h.EntityID, h.EntitySeq)
		}
	}
	lost := 0
	for id, a := range acc {
		if count[id] == 0 {
			lost++
			report("event %s (entity %s seq %d) accepted but never handled", id, a.EntityID, a.EntitySeq)
		}
	}

	// Per-entity order in the handled order, and gapless entity_seq.
	last := map[string]uint64{}
	for _, h := range lines {
		if prev, ok := last[h.EntityID]; ok && h.EntitySeq <= prev {
			report("entity %s: seq %d handled after seq %d", h.EntityID, h.EntitySeq, prev)
		}
		last[h.EntityID] = h.EntitySeq
	}
	seqs := map[string][]uint64{}
	for _, a := range acc {
		seqs[a.EntityID] = append(seqs[a.EntityID], a.EntitySeq)
	}
	for ent, ss := range seqs {
		slices.Sort(ss)
		for i, q := range ss {
			if q != uint64(i+1) {
				report("entity %s: accepted entity_seq %v... not 1..%d: a seq was given to an event no app knows of", ent, ss[:min(len(ss), i+2)], len(ss))
				break
			}
		}
	}

	// The stream: each accepted event exactly once.
	stream, err = s.readStream()
	if err != nil {
		t.Errorf("read the stream: %v", err)
	}
	inStream := make(map[string]int, len(stream))
	for _, m := range stream {
		inStream[m.ID]++
		if inStream[m.ID] == 2 {
			report("the stream holds %s twice (a duplicate JetStream did not stop)", m.ID)
		}
		if _, ok := acc[m.ID]; !ok {
			report("the stream holds %s (seq %d), which no app accepted", m.ID, m.Seq)
		}
	}
	for id := range acc {
		if inStream[id] == 0 {
			report("event %s accepted but not in the stream", id)
		}
	}

	// Nothing left behind in either outbox.
	for name, get := range map[string]func() (relayStats, error){"relay": s.relayStats, "embedded app": s.embeddedStats} {
		st, err := get()
		switch {
		case err != nil:
			report("%s stats: %v", name, err)
		case st.Pending != 0 || st.Processing != 0 || st.Failed != 0:
			report("%s: %d pending, %d processing, %d failed after the drain", name, st.Pending, st.Processing, st.Failed)
		}
	}
	if len(problems) > 0 {
		t.Errorf("%d accepted, %d handled, %d lost, %d in the stream:\n  %s", len(acc), len(lines), lost, len(stream), strings.Join(problems, "\n  "))
	}
	return acc, lines, stream
}

// figures are what a scenario prints.
type figures struct {
	Scenario        string
	Events          int // accepted during the scenario
	HTTPEvents      int
	EmbeddedEvents  int
	Duplicates      int // publishes JetStream de-duplicated (duplicate acks)
	ReadBack        int // re-publishes avoided: found in the stream when a relay started
	Redeliveries    int // redelivered events the subscriber had recorded already (handled, not yet acked)
	Retries         int // failed publish attempts (each consumes one of the event's max_attempts)
	Reposts         int64
	LongestStall    stall         // longest gap between handled events of one app
	PublishStall    stall         // longest gap between events of one app stored in the stream
	DrainAfterHeal  time.Duration // from the fault's end until every event accepted before it was handled
	DrainAfterPause time.Duration // from the load's end until nothing was pending and all was handled
	MaxLatency      time.Duration // longest accepted → handled
	Notes           []string
}

// measure computes a scenario's figures over its window [start, drained].
func measure(name string, before, after counters, tl *timeline, acc map[string]accepted, lines []handled, stream []streamMsg) figures {
	f := figures{
		Scenario:       name,
		HTTPEvents:     after.httpAccepted - before.httpAccepted,
		EmbeddedEvents: after.embAccepted - before.embAccepted,
		Duplicates:     (after.relayDups - before.relayDups) + (after.embDups - before.embDups),
		Redeliveries:   after.redeliveries - before.redeliveries,
		Retries:        after.retries - before.retries,
		ReadBack:       after.readBack - before.readBack,
		Reposts:        after.reposts - before.reposts,
		Notes:          tl.notes,
	}
	f.Events = f.HTTPEvents + f.EmbeddedEvents
	// Each app's events flow on their own path (the sidecar's relay, the
	// embedded one): a stall of one is hidden in the merged flow, so gaps
	// are measured per app.
	seen := map[string][]time.Time{}
	for _, h := range lines {
		app := appOf(h.EntityID)
		seen[app] = append(seen[app], h.seen)
		if a, ok := acc[h.ID]; ok {
			at := time.UnixMilli(a.At)
			if !at.Before(tl.start) {
				f.MaxLatency = max(f.MaxLatency, h.seen.Sub(at))
			}
			if at.Before(tl.healed) && !at.Before(tl.start) {
				f.DrainAfterHeal = max(f.DrainAfterHeal, h.seen.Sub(tl.healed))
			}
		}
	}
	f.LongestStall = longestGap(seen, tl.start, tl.drained)
	stored := map[string][]time.Time{}
	for _, m := range stream {
		app := appOf(acc[m.ID].EntityID)
		stored[app] = append(stored[app], m.At)
	}
	f.PublishStall = longestGap(stored, tl.start, tl.drained)
	f.DrainAfterPause = tl.drained.Sub(tl.paused)
	return f
}

// appOf names the app that wrote an entity's events (its prefix, see
// docker-compose.yml: http-eNN, emb-eNN).
func appOf(entityID string) string {
	app, _, _ := strings.Cut(entityID, "-")
	return app
}

// stall is the longest gap in one app's flow.
type stall struct {
	d   time.Duration
	app string
}

func (s stall) String() string {
	if s.app == "" {
		return "0s"
	}
	return fmt.Sprintf("%s(%s)", s.d.Round(100*time.Millisecond), s.app)
}

// longestGap is the longest gap between consecutive times of one app that
// ends in [from, to]: a gap that began before from (the fault) counts.
func longestGap(byApp map[string][]time.Time, from, to time.Time) stall {
	var g stall
	for app, ts := range byApp {
		sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
		for i := 1; i < len(ts); i++ {
			if ts[i].Before(from) || ts[i].After(to) {
				continue
			}
			if d := ts[i].Sub(ts[i-1]); d > g.d {
				g = stall{d: d, app: app}
			}
		}
	}
	return g
}

func (f figures) String() string {
	r := func(d time.Duration) string { return d.Round(100 * time.Millisecond).String() }
	s := fmt.Sprintf("FIGURES %s: events=%d (http %d, embedded %d) dedup_stopped=%d read_back=%d failed_attempts=%d redelivered_after_handling=%d reposts_200=%d "+
		"longest_stall=%s publish_stall=%s drain_after_fault=%s drain_after_load=%s max_latency=%s",
		f.Scenario, f.Events, f.HTTPEvents, f.EmbeddedEvents, f.Duplicates, f.ReadBack, f.Retries, f.Redeliveries, f.Reposts,
		f.LongestStall, f.PublishStall, r(f.DrainAfterHeal), r(f.DrainAfterPause), r(f.MaxLatency))
	if len(f.Notes) > 0 {
		s += " | " + strings.Join(f.Notes, "; ")
	}
	return s
}
