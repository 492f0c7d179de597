package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/httpapi"
)

const eventsUsage = `usage: relay events <list|show|retry|delete> [flags]

  list    [--status S] [--user U] [--entity E] [--type T] [--limit N] [--cursor C] [--all]
  show    ID...
  retry   ID...  |  --status failed [--user U]        (failed events become pending again)
  delete  ID...  |  --entity E [--entity E...]  |  --user U    (events are removed from the outbox)

Every subcommand takes --addr, --config, --token and --json.
`

// cmdEvents dispatches relay events' subcommands.
func cmdEvents(ctx context.Context, args []string, std stdio) error {
	if len(args) == 0 {
		fmt.Fprint(std.errOut, eventsUsage)
		return exitCode(2)
	}
	sub := map[string]command{
		"list":   eventsList,
		"show":   eventsShow,
		"retry":  eventsRetry,
		"delete": eventsDelete,
	}[args[0]]
	if sub == nil {
		if args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
			fmt.Fprint(std.out, eventsUsage)
			return nil
		}
		fmt.Fprintf(std.errOut, "relay events: unknown subcommand %q\n\n%s", args[0], eventsUsage)
		return exitCode(2)
	}
	return sub(ctx, args[1:], std)
}

// eventsList prints one page of events, or every page with --all.
func eventsList(ctx context.Context, args []string, std stdio) error {
	fs := newFlagSet("events list", "events list [--status S] [--user U] [--entity E] [--type T] [--limit N] [--cursor C] [--all] [--json]", std)
	cf := addCommonFlags(fs)
	status := fs.String("status", "", "only events in this status: pending, processing, completed or failed")
	user := fs.String("user", "", "only events of this user_id")
	entity := fs.String("entity", "", "only events of this entity_id")
	typ := fs.String("type", "", "only events of this type")
	limit := fs.Int("limit", 100, "events per page (1..1000)")
	cursor := fs.String("cursor", "", "the next_cursor of the previous page")
	all := fs.Bool("all", false, "follow next_cursor to the last page")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return flagError(err)
	}
	if len(pos) > 0 {
		return fmt.Errorf("events list: unexpected argument %q (to see one event: relay events show ID)", pos[0])
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	q := url.Values{}
	for k, v := range map[string]string{"status": *status, "user_id": *user, "entity_id": *entity, "type": *typ, "cursor": *cursor} {
		if v != "" {
			q.Set(k, v)
		}
	}
	q.Set("limit", strconv.Itoa(*limit))
	var out httpapi.Page
	prog := newProgress(std.errOut)
	for {
		var page httpapi.Page
		if err := c.do(ctx, http.MethodGet, "/v1/events", q, nil, &page); err != nil {
			prog.done()
			return fmt.Errorf("events list: %w", err)
		}
		out.Events = append(out.Events, page.Events...)
		out.NextCursor = page.NextCursor
		if !*all || page.NextCursor == "" {
			break
		}
		prog.update("listed %d events…", len(out.Events))
		q.Set("cursor", page.NextCursor)
	}
	prog.done()
	if out.Events == nil {
		out.Events = []*outbox.Event{}
	}
	if cf.json {
		return printJSON(std.out, out)
	}
	printEvents(std.out, out.Events, time.Now())
	if out.NextCursor != "" {
		fmt.Fprintf(std.errOut, "more events: add --cursor %s (or --all)\n", out.NextCursor)
	}
	return nil
}

// printEvents renders events as a table.
func printEvents(w io.Writer, events []*outbox.Event, now time.Time) {
	if len(events) == 0 {
		fmt.Fprintln(w, "no events")
		return
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "ID\tSTATUS\tTYPE\tENTITY\tUSER\tPRIO\tATTEMPTS\tCREATED\tLAST ERROR")
	for _, e := range events {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d/%d\t%s\t%s\n", e.ID, e.Status, e.Type, orDash(e.EntityID), orDash(e.UserID),
			e.Priority, e.AttemptCount, e.MaxAttempts, ago(e.CreatedAt, now), oneLine(orDash(e.LastError), 80))
	}
	tw.Flush()
}

