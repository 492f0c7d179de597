package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/fitiqcore/outbox/internal/bench"
)

const benchUsage = `usage: relay bench [flags]

Measures, in one run against a JetStream server it starts itself, the raw
JetStream and bbolt ceilings, enqueue, HTTP ingest, the relay's drain of a
100k and a 1M backlog (with peak RSS), sustained load, commit-to-ack latency
at 1k events/s and a FitIQ-style poller, and prints them with their ratios
and targets. A full run takes a few minutes and about 2 GB of temporary disk.

flags:
`

// benchHidden are flags left out of the usage: the profile is for
// development, --serve-nats is the child server's side.
var benchHidden = map[string]bool{"cpuprofile": true, "cpuprofile-phase": true, "serve-nats": true}

func benchCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	events := fs.Int("events", 100_000, "size of most figures: messages, writes, events, the drain's backlog")
	events1M := fs.Int("events-1m", 1_000_000, "backlog of drain_1m")
	duration := fs.Duration("duration", 10*time.Second, "length of sustained, latency and baseline_fitiq")
	payload := fs.Int("payload", 256, "payload size in bytes")
	natsURL := fs.String("nats-url", "", "measure against this JetStream server instead of starting one")
	server := fs.String("server", "child", "how to start the server: child (a process of its own) or inprocess")
	jsonOut := fs.Bool("json", false, "print the result as one JSON object")
	quick := fs.Bool("quick", false, "small sizes (2,000 events, 5,000 for drain_1m, 1s), for a smoke test")
	only := fs.String("only", "", "comma-separated phases to run: "+strings.Join(bench.Phases, ","))
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the timed part of one phase to this file")
	profilePhase := fs.String("cpuprofile-phase", "drain", "the phase --cpuprofile profiles")
	serveNATS := fs.String("serve-nats", "", "run the child JetStream server storing under this directory")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), benchUsage)
		fs.VisitAll(func(f *flag.Flag) {
			if !benchHidden[f.Name] {
				def := ""
				if f.DefValue != "" && f.DefValue != "false" {
					def = " (default " + f.DefValue + ")"
				}
				fmt.Fprintf(fs.Output(), "  --%s\n    \t%s%s\n", f.Name, f.Usage, def)
			}
		})
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return exitCode(2)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench: unexpected argument %q", fs.Arg(0))
	}
	if *serveNATS != "" {
		return bench.ServeChild(ctx, *serveNATS, os.Stdin, stdout)
	}

	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	opts := bench.Options{Payload: *payload, NATSURL: *natsURL, Quick: *quick}
	// In quick mode the sizes not given are the quick ones.
	if !*quick || set["events"] {
		opts.Events = *events
	}
	if !*quick || set["events-1m"] {
		opts.Events1M = *events1M
	}
	if !*quick || set["duration"] {
		opts.Duration = *duration
	}
	if *only != "" {
		opts.Only = strings.Split(*only, ",")
	}
	switch *server {
	case "child":
		if *natsURL == "" {
			exe, err := os.Executable()
			if err != nil {
				return fmt.Errorf("bench: %w (use --server inprocess)", err)
			}
			opts.ServerCommand = func(dir string) *exec.Cmd { return exec.Command(exe, "bench", "--serve-nats", dir) }
		}
	case "inprocess":
	default:
		return fmt.Errorf("bench: --server must be child or inprocess, got %q", *server)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		defer f.Close()
		opts.CPUProfile, opts.ProfilePhase = f, *profilePhase
	}

	var progress io.Writer
	if f, ok := stderr.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			progress = stderr
		}
	}
	res, err := bench.Run(ctx, opts, progress)
	if err != nil {
		return err
	}
	if *jsonOut {
		return bench.WriteJSON(stdout, res)
	}
	return bench.WriteTable(stdout, res)
}
