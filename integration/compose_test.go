//go:build integration

package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// compose runs docker-compose (or the docker compose plugin, whichever
// answers) on the repository's docker-compose.yml under one project name.
type compose struct {
	bin     []string // "docker-compose" or "docker", "compose"
	root    string   // the repository root
	project string
	files   []string // compose files, relative to root: docker-compose.yml and overrides
	env     []string // added to the environment of every command
}

// detectCompose finds a compose tool that answers "version".
func detectCompose(ctx context.Context) ([]string, error) {
	for _, bin := range [][]string{{"docker", "compose"}, {"docker-compose"}} {
		cmd := exec.CommandContext(ctx, bin[0], append(bin[1:], "version")...)
		if err := cmd.Run(); err == nil {
			return bin, nil
		}
	}
	return nil, errors.New("neither `docker compose` nor `docker-compose` answers")
}

// repoRoot is the directory holding docker-compose.yml, above this package.
func repoRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("cannot locate the test's source file")
	}
	root := filepath.Dir(filepath.Dir(file))
	if _, err := os.Stat(filepath.Join(root, "docker-compose.yml")); err != nil {
		return "", fmt.Errorf("docker-compose.yml not found in %s: %w", root, err)
	}
	return root, nil
}

// run runs one compose command and returns its combined output.
func (c *compose) run(ctx context.Context, args ...string) (string, error) {
	full := append([]string{}, c.bin[1:]...)
	for _, f := range c.files {
		full = append(full, "-f", filepath.Join(c.root, f))
	}
	full = append(append(full, "-p", c.project), args...)
	return runCmd(ctx, c.root, c.env, c.bin[0], full...)
}

// docker runs one docker command and returns its combined output.
func docker(ctx context.Context, args ...string) (string, error) {
	return runCmd(ctx, "", nil, "docker", args...)
}

func runCmd(ctx context.Context, dir string, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, tail(out.String(), 2000))
	}
	return out.String(), nil
}

// tail is the end of s, at most n bytes.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
