package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/httpapi"
)

// statusTimeout bounds relay status when the caller set no deadline: a
// probe must answer.
const statusTimeout = 15 * time.Second

// cmdStatus prints the running relay's debug report and exits 1 when it has
// issues or cannot be reached, so that it can serve as a probe.
func cmdStatus(ctx context.Context, args []string, std stdio) error {
	fs := newFlagSet("status", "status [--addr HOST:PORT] [--json]", std)
	cf := addCommonFlags(fs)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return flagError(err)
	}
	if len(pos) > 0 {
		return fmt.Errorf("status: unexpected argument %q", pos[0])
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	var rep httpapi.Report
	if err := c.do(ctx, http.MethodGet, "/v1/status", nil, nil, &rep); err != nil {
		return fmt.Errorf("status: %w", err)
	}
	if cf.json {
		if err := printJSON(std.out, rep); err != nil {
			return err
		}
	} else {
		printReport(std.out, c.String(), &rep, time.Now())
	}
	if rep.HasIssues {
		return exitCode(1)
	}
	return nil
}

// printReport renders the debug report for a person at a terminal.
func printReport(w io.Writer, addr string, rep *httpapi.Report, now time.Time) {
	st := rep.Stats
	tw := newTable(w)
	fmt.Fprintf(tw, "relay\t%s\n", addr)
	fmt.Fprintf(tw, "events\t%d total: %d pending, %d processing, %d completed, %d failed, %d stale\n",
		st.Total, st.Pending, st.Processing, st.Completed, st.Failed, st.Stale)
	oldest, newest := "-", "-"
	if st.OldestPendingAt != nil {
		oldest = ago(*st.OldestPendingAt, now)
	}
	if st.NewestCompletedAt != nil {
		newest = ago(*st.NewestCompletedAt, now)
	}
	fmt.Fprintf(tw, "\tsuccess rate %.1f%%, oldest pending %s, newest completed %s, %s stored\n",
		100*st.SuccessRate, oldest, newest, bytesize(st.Bytes))
	if n := rep.NATS; n != nil {
		state := "connected to " + n.URL
		if n.Server != "" {
			state += " (server " + n.Server + ")"
		}
		if n.RTT != "" {
			state += ", rtt " + n.RTT
		}
		if !n.Connected {
			state = "NOT CONNECTED to " + n.URL
		}
		if n.Error != "" {
			state += ": " + n.Error
		}
		fmt.Fprintf(tw, "nats\t%s\n", state)
	}
	if s := rep.Stream; s != nil {
		line := fmt.Sprintf("%s [%s]: %d messages, %s, seq %d..%d, %d consumers",
			s.Name, strings.Join(s.Subjects, " "), s.Messages, bytesize(int64(s.Bytes)), s.FirstSeq, s.LastSeq, s.Consumers)
		if s.Error != "" {
			line = s.Name + ": " + s.Error
			if len(s.Subjects) > 0 {
				line += fmt.Sprintf(" (subjects: %s)", strings.Join(s.Subjects, " "))
			}
		}
		fmt.Fprintf(tw, "stream\t%s\n", line)
	}
	tw.Flush()

	printEventSection(w, "failed events", st.Failed, rep.Failed, now, true)
	printEventSection(w, "stale events", st.Stale, rep.Stale, now, false)

	fmt.Fprintln(w)
	if !rep.HasIssues {
		fmt.Fprintln(w, "status: OK")
		return
	}
	fmt.Fprintln(w, "status: ISSUES")
	for _, is := range rep.Issues {
		fmt.Fprintf(w, "  - %s\n", is)
	}
	if st.Failed > 0 {
		fmt.Fprintln(w, "fix the cause (see last_error), then:  relay events retry <id>   (or all: relay events retry --status failed)")
		fmt.Fprintln(w, "or drop the event:                    relay events delete <id>  (the next event of its entity goes on)")
	}
	if st.Stale > 0 && st.Failed == 0 {
		fmt.Fprintln(w, "stale events wait for NATS or for a failed event of their entity: check the nats and stream lines")
	}
}

// printEventSection lists up to httpapi.ReportEvents events under a heading.
func printEventSection(w io.Writer, title string, total int64, events []*outbox.Event, now time.Time, withError bool) {
	if total == 0 {
		return
	}
	fmt.Fprintf(w, "\n%s (%d", title, total)
	if int64(len(events)) < total {
		fmt.Fprintf(w, ", first %d", len(events))
	}
	fmt.Fprintln(w, "):")
	tw := newTable(w)
	if withError {
		fmt.Fprintln(tw, "ID\tTYPE\tENTITY\tUSER\tATTEMPTS\tLAST ATTEMPT\tLAST ERROR")
		for _, e := range events {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\n", e.ID, e.Type, orDash(e.EntityID), orDash(e.UserID),
				e.AttemptCount, e.MaxAttempts, ago(e.LastAttemptAt, now), oneLine(orDash(e.LastError), 100))
		}
	} else {
		fmt.Fprintln(tw, "ID\tTYPE\tENTITY\tUSER\tCREATED\tATTEMPTS\tLAST ERROR")
		for _, e := range events {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d/%d\t%s\n", e.ID, e.Type, orDash(e.EntityID), orDash(e.UserID),
				ago(e.CreatedAt, now), e.AttemptCount, e.MaxAttempts, oneLine(orDash(e.LastError), 100))
		}
	}
	tw.Flush()
}
