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
	"path/filepath"
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
		// A file of its own beside the target, renamed over it when whole:
		// a failed export leaves an earlier one as it was.
		if f, err = os.CreateTemp(filepath.Dir(*path), filepath.Base(*path)+".*.tmp"); err != nil {
			return fmt.Errorf("export: %w", err)
		}
		defer os.Remove(f.Name()) // after the rename, nothing
		defer f.Close()
		w = f
	}
	bw := bufio.NewWriter(w)
	n, err := exportEvents(ctx, c, outbox.Status(*status), bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil && f != nil {
		if err = f.Close(); err == nil {
			err = os.Rename(f.Name(), *path)
		}
	}
	if err != nil {
		return fmt.Errorf("export: after %d events: %w", n, err)
	}
	fmt.Fprintf(std.errOut, "export: %d events written to %s\n", n, *path)
	return nil
}

// exportEvents pages through GET /v1/events, writing each event (of
// status, when not empty) as a line. It lists them unfiltered, in
// acceptance order, and filters here: a listing by status is by priority
// first, and an import must see each entity's events in their order.
func exportEvents(ctx context.Context, c *client, status outbox.Status, w io.Writer) (int, error) {
	n, cursor := 0, ""
	for {
		q := url.Values{"limit": {strconv.Itoa(httpapi.MaxLimit)}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var page httpapi.Page
		if err := c.do(ctx, http.MethodGet, "/v1/events", q, nil, &page); err != nil {
			return n, err
		}
		for _, e := range page.Events {
			if status != "" && e.Status != status {
				continue
			}
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
