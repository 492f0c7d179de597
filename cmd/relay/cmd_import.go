package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strconv"

	"github.com/fitiqcore/outbox"
	"github.com/fitiqcore/outbox/httpapi"
)

// cmdImport posts the events of another outbox to a running relay through
// the batch API, keeping their ids: a second run stores nothing new, and an
// import cut short is run again. Bad rows are reported by number and
// skipped; the import goes on.
func cmdImport(ctx context.Context, args []string, std stdio) error {
	fs := newFlagSet("import", "import (--ndjson FILE | --coredata FILE) [--dry-run] [--include-completed] [--user U] [--batch N] [--json]", std)
	cf := addCommonFlags(fs)
	ndjson := fs.String("ndjson", "", "an NDJSON file: one event per line in the API's JSON form, each with its id (- for stdin)")
	coreData := fs.String("coredata", "", "a Core Data / SwiftData SQLite store with table ZSDOUTBOXEVENT (FitIQ's or Lume's schema)")
	dryRun := fs.Bool("dry-run", false, "read and check every row, post nothing")
	includeCompleted := fs.Bool("include-completed", false, "import completed rows too (they are published again)")
	user := fs.String("user", "", "the user_id of rows that have none (Lume's rows have no user)")
	batchSize := fs.Int("batch", 500, "events per batch request (1..1000)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return flagError(err)
	}
	if len(pos) > 0 {
		return fmt.Errorf("import: unexpected argument %q", pos[0])
	}
	if (*ndjson == "") == (*coreData == "") || *batchSize < 1 || *batchSize > 1000 {
		fmt.Fprintln(std.errOut, "relay: import: give one of --ndjson FILE and --coredata FILE; --batch is 1..1000")
		return exitCode(2)
	}
	if *user != "" {
		if err := outbox.ValidateIdentifier("user_id", *user); err != nil {
			return fmt.Errorf("import: --user: %w", err)
		}
	}
	im := &importer{dryRun: *dryRun, batch: *batchSize, prog: newProgress(std.errOut)}
	if !*dryRun {
		if im.c, err = cf.client(); err != nil {
			return err
		}
	}
	o := importOptions{includeCompleted: *includeCompleted, user: *user}
	each := func(row importRow) error { return im.add(ctx, row) }
	switch {
	case *ndjson == "-":
		im.sum.Source = "stdin (ndjson)"
		err = readNDJSON(std.in, o, each)
	case *ndjson != "":
		im.sum.Source = *ndjson + " (ndjson)"
		var f *os.File
		if f, err = os.Open(*ndjson); err == nil {
			err = readNDJSON(f, o, each)
			f.Close()
		}
	default:
		im.sum.Source = *coreData + " (core data)"
		err = readCoreData(ctx, *coreData, o, each)
	}
	if err == nil {
		err = im.flush(ctx)
	}
	im.prog.done()
	for _, b := range im.sum.BadRows {
		fmt.Fprintf(std.errOut, "relay: import: row %d: %s\n", b.Row, b.Error)
	}
	if err != nil {
		im.printSummary(std, cf.json)
		return fmt.Errorf("import: %w (run it again: rows already stored are recognised by their ids)", err)
	}
	if err := im.printSummary(std, cf.json); err != nil {
		return err
	}
	if im.sum.Bad > 0 {
		return exitCode(1)
	}
	return nil
}

// importSummary is what an import did; --json prints it.
type importSummary struct {
	Source        string   `json:"source"`
	DryRun        bool     `json:"dry_run"`
	Rows          int      `json:"rows"`
	Imported      int      `json:"imported"` // newly stored (with --dry-run: would be posted)
	AlreadyStored int      `json:"already_stored"`
	Skipped       int      `json:"skipped_completed"`
	Bad           int      `json:"bad"`
	BadRows       []badRow `json:"bad_rows,omitempty"`
}

type badRow struct {
	Row   int    `json:"row"`
	Error string `json:"error"`
}

type importer struct {
	c       *client
	dryRun  bool
	batch   int
	pending []importRow
	bytes   int // the pending rows' JSON
	sum     importSummary
	prog    *progress
}

func (im *importer) bad(row importRow, err error) {
	im.sum.Bad++
	im.sum.BadRows = append(im.sum.BadRows, badRow{Row: row.n, Error: err.Error()})
}

