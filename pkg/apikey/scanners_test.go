package apikey_test

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/apikey"
)

// scannerPrefix is the prefix the rules in docs/scanners are written for.
const scannerPrefix = "keyward"

// gitleaksModule is the gitleaks release docs/scanners/gitleaks.toml is
// tested against; its go.mod names the module github.com/zricethezav/gitleaks.
const gitleaksModule = "github.com/zricethezav/gitleaks/v8@v8.30.1"

// gitleaksRuleID is the id of the rule in docs/scanners/gitleaks.toml.
const gitleaksRuleID = "keyward-api-key"

// docsEntropy is the minimum Shannon entropy both docs/scanners rules set.
const docsEntropy = 3.5

// pieceKind says what a scanner must make of a piece of a sample file.
type pieceKind int

const (
	// plain text, lookalikes included: nothing may be found in it.
	plain pieceKind = iota
	// planted is a real token of scannerPrefix: every scanner finds it.
	planted
	// shaped is token-shaped but not a key of scannerPrefix (another
	// prefix, a placeholder): apikey.FindAll, which knows no prefix and
	// checks no checksum, finds it; the docs/scanners rules must not.
	shaped
)

type piece struct {
	kind pieceKind
	text string
}

func txt(s string) piece   { return piece{plain, s} }
func tok(s string) piece   { return piece{planted, s} }
func shape(s string) piece { return piece{shaped, s} }

// sampleFile is a file of the scanned tree, built from pieces so that what
// each scanner must find follows from how it was written.
type sampleFile struct {
	name   string
	pieces []piece
}

func (f sampleFile) content() string {
	var b strings.Builder
	for _, p := range f.pieces {
		b.WriteString(p.text)
	}
	return b.String()
}

// want returns the pieces of the given kinds, in file order.
func (f sampleFile) want(kinds ...pieceKind) []string {
	var out []string
	for _, p := range f.pieces {
		if slices.Contains(kinds, p.kind) {
			out = append(out, p.text)
		}
	}
	return out
}

// tokenSource generates real tokens with the package's own Generate.
type tokenSource struct {
	t *testing.T
	f apikey.Format
}

func newTokenSource(t *testing.T, prefix string) tokenSource {
	t.Helper()
	f, err := apikey.NewFormat(prefix)
	if err != nil {
		t.Fatal(err)
	}
	return tokenSource{t, f}
}

func (s tokenSource) next(env apikey.Environment) string {
	s.t.Helper()
	for {
		tok, err := s.f.Generate(env)
		if err != nil {
			s.t.Fatal(err)
		}
		plain := tok.Plain()
		// The rule extends gitleaks' default configuration, whose global
		// allowlist has the regex (?i)^true|false|null$: its alternatives
		// are unanchored, so it drops any secret that contains "false" or
		// ends in "null", in any case; about three tokens in a million.
		// Drawing again keeps the test from failing on that
		// (docs/scanners/README.md).
		if l := strings.ToLower(plain); strings.Contains(l, "false") || strings.HasSuffix(l, "null") {
			continue
		}
		return plain
	}
}

