package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/fitiqcore/outbox/httpapi"
)

// cmdReset is the emergency reset: it takes a backup, asks for confirmation
// (unless --yes) and deletes every event of the running relay's store.
func cmdReset(ctx context.Context, args []string, std stdio) error {
	fs := newFlagSet("reset", "reset --emergency [--yes] [--backup-dir DIR]", std)
	cf := addCommonFlags(fs)
	emergency := fs.Bool("emergency", false, "required: this deletes every event")
	yes := fs.Bool("yes", false, "do not ask for confirmation")
	dir := fs.String("backup-dir", ".", "where the backup taken first is written")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return flagError(err)
	}
	if len(pos) > 0 {
		return fmt.Errorf("reset: unexpected argument %q", pos[0])
	}
	if !*emergency {
		fmt.Fprintln(std.errOut, "relay: reset deletes every event of the outbox; say so with --emergency (a backup is taken first)")
		return exitCode(2)
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	var st httpapi.Stats
	if err := c.do(ctx, http.MethodGet, "/v1/stats", nil, nil, &st); err != nil {
		return fmt.Errorf("reset: %w", err)
	}
	path := filepath.Join(*dir, "outbox-backup-"+time.Now().UTC().Format("20060102T150405.000Z")+".db")
	n, err := onlineBackup(ctx, c, path)
	if err != nil {
		return fmt.Errorf("reset: backup failed, nothing deleted: %w", err)
	}
	if _, err := checkStoreFile(path); err != nil {
		return fmt.Errorf("reset: the backup does not check, nothing deleted: %w", err)
	}
	fmt.Fprintf(std.errOut, "backup: %s (%s)\n", path, bytesize(n))
	if !*yes {
		fmt.Fprintf(std.errOut, "This deletes all %d events of the relay at %s (%d pending, %d failed).\nType yes to continue: ",
			st.Total, c, st.Pending, st.Failed)
		line, _ := bufio.NewReader(std.in).ReadString('\n')
		if strings.TrimSpace(line) != "yes" {
			fmt.Fprintln(std.errOut, "relay: reset aborted; nothing deleted")
			return exitCode(1)
		}
	}
	var res countAnswer
	if err := c.do(ctx, http.MethodPost, "/v1/reset", url.Values{"confirm": {"yes"}}, nil, &res); err != nil {
		return fmt.Errorf("reset: %w (backup at %s)", err, path)
	}
	if cf.json {
		return printJSON(std.out, map[string]any{"count": res.Count, "backup": path})
	}
	fmt.Fprintf(std.out, "reset: deleted %d %s; backup at %s\n", res.Count, plural(res.Count, "event"), path)
	return nil
}