func (im *importer) add(ctx context.Context, row importRow) error {
	im.sum.Rows++
	defer im.prog.update("import: %d rows read, %d imported, %d already stored, %d bad…", im.sum.Rows, im.sum.Imported, im.sum.AlreadyStored, im.sum.Bad)
	switch {
	case row.err != nil:
		im.bad(row, row.err)
		return nil
	case row.skipped:
		im.sum.Skipped++
		return nil
	case im.dryRun:
		if err := checkRow(row); err != nil {
			im.bad(row, err)
		} else {
			im.sum.Imported++
		}
		return nil
	}
	b, err := json.Marshal(row.event)
	if err != nil {
		im.bad(row, err)
		return nil
	}
	if im.bytes+len(b) > maxImportBody && len(im.pending) > 0 {
		if err := im.flush(ctx); err != nil {
			return err
		}
	}
	im.pending = append(im.pending, row)
	im.bytes += len(b)
	if len(im.pending) >= im.batch {
		return im.flush(ctx)
	}
	return nil
}

// maxImportBody bounds the events of one batch request, in bytes: well
// under the relay's default http.max_body_bytes (16 MiB), so that large
// payloads make smaller batches rather than a 413.
const maxImportBody = 4 << 20

// checkRow is --dry-run's check of a row: the event decodes and passes the
// rules every store holds it to (the relay's own limits may be tighter).
func checkRow(row importRow) error {
	b, err := json.Marshal(row.event)
	if err != nil {
		return err
	}
	var e outbox.Event
	if err := json.Unmarshal(b, &e); err != nil {
		return err
	}
	return e.Prepare(outbox.Options{MaxMessage: -1})
}

// eventIndex reads the index of the event a batch answer names.
var eventIndex = regexp.MustCompile(`^events\[(\d+)\]: `)

// flush posts the pending rows as one batch. An event the relay refuses
// (a 4xx naming it) is reported as a bad row and the batch posted again
// without it; any other failure ends the import.
func (im *importer) flush(ctx context.Context) error {
	for len(im.pending) > 0 {
		events := make([]map[string]any, len(im.pending))
		for i, r := range im.pending {
			events[i] = r.event
		}
		resp, err := im.c.request(ctx, http.MethodPost, "/v1/events/batch", nil, map[string]any{"events": events})
		var ae *apiError
		if errors.As(err, &ae) && rowFault(ae.Status) {
			i := 0
			if m := eventIndex.FindStringSubmatch(ae.Message); m != nil {
				i, _ = strconv.Atoi(m[1])
			} else if len(im.pending) > 1 {
				return err // the batch as a whole: not one row's fault
			}
			if i >= len(im.pending) {
				return err
			}
			im.bad(im.pending[i], errors.New(ae.Message))
			im.pending = append(im.pending[:i], im.pending[i+1:]...)
			continue
		}
		if err != nil {
			return err
		}
		resp.Body.Close()
		created := len(im.pending)
		if resp.StatusCode == http.StatusOK {
			created = 0
		} else if v := resp.Header.Get(httpapi.HeaderCreated); v != "" {
			if n, err := strconv.Atoi(v); err == nil && n >= 0 && n <= len(im.pending) {
				created = n
			}
		}
		im.sum.Imported += created
		im.sum.AlreadyStored += len(im.pending) - created
		im.pending, im.bytes = im.pending[:0], 0
	}
	return nil
}

// rowFault reports whether an answer can be one event's fault: a
// validation failure (400), an id stored with other content (409), an event
// too large (413). Anything else (auth, a full outbox, a busy relay) ends
// the import: no row is bad for it.
func rowFault(status int) bool {
	return status == http.StatusBadRequest || status == http.StatusConflict || status == http.StatusRequestEntityTooLarge
}

func (im *importer) printSummary(std stdio, asJSON bool) error {
	im.sum.DryRun = im.dryRun
	if asJSON {
		return printJSON(std.out, im.sum)
	}
	verb := "imported"
	if im.dryRun {
		verb = "to import (dry run: nothing posted)"
	}
	fmt.Fprintf(std.out, "import: %d rows from %s: %d %s, %d already stored, %d completed skipped, %d bad\n",
		im.sum.Rows, im.sum.Source, im.sum.Imported, verb, im.sum.AlreadyStored, im.sum.Skipped, im.sum.Bad)
	return nil
}