// corpus returns sample files with fresh tokens: the contexts keys leak in,
// and lookalikes that must not be taken for a key of scannerPrefix.
func corpus(t *testing.T) []sampleFile {
	t.Helper()
	kw := newTokenSource(t, scannerPrefix)
	live := func() string { return kw.next(apikey.Live) }
	test := func() string { return kw.next(apikey.Test) }
	stripeLike := newTokenSource(t, "sk").next(apikey.Live)
	acme := newTokenSource(t, "acme").next(apikey.Test)
	random50, err := apikey.RandomString(50)
	if err != nil {
		t.Fatal(err)
	}
	body := live()[len(scannerPrefix)+len("_live_"):]
	base := live()

	return []sampleFile{
		{".env", []piece{
			txt("# keyward\nAPI_KEY="), tok(live()),
			txt("\nKEYWARD_TEST_KEY="), tok(test()),
			txt("\nSTRIPE_KEY="), shape(stripeLike), txt("\n"),
		}},
		{"adjacent.env", []piece{
			txt("API_KEY_"), tok(live()), txt("\n"),
			txt("export KEYWARD_"), tok(test()), txt("_OLD=1\n"),
			txt("KEY_"), tok(live()), txt("=set\n"),
		}},
		{"config.json", []piece{
			txt(`{"keyward": {"live": "`), tok(live()), txt(`", "test": "`), tok(test()),
			txt(`"}, "keys": ["`), tok(live()), txt(`","`), shape("kwd_live_" + random50),
			txt(`"], "acme": "`), shape(acme), txt("\"}\n"),
		}},
		{"config.yaml", []piece{
			txt("keyward:\n  api_key: "), tok(live()),
			txt("\n  quoted: '"), tok(test()),
			txt("'\n  keys:\n    - "), tok(live()),
			txt("\n    - \""), tok(test()), txt("\"\n"),
		}},
		{"main.go", []piece{
			txt("package main\n\nconst liveKey = \""), tok(live()),
			txt("\"\n\nvar testKey = `"), tok(test()),
			txt("`\n\nfunc main() { println(liveKey, testKey) }\n"),
		}},
		{"deploy.sh", []piece{
			txt("#!/bin/sh\nexport KEYWARD_API_KEY='"), tok(live()),
			txt("'\ncurl -H \"Authorization: Bearer "), tok(live()),
			txt("\" \"https://api.example.com/v1/invoices?key="), tok(test()), txt("&limit=1\"\n"),
		}},
		{"README.md", []piece{
			txt("# Keys\n\nUse `"), tok(test()), txt("` in tests.\n\n| key | env |\n| --- | --- |\n|"),
			tok(live()), txt("|live|\n\n«"), tok(live()), txt("»\n"),
		}},
		{"underscores.txt", []piece{
			txt("_"), tok(live()), txt("_\n"),
			txt("__"), tok(test()), txt("__\n"),
			txt("prefix_"), tok(live()), txt("_suffix\n"),
			tok(live()), txt("\n"),
			tok(test()), txt("\n"),
			tok(live()), txt(" "), tok(test()), txt("\n"),
		}},
		{"lookalikes.txt", []piece{
			txt("one short " + base[:len(base)-1] + "\n"),
			txt("one long " + base + "A\n"),
			txt("digit before 7" + base + "\n"),
			txt("letters before ab" + base + "\n"),
			txt("uppercase env " + scannerPrefix + "_LIVE_" + body + "\n"),
			txt("uppercase prefix " + strings.ToUpper(scannerPrefix) + "_live_" + body + "\n"),
			txt("other env " + scannerPrefix + "_prod_" + body + "\n"),
			txt("dashes " + scannerPrefix + "-live-" + body + "\n"),
			txt("no separator " + scannerPrefix + "_live" + body + "\n"),
			txt("broken body " + scannerPrefix + "_live_" + body[:20] + "-" + body[20:] + "\n"),
			txt("twice " + base + base + "\n"),
			// FindAll finds these, as any prefix's token; the rules must not.
			txt("letter before "), shape("x" + base), txt("\n"),
			txt("placeholder "), shape(scannerPrefix + "_live_" + strings.Repeat("x", 50)), txt("\n"),
			txt("other prefix "), shape(newTokenSource(t, "kw").next(apikey.Live)), txt("\n"),
		}},
	}
}

// TestScannerDocsUseDefaultPrefix keeps docs/scanners, written for one
// prefix, in step with the prefix tokens get when none is configured.
func TestScannerDocsUseDefaultPrefix(t *testing.T) {
	if apikey.DefaultPrefix != scannerPrefix {
		t.Fatalf("docs/scanners is written for prefix %q, apikey.DefaultPrefix is %q", scannerPrefix, apikey.DefaultPrefix)
	}
}

func TestFindAllScannerCorpus(t *testing.T) {
	for _, f := range corpus(t) {
		if got, want := apikey.FindAll(f.content()), f.want(planted, shaped); !slices.Equal(got, want) {
			t.Errorf("%s: FindAll = %q, want %q", f.name, got, want)
		}
	}
}

