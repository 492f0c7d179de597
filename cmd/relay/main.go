// Command relay runs FitIQCore Outbox: the sidecar that stores events handed
// to it over HTTP and relays them to NATS JetStream, and the operator's tools
// that talk to a running relay through its HTTP API.
//
//	relay serve [--config FILE]
//	relay status | events | purge | reset | backup | verify | test-sync | import | export [flags]
//	relay compact --config FILE
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

func main() {
	// The relay allocates little that lives long (in-flight events, copies of
	// records) and a lot that dies young; a less eager collector gains about
	// 17% of drain throughput here (docs/PERFORMANCE.md). GOGC still wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		var ec exitCode
		if errors.As(err, &ec) {
			os.Exit(int(ec)) // the command has said why
		}
		fmt.Fprintln(os.Stderr, "relay:", err)
		os.Exit(1)
	}
}

// exitCode is an error that asks for a particular exit status; the command
// returning it has already written why.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

const usage = `usage: relay <command> [flags]

the relay:
  serve       store events handed over HTTP and relay them to NATS JetStream
              (--config FILE; with none, an embedded NATS server and ./data)

operating a running relay (through its HTTP API: --addr HOST:PORT or a URL,
default from --config's http.addr or 127.0.0.1:7070; --token or $RELAY_TOKEN;
for HTTPS an https:// --addr, or a --config with http.tls, and --ca-file or
$RELAY_CA_FILE for a private CA):
  status      the debug report: statistics, stale and failed events with their
              errors, NATS connection, stream; exits 1 when there are issues
  events      list|show|retry|delete events (--status --user --entity --type)
  purge       --completed-older-than D: delete completed events older than D
  reset       --emergency [--yes]: back up, then delete every event
  backup      FILE: a consistent copy of the store file (--offline --config F
              reads the file itself when no relay is running)
  verify      the integration check: stream, subjects, a probe event end to end
  test-sync   --type T --count N [--wait]: enqueue test events, measure latency
  import      --ndjson FILE | --coredata FILE [--dry-run] [--include-completed]
              [--user U]: take over the events of another outbox, keeping ids
  export      --ndjson FILE [--status S]: the events, one JSON line each

offline (the relay must be stopped):
  compact     --config FILE: rewrite the store file to reclaim free pages

development:
  bench       measure JetStream, bbolt and the relay end to end (--help)

Every command takes --help. Tables by default, --json for machines.
`

// command is one subcommand: it gets its arguments (after the command's
// name) and the process's standard files.
type command func(ctx context.Context, args []string, std stdio) error

// stdio are a command's standard files; tests pass buffers.
type stdio struct {
	in          io.Reader
	out, errOut io.Writer
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return dispatch(ctx, args, stdio{in: os.Stdin, out: stdout, errOut: stderr})
}

func dispatch(ctx context.Context, args []string, std stdio) error {
	if len(args) == 0 {
		fmt.Fprint(std.errOut, usage)
		return exitCode(2)
	}
	commands := map[string]command{
		"serve": func(ctx context.Context, args []string, std stdio) error {
			return serve(ctx, args, std.out, std.errOut)
		},
		"status":    cmdStatus,
		"events":    cmdEvents,
		"purge":     cmdPurge,
		"reset":     cmdReset,
		"backup":    cmdBackup,
		"compact":   cmdCompact,
		"verify":    cmdVerify,
		"test-sync": cmdTestSync,
		"import":    cmdImport,
		"export":    cmdExport,
		"bench": func(ctx context.Context, args []string, std stdio) error {
			return benchCmd(ctx, args, std.out, std.errOut)
		},
	}
	if cmd, ok := commands[args[0]]; ok {
		return cmd(ctx, args[1:], std)
	}
	switch args[0] {
	case "help", "-h", "--help":
		fmt.Fprint(std.out, usage)
		return nil
	}
	fmt.Fprintf(std.errOut, "relay: unknown command %q\n\n%s", args[0], usage)
	return exitCode(2)
}
