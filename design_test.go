package outbox_test

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestDesignPackageMap holds the package table at the top of docs/DESIGN.md
// to the imports: for each package listed, the packages of this module its
// non-test files import are those the table's last column names.
func TestDesignPackageMap(t *testing.T) {
	const module = "github.com/fitiqcore/outbox"
	doc, err := os.ReadFile("docs/DESIGN.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, _ := strings.Cut(string(doc), "| package | owns | imports (of ours) |")
	table, _, _ = strings.Cut(table, "\n\n")
	name := func(s string) string { // `internal/poll` → internal/poll; all of the above stays
		return strings.Trim(strings.TrimSpace(s), "`")
	}
	rows := 0
	for _, line := range strings.Split(table, "\n")[2:] {
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) != 3 {
			t.Fatalf("row %q: want 3 cells", line)
		}
		pkgs := strings.Split(cells[0], ",")
		wants := strings.Split(cells[2], "/")
		if len(wants) != len(pkgs) {
			wants = []string{cells[2]}
		}
		for i, p := range pkgs {
			p = name(p)
			dir := p
			if strings.HasPrefix(p, "outbox") {
				dir = "."
			}
			var want []string
			switch w := strings.TrimSpace(wants[min(i, len(wants)-1)]); w {
			case "—":
			case "all of the above":
				want = nil // checked below: every other library
			default:
				for _, x := range strings.Split(w, ",") {
					want = append(want, name(x))
				}
			}
			got := imports(t, dir, module)
			if name(cells[2]) == "all of the above" {
				for _, lib := range []string{"outbox", "boltstore", "publisher", "relay", "httpapi", "metrics"} {
					if !slices.Contains(got, lib) {
						t.Errorf("%s: the table says it imports all of the above, it does not import %s", p, lib)
					}
				}
				rows++
				continue
			}
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("%s imports %v, docs/DESIGN.md says %v", p, got, want)
			}
			rows++
		}
	}
	if rows < 10 {
		t.Fatalf("read %d packages from the table", rows)
	}
}

// imports lists the packages of module that the non-test files in dir
// import, by their short names ("outbox" for the root, "rungroup" for
// internal/rungroup).
func imports(t *testing.T, dir, module string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("%s: no Go files (%v)", dir, err)
	}
	var got []string
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, is := range af.Imports {
			path, _ := strconv.Unquote(is.Path.Value)
			short, ok := strings.CutPrefix(path, module)
			if !ok {
				continue
			}
			short = strings.TrimPrefix(short, "/")
			switch {
			case short == "":
				short = "outbox"
			case strings.HasPrefix(short, "internal/"):
				short = strings.TrimPrefix(short, "internal/")
			}
			if !slices.Contains(got, short) {
				got = append(got, short)
			}
		}
	}
	slices.Sort(got)
	return got
}
