package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"

	"github.com/fitiqcore/outbox"
	"github.com/google/uuid"
	_ "modernc.org/sqlite" // pure Go: the static build stays static
)

// An import source yields the rows of another outbox, each converted to an
// event in the API's JSON form or to the reason it cannot be.

// importRow is one row of a source: its number (the line of an NDJSON
// file, the row of a table, from 1), the event, and whether it is skipped
// (a completed row without --include-completed). err says why the row is
// bad; the import reports it and goes on.
type importRow struct {
	n       int
	event   map[string]any
	id      string
	skipped bool
	err     error
}

// importOptions are how rows become events.
type importOptions struct {
	includeCompleted bool
	user             string // the user_id of rows that have none (Lume's)
}

// readNDJSON reads one event per line in the API's JSON form. A line must
// give an id, so that a second run recognises it; blank lines are skipped.
func readNDJSON(r io.Reader, o importOptions, each func(importRow) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 32<<20)
	lines := 0
	for n := 1; sc.Scan(); n++ {
		lines = n
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		row := importRow{n: n}
		var ev map[string]any
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.UseNumber() // numbers as written
		switch err := dec.Decode(&ev); {
		case err != nil:
			row.err = fmt.Errorf("not a JSON object: %v", err)
		case dec.More():
			row.err = errors.New("more than one JSON value on the line")
		default:
			row.event = ev
			row.id, _ = ev["id"].(string)
			if _, err := uuid.Parse(row.id); err != nil {
				row.err = fmt.Errorf("id %q: want the event's UUID (a second run must recognise it)", row.id)
			}
			if st, _ := ev["status"].(string); st == string(outbox.StatusCompleted) && !o.includeCompleted {
				row.skipped = true
			}
			if u, _ := ev["user_id"].(string); u == "" && o.user != "" {
				ev["user_id"] = o.user
			}
		}
		if err := each(row); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("line %d: %w (a line holds at most 32 MiB)", lines+1, err)
	}
	return nil
}

// coreDataEpoch is Core Data's reference date: its dates are seconds since.
var coreDataEpoch = time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)

// coreDataTable is the table Core Data / SwiftData keeps SDOutboxEvent in.
const coreDataTable = "ZSDOUTBOXEVENT"

// readCoreData reads the outbox table of a Core Data / SwiftData SQLite
// store, FitIQ's schema or Lume's, told apart by the columns present
// (FitIQ's has ZENTITYID and ZUSERID, Lume's ZPAYLOAD and ZRETRYCOUNT).
// Pending, processing and failed rows become pending events, keeping
// created_at and, in metadata, the old attempt count and last error
// (import_attempts, import_error); completed rows are skipped unless
// includeCompleted.
func readCoreData(ctx context.Context, path string, o importOptions, each func(importRow) error) error {
	if _, err := os.Stat(path); err != nil {
		return err
	}
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		return err
	}
	defer db.Close()
	cols, err := tableColumns(ctx, db, coreDataTable)
	if err != nil {
		return err
	}
	for _, c := range []string{"ZID", "ZEVENTTYPE", "ZSTATUS", "ZCREATEDAT"} {
		if !cols[c] {
			return fmt.Errorf("table %s has no column %s: not a Core Data outbox store", coreDataTable, c)
		}
	}
	want := []string{"ZID", "ZEVENTTYPE", "ZSTATUS", "ZCREATEDAT"}
	for _, c := range []string{"ZLASTATTEMPTAT", "ZCOMPLETEDAT", "ZERRORMESSAGE", "ZPAYLOAD", "ZRETRYCOUNT",
		"ZENTITYID", "ZUSERID", "ZMETADATA", "ZPRIORITY", "ZISNEWRECORD", "ZMAXATTEMPTS", "ZATTEMPTCOUNT"} {
		if cols[c] {
			want = append(want, c)
		}
	}
	order := "rowid"
	if cols["Z_PK"] {
		order = "Z_PK"
	}
	rows, err := db.QueryContext(ctx, "SELECT "+strings.Join(want, ", ")+" FROM "+coreDataTable+" ORDER BY "+order)
	if err != nil {
		return err
	}
	defer rows.Close()
	for n := 1; rows.Next(); n++ {
		vals := make([]any, len(want))
		ptrs := make([]any, len(want))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		v := map[string]any{}
		for i, c := range want {
			v[c] = vals[i]
		}
		row := coreDataRow(n, v, o)
		if err := each(row); err != nil {
			return err
		}
	}
	return rows.Err()
}

func tableColumns(ctx context.Context, db *sql.DB, table string) (map[string]bool, error) {
	rows, err := db.QueryContext(ctx, "SELECT name FROM pragma_table_info(?)", table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols := map[string]bool{}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, err
		}
		cols[strings.ToUpper(name)] = true
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(cols) == 0 {
		return nil, fmt.Errorf("no table %s: not a Core Data outbox store", table)
	}
	return cols, nil
}

