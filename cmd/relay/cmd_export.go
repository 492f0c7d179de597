package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/httpapi"
)

// cmdExport writes a running relay's events, one per line in the API's JSON
// form (what `relay import --ndjson` reads), so that a store can be moved
// between relays or read with jq.
func cmdExport(ctx context.Context, args []string, std stdio) error {
	fs := newFlagSet("export", "export --ndjson FILE [--status S]", std)
	cf := addCommonFlags(fs)
	path := fs.String("ndjson", "", "the file to write (- for stdout)")
	status := fs.String("status", "", "only events of this status (pending, processing, completed, failed)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return flagError(err)
	}
	if len(pos) > 0 {
		return fmt.Errorf("export: unexpected argument %q", pos[0])
	}
	if *path == "" {
		fmt.Fprintln(std.errOut, "relay: export: --ndjson FILE is required")
		return exitCode(2)
	}
	if *status != "" && !outbox.Status(*status).Valid() {
		fmt.Fprintf(std.errOut, "relay: export: --status %q: want pending, processing, completed or failed\n", *status)
		return exitCode(2)
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	var w io.Writer = std.out
	var f *os.File
	if *path != "-" {
		if f, err = os.Create(*path); err != nil {
			return fmt.Errorf("export: %w", err)
		}
		defer f.Close()
		w = f
	}
	bw := bufio.NewWriter(w)
	n, err := exportEvents(ctx, c, *status, bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil && f != nil {
		err = f.Close()
	}
	if err != nil {
		return fmt.Errorf("export: after %d events: %w", n, err)
	}
	fmt.Fprintf(std.errOut, "export: %d events written to %s\n", n, *path)
	return nil
}

// exportEvents pages through GET /v1/events, writing each event as a line.
func exportEvents(ctx context.Context, c *client, status string, w io.Writer) (int, error) {
	n, cursor := 0, ""
	for {
		q := url.Values{"limit": {strconv.Itoa(httpapi.MaxLimit)}}
		if status != "" {
			q.Set("status", status)
		}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var page httpapi.Page
		if err := c.do(ctx, http.MethodGet, "/v1/events", q, nil, &page); err != nil {
			return n, err
		}
		for _, e := range page.Events {
			b, err := json.Marshal(e)
			if err != nil {
				return n, err
			}
			if _, err := w.Write(append(b, '\n')); err != nil {
				return n, err
			}
			n++
		}
		if page.NextCursor == "" {
			return n, nil
		}
		cursor = page.NextCursor
	}
}