func TestFindAllUnderscores(t *testing.T) {
	src := newTokenSource(t, scannerPrefix)
	a, b := src.next(apikey.Live), src.next(apikey.Test)
	for _, c := range []struct {
		text string
		want []string
	}{
		{"API_KEY_" + a, []string{a}},
		{"_" + a + "_", []string{a}},
		{a + "_", []string{a}},
		{"API_KEY_" + a + "_" + b, []string{a, b}}, // one "_" ends a and starts b
		{a + "__" + b, []string{a, b}},
		{a + "-" + b, []string{a, b}},
		{"9" + a, nil},
		{a + "9", nil},
		{a + b, nil},
		{"_" + a[:len(a)-1] + "_", nil},
	} {
		if got := apikey.FindAll(c.text); !slices.Equal(got, c.want) {
			t.Errorf("FindAll(%q) = %q, want %q", c.text, got, c.want)
		}
	}
}

// TestScannerDocsRegexes checks that the rules in docs/scanners are Pattern
// with scannerPrefix in place of [a-z]{2,8}, and applies them to the corpus
// as gitleaks and trufflehog do (every match, group 1 the secret, entropy
// threshold), so the trufflehog detector, which this test cannot run, is
// checked too.
func TestScannerDocsRegexes(t *testing.T) {
	root := moduleRoot(t)
	want := strings.Replace(apikey.Pattern, "[a-z]{2,8}", scannerPrefix, 1)
	for _, d := range []struct{ file, regex, entropy string }{
		{"gitleaks.toml", `(?m)^regex = '''(.*)'''$`, `(?m)^entropy = 3\.5$`},
		{"trufflehog.yaml", `(?m)^\s+token: '(.*)'$`, `(?m)^\s+entropy: 3\.5$`},
	} {
		raw, err := os.ReadFile(filepath.Join(root, "docs", "scanners", d.file))
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(d.regex).FindAllSubmatch(raw, -1)
		if len(m) != 1 {
			t.Fatalf("%s: %d token regexes, want 1", d.file, len(m))
		}
		if got := string(m[0][1]); got != want {
			t.Fatalf("%s: regex %q, want %q", d.file, got, want)
		}
		if !regexp.MustCompile(d.entropy).Match(raw) {
			t.Fatalf("%s: no entropy threshold of %v", d.file, docsEntropy)
		}
	}
	re := regexp.MustCompile(want)
	for _, f := range corpus(t) {
		var got []string
		for _, m := range re.FindAllStringSubmatch(f.content(), -1) {
			if entropy(m[1]) > docsEntropy {
				got = append(got, m[1])
			}
		}
		if want := f.want(planted); !slices.Equal(got, want) {
			t.Errorf("%s: rule finds %q, want %q", f.name, got, want)
		}
	}
}

// entropy is the Shannon entropy of s in bits per character, as both
// scanners compute it for ASCII text.
func entropy(s string) float64 {
	var counts [256]int
	for i := 0; i < len(s); i++ {
		counts[s[i]]++
	}
	var h float64
	for _, n := range counts {
		if n > 0 {
			p := float64(n) / float64(len(s))
			h -= p * math.Log2(p)
		}
	}
	return h
}

// contextRules are gitleaks default rules that report whatever secret
// stands in a telling context, whatever its prefix: generic-api-key after a
// name like API_KEY (dropped when a specific rule reports the same secret),
// curl-auth-header in curl -H "Authorization: Bearer ...". That they also
// report a keyward key is right; what must not happen is another issuer's
// rule, such as Stripe's for sk_live_, claiming it.
var contextRules = map[string]bool{"generic-api-key": true, "curl-auth-header": true}

// gitleaksFinding is the part of a gitleaks JSON report finding the test
// reads.
type gitleaksFinding struct {
	RuleID    string
	File      string
	StartLine int
	Secret    string
}

