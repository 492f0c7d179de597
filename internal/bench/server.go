package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// server is the JetStream server the figures are taken against.
type server struct {
	url  string
	desc string // for the notes
	stop func()
}

func startServer(ctx context.Context, o *Options, root string) (*server, error) {
	if o.NATSURL != "" {
		return &server{url: o.NATSURL, desc: "external " + o.NATSURL + " (streams: file storage, R1)", stop: func() {}}, nil
	}
	storeDir := filepath.Join(root, "nats")
	if o.ServerCommand != nil {
		return startChild(ctx, o.ServerCommand(storeDir))
	}
	ns, err := newServer(storeDir)
	if err != nil {
		return nil, err
	}
	return &server{
		url:  ns.ClientURL(),
		desc: "nats-server " + natsserver.VERSION + " in-process (its CPU and memory count in this process)",
		stop: func() { ns.Shutdown(); ns.WaitForShutdown() },
	}, nil
}

// newServer starts a JetStream server on a random loopback port.
func newServer(storeDir string) (*natsserver.Server, error) {
	ns, err := natsserver.NewServer(&natsserver.Options{
		Host:      "127.0.0.1",
		Port:      natsserver.RANDOM_PORT,
		JetStream: true,
		StoreDir:  storeDir,
		NoSigs:    true,
		NoLog:     true,
	})
	if err != nil {
		return nil, fmt.Errorf("bench: nats server: %w", err)
	}
	ns.Start() // it does not block; Shutdown and WaitForShutdown stop what it started
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("bench: nats server not ready after 10s")
	}
	return ns, nil
}

// ServeChild is the child process's side of Options.ServerCommand: it runs
// a JetStream server storing under storeDir on a random loopback port,
// writes its URL as one line to stdout, and serves until stdin reaches its
// end (the parent closed it, or died) or ctx ends.
func ServeChild(ctx context.Context, storeDir string, stdin io.Reader, stdout io.Writer) error {
	ns, err := newServer(storeDir)
	if err != nil {
		return err
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	if _, err := fmt.Fprintln(stdout, ns.ClientURL()); err != nil {
		return err
	}
	eof := make(chan struct{})
	go func() { io.Copy(io.Discard, stdin); close(eof) }() //nolint:errcheck // any end will do
	select {
	case <-ctx.Done():
	case <-eof:
	}
	return nil
}

// startChild runs cmd, reads the server's URL from its first line of output,
// and stops it by closing its stdin (killing it after 10s).
func startChild(ctx context.Context, cmd *exec.Cmd) (*server, error) {
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("bench: nats child: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("bench: nats child: %w", err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: nats child: %w", err)
	}
	exited := make(chan struct{})
	stop := func() {
		stdin.Close()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill() //nolint:errcheck // it may have exited meanwhile
			<-exited
		}
	}
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- strings.TrimSpace(l)
		io.Copy(io.Discard, stdout) //nolint:errcheck // until it exits
		cmd.Wait()                  //nolint:errcheck // the URL line says whether it started
		close(exited)
	}()
	var url string
	select {
	case url = <-line:
	case <-ctx.Done():
		stop()
		return nil, ctx.Err()
	case <-time.After(20 * time.Second):
		stop()
		return nil, errors.New("bench: nats child: no URL after 20s")
	}
	if !strings.HasPrefix(url, "nats://") {
		stop()
		return nil, fmt.Errorf("bench: nats child did not start: %q %s", url, strings.TrimSpace(stderr.String()))
	}
	return &server{
		url:  url,
		desc: fmt.Sprintf("nats-server %s in a child process (pid %d; its CPU and memory do not count in this process)", natsserver.VERSION, cmd.Process.Pid),
		stop: stop,
	}, nil
}

// connectAdmin opens the connection that creates and deletes streams.
func (r *runner) connectAdmin() error {
	nc, err := nats.Connect(r.srv.url, nats.Name("outbox-bench-admin"))
	if err != nil {
		return fmt.Errorf("bench: connect %s: %w", r.srv.url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return fmt.Errorf("bench: %w", err)
	}
	r.nc, r.js = nc, js
	return nil
}

// stream names a fresh stream for a phase: a unique name and subject prefix.
func (r *runner) stream(phase string) (name, prefix string) {
	return "BENCH_" + strings.ToUpper(phase) + "_" + r.id, "bench." + r.id + "." + phase
}

// streamConfig is the stream the publisher manages, for the phases that
// publish without one.
func streamConfig(name, prefix string) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:       name,
		Subjects:   []string{prefix + ".>"},
		Storage:    jetstream.FileStorage,
		Replicas:   1,
		Duplicates: 2 * time.Minute,
	}
}

// deleteStream frees the server's disk after a phase.
func (r *runner) deleteStream(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := r.js.DeleteStream(ctx, name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		r.note("could not delete stream %s: %v", name, err)
	}
}

// streamMsgs is how many messages a stream holds.
func (r *runner) streamMsgs(ctx context.Context, name string) (uint64, error) {
	st, err := r.js.Stream(ctx, name)
	if err != nil {
		return 0, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}

// phaseDir is a fresh directory for one figure.
func (r *runner) phaseDir(phase string) (string, error) {
	dir := filepath.Join(r.root, phase)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("bench: %w", err)
	}
	return dir, nil
}
