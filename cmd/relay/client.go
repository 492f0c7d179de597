package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/fitiqcore/outbox"
)

// defaultAddr is where the operator's commands look for a relay when
// neither --addr nor --config says.
const defaultAddr = "127.0.0.1:7070"

// commonFlags are the flags of every command that talks to a running relay.
type commonFlags struct {
	addr, config, token, caFile string
	json                        bool
}

func addCommonFlags(fs *flag.FlagSet) *commonFlags {
	f := &commonFlags{}
	fs.StringVar(&f.addr, "addr", "", "the relay's HTTP address, host:port or a URL (default: --config's http.addr, else "+defaultAddr+")")
	fs.StringVar(&f.config, "config", "", "the relay's config file, for its http.addr and http.token")
	fs.StringVar(&f.token, "token", "", "bearer token (default: $RELAY_TOKEN, else --config's http.token)")
	fs.StringVar(&f.caFile, "ca-file", "", "PEM file of the CA that signed the relay's HTTPS certificate (default: $RELAY_CA_FILE, else --config's http.tls.ca_file, else the system's roots)")
	fs.BoolVar(&f.json, "json", false, "print JSON instead of a table")
	return f
}

// loadConfig reads --config, or the defaults when it is not given.
func (f *commonFlags) loadConfig() (*Config, error) { return loadConfig(f.config) }

// client resolves the relay's address, token and CA from the flags, the
// environment and the config file, in that order. An address from the
// config is https:// when the config serves TLS.
func (f *commonFlags) client() (*client, error) {
	var cfg *Config
	if f.config != "" {
		c, err := loadConfig(f.config)
		if err != nil {
			return nil, err
		}
		cfg = c
	}
	addr, token, caFile := f.addr, f.token, f.caFile
	if addr == "" {
		addr = defaultAddr
		if cfg != nil {
			addr = cfg.HTTP.Addr
			if cfg.HTTP.TLS.enabled() {
				addr = "https://" + addr
			}
		}
	}
	if token == "" {
		token = os.Getenv("RELAY_TOKEN")
	}
	if token == "" && cfg != nil {
		token = cfg.HTTP.Token
	}
	caKey := "--ca-file"
	if caFile == "" {
		caFile, caKey = os.Getenv("RELAY_CA_FILE"), "$RELAY_CA_FILE"
	}
	if caFile == "" && cfg != nil {
		caFile, caKey = cfg.HTTP.TLS.CAFile, "http.tls.ca_file"
	}
	c, err := newClient(addr, token)
	if err != nil {
		return nil, err
	}
	if caFile != "" {
		if err := c.trust(caKey, caFile); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// client talks to a running relay's HTTP API.
type client struct {
	base  *url.URL
	token string
	hc    *http.Client
}

// newClient accepts host:port or an http(s) URL.
func newClient(addr, token string) (*client, error) {
	raw := addr
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("--addr %q: want host:port or http://host:port", addr)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return &client{base: u, token: token, hc: &http.Client{}}, nil
}

// trust makes the client accept the relay's certificate when the CA in the
// PEM file caFile signed it (instead of the system's roots); key names where
// the file came from in an error.
func (c *client) trust(key, caFile string) error {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return fmt.Errorf("%s: %s holds no PEM certificate", key, caFile)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	c.hc = &http.Client{Transport: tr}
	return nil
}

// String is the relay's base URL.
func (c *client) String() string { return c.base.String() }

// apiError is an error answer of the relay.
type apiError struct {
	Status  int
	Message string
}

func (e *apiError) Error() string { return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Status) }

// errUnreachable wraps failures to reach the relay at all.
var errUnreachable = errors.New("relay unreachable")

// request sends one request; body, when not nil, is sent as JSON.
func (c *client) request(ctx context.Context, method, path string, q url.Values, body any) (*http.Response, error) {
	u := *c.base
	u.Path += path
	u.RawQuery = q.Encode()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", outbox.ContentTypeJSON)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w at %s: %v", errUnreachable, c.base, err)
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var eb struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &eb) != nil || eb.Error == "" {
			eb.Error = strings.TrimSpace(string(b))
		}
		return nil, &apiError{Status: resp.StatusCode, Message: eb.Error}
	}
	return resp, nil
}

// do sends a request and decodes the JSON answer into out (when not nil).
func (c *client) do(ctx context.Context, method, path string, q url.Values, body, out any) error {
	resp, err := c.request(ctx, method, path, q, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// parseArgs parses flags that may come before, between or after the
// positional arguments ("events retry ID --json"), and returns the
// positional ones. A parse error has been printed with the usage: the
// caller returns exitCode(2).
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		rest := fs.Args()
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return append(pos, rest...), nil // after "--" everything is positional
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// newFlagSet is a flag set that prints its errors and usage to stderr.
func newFlagSet(name, synopsis string, std stdio) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(std.errOut)
	fs.Usage = func() {
		fmt.Fprintf(std.errOut, "usage: relay %s\n\nflags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// flagError turns a flag parse error into the exit status: 0 for --help.
func flagError(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return exitCode(2)
}

// listFlag is a repeatable flag: each value is one item, byte for byte (an
// entity_id may hold commas and spaces).
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, " ") }

func (l *listFlag) Set(v string) error {
	*l = append(*l, v)
	return nil
}