// TestGitleaksRule runs gitleaks once, with docs/scanners/gitleaks.toml, over
// the corpus: its rule must report every planted token, exactly, and nothing
// else; no default rule but contextRules may claim a keyward token; and the
// default rules must still be on (the Stripe rule reports the sk_live_
// token).
func TestGitleaksRule(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs gitleaks")
	}
	config := filepath.Join(moduleRoot(t), "docs", "scanners", "gitleaks.toml")
	gitleaks := gitleaksBinary(t)

	files := corpus(t)
	dir := t.TempDir()
	samples := filepath.Join(dir, "samples")
	if err := os.Mkdir(samples, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(samples, f.name), []byte(f.content()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	report := filepath.Join(dir, "report.json")

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, gitleaks, "dir", samples,
		"--config", config,
		"--report-format", "json", "--report-path", report,
		"--no-banner", "--exit-code", "0", "--log-level", "warn")
	// gitleaks reads .gitleaksignore from its working directory: run it
	// where there is none.
	cmd.Dir = t.TempDir()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gitleaks: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var findings []gitleaksFinding
	if err := json.Unmarshal(raw, &findings); err != nil {
		t.Fatalf("gitleaks report: %v\n%s", err, raw)
	}

	byFile := map[string][]string{}
	var stripe []string
	for _, f := range findings {
		name := filepath.Base(f.File)
		switch f.RuleID {
		case gitleaksRuleID:
			byFile[name] = append(byFile[name], f.Secret)
		case "stripe-access-token":
			stripe = append(stripe, f.Secret)
		}
	}
	var all []string
	for _, f := range files {
		want := f.want(planted)
		all = append(all, want...)
		got := byFile[f.name]
		delete(byFile, f.name)
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: %s reported %q, want %q", f.name, gitleaksRuleID, got, want)
		}
	}
	for name, got := range byFile {
		t.Errorf("%s: %s reported %q in a file that was not planted", name, gitleaksRuleID, got)
	}
	for _, f := range findings {
		if f.RuleID == gitleaksRuleID || contextRules[f.RuleID] || f.Secret == "" {
			continue
		}
		for _, tok := range all {
			if strings.Contains(f.Secret, tok) || strings.Contains(tok, f.Secret) {
				t.Errorf("%s:%d: default rule %s claims keyward token %.20s…", filepath.Base(f.File), f.StartLine, f.RuleID, tok)
			}
		}
	}
	// The sk_live_ token of .env: the default rules are on, and they take
	// an sk_ key for Stripe's, which is why keyward's prefix is not sk.
	if len(stripe) != 1 || !strings.HasPrefix(stripe[0], "sk_live_") {
		t.Errorf("stripe-access-token reported %q, want the one sk_live_ token", stripe)
	}
}

// gitleaksBinary builds gitleaksModule into a temporary GOBIN. Building it
// apart from the scan tells a gitleaks that cannot be had (no module proxy
// or network) from a scan that fails: the first fails the test in CI
// (CI=true) and skips it elsewhere, as the DynamoDB tests do.
func gitleaksBinary(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		gitleaksUnavailable(t, "no go command: %v", err)
	}
	bin := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool, "install", gitleaksModule)
	// Outside this module, so that nothing of its go.mod or GOFLAGS applies
	// to gitleaks' own dependencies.
	cmd.Dir = bin
	cmd.Env = append(os.Environ(), "GOBIN="+bin)
	if out, err := cmd.CombinedOutput(); err != nil {
		gitleaksUnavailable(t, "go install %s: %v\n%s", gitleaksModule, err, out)
	}
	name := "gitleaks"
	if runtime.GOOS == "windows" {
		name += ".exe"
	}
	return filepath.Join(bin, name)
}

func gitleaksUnavailable(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("gitleaks is required in CI: "+format, args...)
	}
	t.Skipf("gitleaks unavailable: "+format, args...)
}

// moduleRoot is the directory of the go.mod above the package directory,
// where go test runs the test.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the package directory")
		}
		dir = parent
	}
}