// eventsShow prints events in full.
func eventsShow(ctx context.Context, args []string, std stdio) error {
	fs := newFlagSet("events show", "events show ID... [--json]", std)
	cf := addCommonFlags(fs)
	ids, err := parseArgs(fs, args)
	if err != nil {
		return flagError(err)
	}
	if len(ids) == 0 {
		fs.Usage()
		return exitCode(2)
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	var failed error
	for i, id := range ids {
		var e outbox.Event
		if err := c.do(ctx, http.MethodGet, "/v1/events/"+url.PathEscape(id), nil, nil, &e); err != nil {
			fmt.Fprintf(std.errOut, "relay: events show %s: %v\n", id, err)
			failed = exitCode(1)
			continue
		}
		if cf.json {
			if err := printJSON(std.out, &e); err != nil {
				return err
			}
			continue
		}
		if i > 0 {
			fmt.Fprintln(std.out)
		}
		printEvent(std.out, &e, time.Now())
	}
	return failed
}

// printEvent renders one event as "key  value" lines.
func printEvent(w io.Writer, e *outbox.Event, now time.Time) {
	tw := newTable(w)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	row("id", e.ID)
	row("status", string(e.Status))
	row("type", e.Type)
	row("entity_id", orDash(e.EntityID)+fmt.Sprintf(" (entity_seq %d)", e.EntitySeq))
	row("user_id", orDash(e.UserID))
	row("priority", strconv.Itoa(e.Priority))
	row("attempts", fmt.Sprintf("%d of %d", e.AttemptCount, e.MaxAttempts))
	row("created_at", stamp(e.CreatedAt, now))
	row("last_attempt_at", stamp(e.LastAttemptAt, now))
	row("next_attempt_at", stamp(e.NextAttemptAt, now))
	row("completed_at", stamp(e.CompletedAt, now))
	row("last_error", oneLine(orDash(e.LastError), 500))
	row("content_type", orDash(e.ContentType))
	payload := string(e.Payload)
	if !outbox.IsJSONContentType(e.ContentType) {
		payload = fmt.Sprintf("%d bytes", len(e.Payload))
	}
	row("payload", oneLine(orDash(payload), 500))
	if len(e.Metadata) > 0 {
		row("metadata", oneLine(string(e.Metadata), 500))
	}
	tw.Flush()
}

func stamp(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339Nano) + " (" + ago(t, now) + ")"
}

// countAnswer is the answer of the routes that change several events.
type countAnswer struct {
	Count int `json:"count"`
}

// eventsRetry retries failed events, one by one by id or in bulk.
func eventsRetry(ctx context.Context, args []string, std stdio) error {
	fs := newFlagSet("events retry", "events retry ID... | --status failed [--user U]", std)
	cf := addCommonFlags(fs)
	status := fs.String("status", "", "bulk: retry every event in this status (failed)")
	user := fs.String("user", "", "bulk: retry the failed events of this user_id")
	ids, err := parseArgs(fs, args)
	if err != nil {
		return flagError(err)
	}
	bulk := *status != "" || *user != ""
	if len(ids) > 0 == bulk {
		fmt.Fprintln(std.errOut, "relay: events retry: give event ids, or --status failed / --user U to retry in bulk")
		return exitCode(2)
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	if bulk {
		q := url.Values{}
		if *status != "" {
			q.Set("status", *status)
		}
		if *user != "" {
			q.Set("user_id", *user)
		}
		var n countAnswer
		if err := c.do(ctx, http.MethodPost, "/v1/events/retry", q, nil, &n); err != nil {
			return fmt.Errorf("events retry: %w", err)
		}
		if cf.json {
			return printJSON(std.out, n)
		}
		fmt.Fprintf(std.out, "retried %d failed %s: pending again\n", n.Count, plural(n.Count, "event"))
		return nil
	}
	var failed error
	var retried []*outbox.Event
	for _, id := range ids {
		var e outbox.Event
		if err := c.do(ctx, http.MethodPost, "/v1/events/"+url.PathEscape(id)+"/retry", nil, nil, &e); err != nil {
			fmt.Fprintf(std.errOut, "relay: events retry %s: %v\n", id, err)
			failed = exitCode(1)
			continue
		}
		retried = append(retried, &e)
		if !cf.json {
			fmt.Fprintf(std.out, "retried %s (%s, entity %s): %s again\n", e.ID, e.Type, orDash(e.EntityID), e.Status)
		}
	}
	if cf.json {
		if err := printJSON(std.out, retried); err != nil {
			return err
		}
	}
	return failed
}

// eventsDelete removes events by id, by entity or by user.
func eventsDelete(ctx context.Context, args []string, std stdio) error {
	fs := newFlagSet("events delete", "events delete ID... | --entity E [--entity E...] | --user U", std)
	cf := addCommonFlags(fs)
	var entities listFlag
	fs.Var(&entities, "entity", "delete every event of this entity_id, exactly as given (repeatable)")
	user := fs.String("user", "", "delete every event of this user_id")
	ids, err := parseArgs(fs, args)
	if err != nil {
		return flagError(err)
	}
	selectors := 0
	for _, given := range []bool{len(ids) > 0, len(entities) > 0, *user != ""} {
		if given {
			selectors++
		}
	}
	if selectors != 1 {
		fmt.Fprintln(std.errOut, "relay: events delete: give event ids, or --entity E, or --user U (one of them)")
		return exitCode(2)
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	total := 0
	var failed error
	switch {
	case len(ids) > 0:
		for _, id := range ids {
			if err := c.do(ctx, http.MethodDelete, "/v1/events/"+url.PathEscape(id), nil, nil, nil); err != nil {
				fmt.Fprintf(std.errOut, "relay: events delete %s: %v\n", id, err)
				failed = exitCode(1)
				continue
			}
			total++
		}
	default:
		q := url.Values{}
		if *user != "" {
			q.Set("user_id", *user)
		}
		for _, e := range entities {
			q.Add("entity_id", e)
		}
		var n countAnswer
		if err := c.do(ctx, http.MethodDelete, "/v1/events", q, nil, &n); err != nil {
			return fmt.Errorf("events delete: %w", err)
		}
		total = n.Count
	}
	if cf.json {
		if err := printJSON(std.out, countAnswer{Count: total}); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(std.out, "deleted %d %s\n", total, plural(total, "event"))
	}
	return failed
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
