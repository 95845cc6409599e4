package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// member is a demo member the banner printed.
type member struct{ email, password, role string }

var memberLine = regexp.MustCompile(`(?m)^\s+(\S+@demo\.example)\s+(\S+)\s+(viewer|developer|admin)$`)

// consoleMembers reads the demo members and their passwords off the
// banner, as a person would.
func consoleMembers(t *testing.T, s *stack) map[string]member {
	t.Helper()
	out := map[string]member{}
	for _, m := range memberLine.FindAllStringSubmatch(s.stderr.String(), -1) {
		out[m[3]] = member{email: m[1], password: m[2], role: m[3]}
		s.addSecret(m[2])
	}
	if len(out) != 3 {
		t.Fatalf("the banner names %d demo members, want 3:\n%s", len(out), s.stderr)
	}
	return out
}

// do runs browser actions, failing the test with what was being done.
func do(t *testing.T, tab context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(tab, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func eval[T any](t *testing.T, tab context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(tab, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

// signIn signs the browser in as m through the development OpenID
// provider's page, and waits for the keys page.
func signIn(t *testing.T, tab context.Context, s *stack, m member) {
	t.Helper()
	do(t, tab, "opening the console", chromedp.Navigate(s.base+"/console"), chromedp.WaitVisible(chromedp.CSS("#password")))
	do(t, tab, "signing in as "+m.role,
		chromedp.Click(chromedp.CSS(`input[name="member"][value="mem_`+m.role+`"]`)),
		chromedp.SendKeys(chromedp.CSS("#password"), m.password),
		chromedp.Click(chromedp.CSS(`form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS("table.keys")))
}

func signOut(t *testing.T, tab context.Context) {
	t.Helper()
	do(t, tab, "signing out", chromedp.Click(chromedp.CSS(`form[action="/console/logout"] button`)),
		chromedp.WaitVisible(chromedp.CSS(`a[href="/console/login"]`)))
}

// status is the HTTP status of a request the page makes with fetch, with
// the member's cookie, as a script of the console's own origin could.
func status(t *testing.T, tab context.Context, method, path, form string) int {
	t.Helper()
	return eval[int](t, tab, fmt.Sprintf(`fetch(%q, {method: %q, redirect: "manual", headers: {"Content-Type": "application/x-www-form-urlencoded"}, body: %s}).then(r => r.status)`,
		path, method, map[bool]string{true: "null", false: fmt.Sprintf("%q", form)}[form == ""]))
}

func csrf(t *testing.T, tab context.Context) string {
	return eval[string](t, tab, `document.querySelector('input[name="csrf"]').value`)
}

// createKey creates a test key with invoices:read on the console's form
// and returns its secret and public id, from the page that shows it once.
func createKey(t *testing.T, tab context.Context, s *stack, name string) (secret, id string) {
	t.Helper()
	do(t, tab, "opening the create form", chromedp.Navigate(s.base+"/console/keys/new?env=test"), chromedp.WaitVisible(chromedp.CSS("#name")))
	do(t, tab, "creating "+name,
		chromedp.SendKeys(chromedp.CSS("#name"), name),
		chromedp.SendKeys(chromedp.CSS("#description"), "the e2e test's key"),
		chromedp.Click(chromedp.CSS(`input[name="scope_invoices"][value="read"]`)),
		chromedp.Click(chromedp.CSS(`form.keyform button.primary`)),
		chromedp.WaitVisible(chromedp.CSS("#secret")))
	secret, err := chromedp.Run(tab, chromedp.Text(chromedp.CSS("#secret")))
	if err != nil || !tokenPattern.MatchString(secret) {
		t.Fatalf("the secret shown: %q %v", secret, err)
	}
	s.addSecret(secret)
	href := eval[string](t, tab, `document.querySelector('a.button.primary').getAttribute('href')`)
	return secret, strings.TrimPrefix(href, "/console/keys/")
}

// TestConsoleInABrowser signs each role in to the console in headless
// Chromium and uses it as a person would: keys made there work against
// the protected API through the gateway, their secrets are shown once,
// regenerating keeps the old key for the overlap, revoking ends a key on
// the next request, and each role is refused what it may not do, on the
// page and when asked directly. Screenshots go to KEYWARD_SCREENSHOTS.
func TestConsoleInABrowser(t *testing.T) {
	s := startStack(t, stackOptions{})
	members := consoleMembers(t, s)
	tab := newBrowser(t)

	// A developer creates a key and uses it.
	signIn(t, tab, s, members["developer"])
	screenshot(t, tab, "keys")
	secret, id := createKey(t, tab, s, "billing sync")
	// The picture of the page must not carry a working secret.
	eval[string](t, tab, `document.querySelector("#secret").textContent = "keyward_test_…"`)
	screenshot(t, tab, "secret")
	wantStatus(t, "the new key on the demo API", s.get("/invoices", secret), http.StatusOK)

	// Shown once: not on the key's page, in the page history or in the
	// browser's storage.
	do(t, tab, "opening the key", chromedp.Navigate(s.base+"/console/keys/"+id), chromedp.WaitVisible(chromedp.CSS("h1")))
	screenshot(t, tab, "key")
	html, _ := chromedp.Run(tab, chromedp.OuterHTML(chromedp.CSS("html")))
	storage := eval[string](t, tab, `JSON.stringify(localStorage) + JSON.stringify(sessionStorage) + document.cookie`)
	if strings.Contains(html, secret) || strings.Contains(storage, secret) || strings.Contains(html, secret[len(secret)-12:]) {
		t.Fatal("the secret is shown again or kept in the browser")
	}
	// The answer was no-store: Chromium cannot show it again without
	// posting the form anew (net::ERR_CACHE_MISS), which makes no key.
	if err := chromedp.Do(tab, chromedp.NavigateBack(), chromedp.WaitReady(chromedp.CSS("body"))); err != nil && !strings.Contains(err.Error(), "ERR_CACHE_MISS") {
		t.Fatalf("going back to the create answer: %v", err)
	}
	if html, _ := chromedp.Run(tab, chromedp.OuterHTML(chromedp.CSS("html"))); strings.Contains(html, secret) {
		t.Fatal("going back shows the secret again")
	}

	// Regenerate, keeping the old key for 12 hours: both work.
	do(t, tab, "regenerating", chromedp.Navigate(s.base+"/console/keys/"+id+"/rotate"), chromedp.WaitVisible(chromedp.CSS(`input[name="hours"]`)))
	screenshot(t, tab, "regenerate")
	do(t, tab, "confirming the regeneration", chromedp.Click(chromedp.CSS(`form.keyform button.primary`)), chromedp.WaitVisible(chromedp.CSS("#secret")))
	newSecret, err := chromedp.Run(tab, chromedp.Text(chromedp.CSS("#secret")))
	if err != nil || !tokenPattern.MatchString(newSecret) || newSecret == secret {
		t.Fatalf("the regenerated secret: %q %v", newSecret, err)
	}
	s.addSecret(newSecret)
	newID := strings.TrimPrefix(eval[string](t, tab, `document.querySelector('a.button.primary').getAttribute('href')`), "/console/keys/")
	wantStatus(t, "the old key in its overlap", s.get("/invoices", secret), http.StatusOK)
	wantStatus(t, "the regenerated key", s.get("/invoices", newSecret), http.StatusOK)

	// Revoke: the very next request is refused.
	do(t, tab, "revoking", chromedp.Navigate(s.base+"/console/keys/"+newID+"/revoke"), chromedp.WaitVisible(chromedp.CSS("button.danger")))
	screenshot(t, tab, "revoke")
	do(t, tab, "confirming the revocation", chromedp.Click(chromedp.CSS("button.danger")), chromedp.WaitVisible(chromedp.CSS(".status-revoked")))
	want401(t, "the revoked key", s.get("/invoices", newSecret))

	// A developer may not revoke another member's key (the demo key), on
	// the page or by posting the form anyway.
	demoID := s.banner.demoID
	resp, err := chromedp.Run(tab, chromedp.NavigateResponse(s.base+"/console/keys/"+demoID+"/revoke"))
	if err != nil {
		t.Fatal(err)
	}
	token := csrf(t, tab)
	if code := status(t, tab, "POST", "/console/keys/"+demoID+"/revoke", "csrf="+token+"&env=live"); code != http.StatusForbidden {
		t.Fatalf("a developer revoking another member's key: %d (the page answered %d)", code, resp.Status)
	}
	wantStatus(t, "the demo key after the refused revocation", s.get("/invoices", s.banner.exports["KEYWARD_DEMO_KEY"]), http.StatusOK)

	// A forged cross-site form post carries the member's cookie but not
	// the session's CSRF token: refused, and no key is made.
	forged := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><form id="f" method="post" action="%s/console/keys"><input name="name" value="forged"><input name="scope_invoices" value="read"><input name="environment" value="test"></form><script>document.getElementById("f").submit()</script>`, s.base)
	}))
	defer forged.Close()
	// Another port of 127.0.0.1 is another origin but the same site, so
	// the browser sends the SameSite=Lax cookie along: only the CSRF check
	// stands in the way.
	before := countKeys(t, s)
	do(t, tab, "visiting the forging page", chromedp.Navigate(forged.URL))
	refused := func() bool {
		for _, l := range s.logLines() {
			if l["msg"] == "console request" && l["method"] == "POST" && l["path"] == "/console/keys" && l["status"] == float64(http.StatusForbidden) {
				return true
			}
		}
		return false
	}
	for deadline := time.Now().Add(requestDeadline); !refused(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the forged post did not reach the console, or was not refused with 403")
		}
	}
	if after := countKeys(t, s); after != before {
		t.Fatalf("a forged cross-site post made a key: %d keys, then %d", before, after)
	}
	signOut(t, tab)

	// A viewer sees keys and is refused creating one.
	signIn(t, tab, s, members["viewer"])
	resp, err = chromedp.Run(tab, chromedp.NavigateResponse(s.base+"/console/keys/new?env=test"))
	if err != nil || resp.Status != http.StatusForbidden {
		t.Fatalf("a viewer opening the create form: %v %v", resp, err)
	}
	do(t, tab, "back to the keys", chromedp.Navigate(s.base+"/console/keys?env=test"), chromedp.WaitVisible(chromedp.CSS("table.keys")))
	if code := status(t, tab, "POST", "/console/keys", "csrf="+csrf(t, tab)+"&name=x&environment=test&scope_invoices=read"); code != http.StatusForbidden {
		t.Fatalf("a viewer posting the create form: %d", code)
	}

	// Sign-out ends the session: its cookie no longer opens the console.
	cookie := eval[string](t, tab, `fetch("/console/keys", {redirect: "manual"}).then(r => String(r.type))`)
	if cookie != "basic" {
		t.Fatalf("the signed-in keys page answered as %q", cookie)
	}
	signOut(t, tab)
	if kind := eval[string](t, tab, `fetch("/console/keys", {redirect: "manual"}).then(r => String(r.type))`); kind != "opaqueredirect" {
		t.Fatalf("after sign-out the keys page answered as %q, want a redirect to sign in", kind)
	}

	// An admin sees the members and the audit log.
	signIn(t, tab, s, members["admin"])
	do(t, tab, "the members page", chromedp.Navigate(s.base+"/console/members?env=test"), chromedp.WaitVisible(chromedp.CSS("h1")))
	screenshot(t, tab, "members")
	do(t, tab, "the audit log", chromedp.Navigate(s.base+"/console/audit?env=test"), chromedp.WaitVisible(chromedp.CSS("h1")))
	screenshot(t, tab, "audit")
	if html, _ := chromedp.Run(tab, chromedp.OuterHTML(chromedp.CSS("html"))); !strings.Contains(html, "key.revoked") || !strings.Contains(html, "mem_developer") {
		t.Fatal("the audit log does not show the developer's revocation")
	}
}

func wantStatus(t *testing.T, what string, r response, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: %s, want %d", what, r, status)
	}
}

// countKeys counts the demo tenant's test keys through the admin API.
func countKeys(t *testing.T, s *stack) int {
	t.Helper()
	r := s.get("/v1/keys?environment=test&limit=100", s.banner.exports["KEYWARD_TEST_ADMIN_KEY"])
	if r.status != http.StatusOK {
		t.Fatalf("listing keys: %s", r)
	}
	return strings.Count(string(r.body), `"object":"api_key"`)
}
