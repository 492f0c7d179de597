package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// purgeRequest is how many events one purge request deletes at most; the
// relay deletes them in short transactions, and the command loops, showing
// progress between requests.
const purgeRequest = 10000

// cmdPurge deletes completed events older than a duration.
func cmdPurge(ctx context.Context, args []string, std stdio) error {
	fs := newFlagSet("purge", "purge --completed-older-than DURATION [--json]", std)
	cf := addCommonFlags(fs)
	olderThan := fs.Duration("completed-older-than", -1, "delete completed events that completed longer ago than this (e.g. 24h; 0s for all)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return flagError(err)
	}
	if len(pos) > 0 {
		return fmt.Errorf("purge: unexpected argument %q", pos[0])
	}
	if *olderThan < 0 {
		fmt.Fprintln(std.errOut, "relay: purge: --completed-older-than DURATION is required (e.g. 24h; 0s for all completed events)")
		return exitCode(2)
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	q := url.Values{
		"status":     {"completed"},
		"older_than": {olderThan.String()},
		"limit":      {strconv.Itoa(purgeRequest)},
	}
	prog := newProgress(std.errOut)
	start, total := time.Now(), 0
	for {
		var n countAnswer
		if err := c.do(ctx, http.MethodDelete, "/v1/events", q, nil, &n); err != nil {
			prog.done()
			return fmt.Errorf("purge: after %d deleted: %w", total, err)
		}
		total += n.Count
		if n.Count < purgeRequest {
			break
		}
		prog.update("purged %d completed events…", total)
	}
	prog.done()
	if cf.json {
		return printJSON(std.out, countAnswer{Count: total})
	}
	fmt.Fprintf(std.out, "purged %d completed %s older than %s in %s\n", total, plural(total, "event"), olderThan, shortDuration(time.Since(start)))
	return nil
}
