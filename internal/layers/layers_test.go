// Package layers holds the test that keeps keyward's dependencies pointing
// one way, as docs/architecture.md draws them: from the entry points down
// to the domain, never from production code to the local stack or to a
// test helper.
package layers

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/testenv"
)

const module = "github.com/keyward/keyward/"

// rank is each package's layer; a package imports only packages of a
// lower layer. A new package fails the test until it is given one here
// and a place in docs/architecture.md.
var rank = map[string]int{
	// Values and rules that depend on nothing of keyward's but the store's
	// types.
	"pkg/clock": 0, "pkg/accesslog": 0, "pkg/scope": 0, "pkg/policy": 0, "pkg/origin": 0, "pkg/apikey": 0, "pkg/store": 0, "docs": 0,
	// Configuration, and the adapters to what is outside the process.
	"pkg/config": 1, "pkg/pepper": 1, "pkg/store/dynamo": 1, "pkg/store/embedded": 1, "pkg/apigw": 1,
	"pkg/route": 2, "pkg/usage": 2,
	// The domain.
	"pkg/lifecycle": 3, "pkg/authorizer": 3, "pkg/keyevents": 3,
	"pkg/leaks": 4, "pkg/jobs": 4, "pkg/ratelimits": 4,
	// The admin API, and the local stand-in for API Gateway in front of it,
	// which hands it requests as API Gateway does and so never imports it.
	// The console beside it, and the local OpenID provider members of the
	// demo tenant sign in with.
	"pkg/admin": 5, "pkg/localstack/gateway": 5, "pkg/console": 5, "pkg/localstack/oidc": 5,
	// Entry points: the Lambda functions and their wiring (the start-up
	// they share, and apart the API Gateway clients and the console's, so
	// that the authorizer links neither), the local stack.
	"functions/internal/wiring":     6,
	"functions/internal/gatewayapi": 7, "functions/internal/consolesetup": 7, "pkg/localstack": 7,
	"functions/admin": 8, "functions/authorizer": 8, "functions/jobs": 8, "functions/publisher": 8, "functions/usage": 8,
	"cmd/keyward": 8,
}

// testOnly are the packages only tests (and the tools in scripts/) may
// import: test harnesses and the store conformance suite.
var testOnly = []string{"internal/", "pkg/store/conformance"}

// local is the local emulation: only cmd/ and itself may import it.
const local = "pkg/localstack"

// adapters talk to DynamoDB and API Gateway; only the entry points (layer
// 6 and up) choose and wire them, so the domain runs on any store.
var adapters = []string{"pkg/store/dynamo", "pkg/store/embedded", "pkg/apigw"}

const entryPoints = 6

type pkg struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

func packages(t *testing.T) []pkg {
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "list", "-json", "./...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			t.Fatalf("go list: %v\n%s", err, exit.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		p.ImportPath = strings.TrimPrefix(p.ImportPath, module)
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func own(imports []string) []string {
	var out []string
	for _, i := range imports {
		if p, ok := strings.CutPrefix(i, module); ok {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

func under(p, tree string) bool {
	return p == strings.TrimSuffix(tree, "/") || strings.HasPrefix(p, strings.TrimSuffix(tree, "/")+"/")
}

func isTestOnly(p string) bool {
	for _, t := range testOnly {
		if under(p, t) {
			return true
		}
	}
	return false
}

func TestDependenciesPointDown(t *testing.T) {
	for _, p := range packages(t) {
		from := p.ImportPath
		if isTestOnly(from) || under(from, "scripts") {
			continue
		}
		r, known := rank[from]
		if !known {
			t.Errorf("%s has no layer: give it one in internal/layers and docs/architecture.md", from)
			continue
		}
		for _, to := range own(p.Imports) {
			switch {
			case isTestOnly(to):
				t.Errorf("%s imports the test helper %s", from, to)
			case under(to, local) && !under(from, local) && !under(from, "cmd"):
				t.Errorf("%s imports the local stack's %s", from, to)
			case slices.Contains(adapters, to) && r < entryPoints:
				t.Errorf("%s imports the adapter %s: entry points wire adapters", from, to)
			case rank[to] >= r:
				t.Errorf("%s (layer %d) imports %s (layer %d): dependencies point down", from, r, to, rank[to])
			}
		}
	}
}

// TestOnlyTheLocalStackImportsItself: not even a test outside cmd/ and the
// local stack imports it, so the domain is tested without the emulation.
func TestOnlyTheLocalStackImportsItself(t *testing.T) {
	for _, p := range packages(t) {
		if under(p.ImportPath, local) || under(p.ImportPath, "cmd") {
			continue
		}
		for _, to := range own(append(append(p.Imports, p.TestImports...), p.XTestImports...)) {
			if under(to, local) {
				t.Errorf("%s imports %s", p.ImportPath, to)
			}
		}
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, path))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestArchitecturePageNamesEveryLayer: docs/architecture.md draws every
// package this test knows, on the layer it has here.
func TestArchitecturePageNamesEveryLayer(t *testing.T) {
	page := read(t, "docs/architecture.md")
	for p, r := range rank {
		line := ""
		for _, l := range strings.Split(page, "\n") {
			if strings.HasPrefix(l, strconv.Itoa(r)+"  ") && strings.Contains(l, lastPart(p)) {
				line = l
			}
		}
		if line == "" {
			t.Errorf("docs/architecture.md does not draw %s on layer %d", p, r)
		}
	}
}

func lastPart(p string) string { return p[strings.LastIndexByte(p, '/')+1:] }

// TestReadmeLayoutMatchesTree: the README's layout table names every
// top-level entry of the repository, and nothing that is not there.
func TestReadmeLayoutMatchesTree(t *testing.T) {
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("git", "ls-files")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	top := map[string]bool{}
	for _, f := range strings.Fields(string(out)) {
		name, _, isDir := strings.Cut(f, "/")
		if isDir {
			name += "/"
		}
		top[name] = true
	}
	readme := read(t, "README.md")
	_, table, _ := strings.Cut(readme, "## Layout\n")
	table, _, _ = strings.Cut(table, "\n## ")
	named := map[string]bool{}
	for _, l := range strings.Split(table, "\n") {
		if !strings.HasPrefix(l, "| `") {
			continue
		}
		first, _, _ := strings.Cut(strings.TrimPrefix(l, "| "), " |")
		for _, part := range strings.Split(first, ", ") {
			name := strings.Trim(part, "`")
			if i := strings.IndexByte(name, '/'); i >= 0 {
				name = name[:i+1]
			}
			named[name] = true
		}
	}
	for name := range top {
		if !named[name] {
			t.Errorf("README's layout table does not name %s", name)
		}
	}
	for name := range named {
		if !top[name] {
			t.Errorf("README's layout table names %s, which the tree does not have", name)
		}
	}
}