// coreDataRow converts one row (column → value as the driver scanned it).
func coreDataRow(n int, v map[string]any, o importOptions) importRow {
	row := importRow{n: n}
	bad := func(format string, args ...any) importRow {
		row.err = fmt.Errorf(format, args...)
		return row
	}
	id, err := uuidColumn("ZID", v["ZID"])
	if err != nil {
		return bad("%v", err)
	}
	row.id = id
	raw, ok := textColumn(v["ZSTATUS"])
	if !ok {
		return bad("ZSTATUS %v: want pending, processing, completed or failed", v["ZSTATUS"])
	}
	status := outbox.Status(strings.ToLower(raw))
	switch status {
	case outbox.StatusPending, outbox.StatusProcessing, outbox.StatusFailed:
	case outbox.StatusCompleted:
		row.skipped = !o.includeCompleted
	default:
		return bad("ZSTATUS %q: want pending, processing, completed or failed", raw)
	}
	typ, _ := textColumn(v["ZEVENTTYPE"])
	ev := map[string]any{"id": id, "type": typ}
	created, err := dateColumn("ZCREATEDAT", v["ZCREATEDAT"])
	if err != nil {
		return bad("%v", err)
	}
	if !created.IsZero() {
		ev["created_at"] = created.Format(time.RFC3339Nano)
	}
	for col, key := range map[string]string{"ZENTITYID": "entity_id", "ZUSERID": "user_id"} {
		switch c := v[col].(type) {
		case nil:
		case []byte: // Core Data's UUID
			if len(c) != 16 {
				return bad("%s: a %d-byte blob, want a 16-byte UUID or text", col, len(c))
			}
			ev[key] = uuid.UUID(c).String()
		case string:
			if c != "" {
				ev[key] = c
			}
		default:
			return bad("%s: %v, want a 16-byte UUID or text", col, c)
		}
	}
	if _, ok := ev["user_id"]; !ok && o.user != "" {
		ev["user_id"] = o.user
	}
	for col, key := range map[string]string{"ZPRIORITY": "priority", "ZMAXATTEMPTS": "max_attempts"} {
		if c, ok := v[col]; ok && c != nil {
			i, ok := c.(int64)
			if !ok {
				return bad("%s: %v is not an integer", col, c)
			}
			if i != 0 || key == "priority" {
				ev[key] = i
			}
		}
	}
	if c, ok := v["ZISNEWRECORD"]; ok && c != nil {
		i, ok := c.(int64)
		if !ok {
			return bad("ZISNEWRECORD: %v is not 0 or 1", c)
		}
		ev["is_new_record"] = i != 0
	}
	meta := map[string]any{}
	if s, ok := textColumn(v["ZMETADATA"]); ok && strings.TrimSpace(s) != "" {
		dec := json.NewDecoder(strings.NewReader(s))
		dec.UseNumber()
		if err := dec.Decode(&meta); err != nil {
			return bad("ZMETADATA: not a JSON object: %v", err)
		}
		if meta == nil { // "null"
			meta = map[string]any{}
		}
	}
	attempts := int64(0)
	for _, col := range []string{"ZATTEMPTCOUNT", "ZRETRYCOUNT"} {
		if c, ok := v[col].(int64); ok {
			attempts = c
		}
	}
	if status != outbox.StatusCompleted {
		meta["import_attempts"] = attempts
		if s, _ := textColumn(v["ZERRORMESSAGE"]); s != "" {
			meta["import_error"] = s
		}
	}
	if len(meta) > 0 {
		ev["metadata"] = meta
	}
	if c, ok := v["ZPAYLOAD"]; ok && c != nil {
		var p []byte
		switch c := c.(type) {
		case []byte:
			p = c
		case string:
			p = []byte(c)
		default:
			return bad("ZPAYLOAD: %T, want a blob", c)
		}
		if json.Valid(p) {
			ev["payload"] = json.RawMessage(p)
			ev["content_type"] = outbox.ContentTypeJSON
		} else {
			ev["payload_base64"] = p // encoding/json writes []byte as base64
			ev["content_type"] = outbox.ContentTypeBinary
		}
	}
	row.event = ev
	return row
}

// uuidColumn reads Core Data's UUID: a 16-byte blob (a text UUID is taken
// too).
func uuidColumn(col string, c any) (string, error) {
	switch c := c.(type) {
	case []byte:
		if len(c) != 16 {
			return "", fmt.Errorf("%s: a %d-byte blob, want a 16-byte UUID", col, len(c))
		}
		return uuid.UUID(c).String(), nil
	case string:
		u, err := uuid.Parse(c)
		if err != nil {
			return "", fmt.Errorf("%s: %q is not a UUID", col, c)
		}
		return u.String(), nil
	case nil:
		return "", fmt.Errorf("%s: empty", col)
	}
	return "", fmt.Errorf("%s: %T, want a 16-byte UUID", col, c)
}

func textColumn(c any) (string, bool) {
	switch c := c.(type) {
	case string:
		return c, true
	case []byte:
		return string(c), true
	}
	return "", false
}

// dateColumn reads Core Data's date: seconds since 2001-01-01 as REAL
// (zero when NULL).
func dateColumn(col string, c any) (time.Time, error) {
	var secs float64
	switch c := c.(type) {
	case nil:
		return time.Time{}, nil
	case float64:
		secs = c
	case int64:
		secs = float64(c)
	default:
		return time.Time{}, fmt.Errorf("%s: %v is not a Core Data date (seconds since 2001-01-01)", col, c)
	}
	if math.IsNaN(secs) || math.IsInf(secs, 0) || math.Abs(secs) > 9e9 { // within time.Duration's nanoseconds
		return time.Time{}, fmt.Errorf("%s: %v is not a Core Data date (seconds since 2001-01-01)", col, c)
	}
	whole, frac := math.Modf(secs)
	return coreDataEpoch.Add(time.Duration(whole) * time.Second).Add(time.Duration(frac * 1e9)), nil
}
