package console_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/console"
	"github.com/keyward/keyward/pkg/lifecycle"
	"github.com/keyward/keyward/pkg/pepper"
	"github.com/keyward/keyward/pkg/store"
)

// TestSecretShownOnce: the create's answer shows the secret, uncached; no
// redirect, other page or log does, and sending the form again makes no
// second key and shows no secret.
func TestSecretShownOnce(t *testing.T) {
	f := newFixture(t)
	alice := f.as(lifecycle.RoleDeveloper, "alice")
	form := createForm("once")
	rec := alice.post("/console/keys", form)
	wantStatus(t, rec, http.StatusOK)
	secrets := apikey.FindAll(rec.Body.String())
	if len(secrets) != 1 {
		t.Fatalf("the answer shows %d secrets", len(secrets))
	}
	secret := secrets[0]
	if rec.Header().Get("Cache-Control") != "no-store" || rec.Header().Get("Location") != "" {
		t.Fatalf("headers %v", rec.Header())
	}
	tok := must(must(apikey.NewFormat("sk")).Parse(secret))
	id := apikey.PublicID(tok.ID())
	for _, c := range rec.Result().Cookies() {
		if strings.Contains(c.Value, secret) {
			t.Fatal("a cookie holds the secret")
		}
	}

	again := alice.post("/console/keys", form) // a reload
	wantStatus(t, again, http.StatusConflict)
	if len(apikey.FindAll(again.Body.String())) != 0 || !strings.Contains(again.Body.String(), id) {
		t.Fatalf("sent again: %s", again.Body)
	}
	if n := f.count(); n != 3 { // the tenant's two admin keys and this one
		t.Fatalf("%d keys", n)
	}

	rotated := alice.post("/console/keys/"+id+"/rotate", url.Values{"mode": {"now"}})
	wantStatus(t, rotated, http.StatusOK)
	newSecrets := apikey.FindAll(rotated.Body.String())
	if len(newSecrets) != 1 || newSecrets[0] == secret || rotated.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("rotate shows %v", newSecrets)
	}

	for _, p := range []string{"/console/keys", "/console/keys?env=test", "/console/keys/" + id, "/console/audit",
		"/console/keys/" + id + "/revoke", "/console/keys/new"} {
		r := alice.get(p)
		if r.Code >= 400 {
			t.Fatalf("%s: %d", p, r.Code)
		}
		for _, s := range []string{secret, newSecrets[0]} {
			if strings.Contains(r.Body.String(), s) || strings.Contains(r.Header().Get("Location"), s) {
				t.Fatalf("%s shows a secret", p)
			}
		}
	}
	for _, s := range []string{secret, newSecrets[0]} {
		if strings.Contains(f.logs.String(), s) {
			t.Fatal("the log holds a secret")
		}
	}
}

// TestCSRF: a post without the session's token, with another's, or from
// another origin is refused with 403 and changes nothing.
func TestCSRF(t *testing.T) {
	f := newFixture(t)
	alice := f.as(lifecycle.RoleDeveloper, "alice")
	k, _ := alice.create(t, createForm("target"))
	other := f.as(lifecycle.RoleDeveloper, "alice")
	before := f.count()
	revoke := "/console/keys/" + apikey.PublicID(k.ID) + "/revoke"
	cases := []struct {
		name    string
		csrf    string
		headers map[string]string
	}{
		{"missing token", "-", nil},
		{"wrong token", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", nil},
		{"another session's token", other.csrf, nil},
		{"cross-origin Origin", alice.csrf, map[string]string{"Origin": "https://evil.example"}},
		{"Origin null", alice.csrf, map[string]string{"Origin": "null"}},
		{"cross-origin Referer", alice.csrf, map[string]string{"Origin": "", "Referer": "https://evil.example/page"}},
		{"another scheme", alice.csrf, map[string]string{"Origin": "http://console.example.com"}},
	}
	for _, c := range cases {
		for _, path := range []string{"/console/keys", revoke, "/console/logout"} {
			form := createForm("csrf")
			form.Set("csrf", c.csrf)
			if c.csrf == "-" {
				form.Del("csrf")
			}
			rec := alice.request(http.MethodPost, path, form, c.headers)
			if rec.Code != http.StatusForbidden {
				t.Errorf("%s, %s: %d, want 403", c.name, path, rec.Code)
			}
		}
	}
	if f.count() != before || f.key(k.ID).Status != store.KeyActive {
		t.Fatal("a refused post changed something")
	}
	wantStatus(t, alice.get("/console/keys"), http.StatusOK) // logout was refused too
	// Without Origin, a same-origin Referer is accepted.
	rec := alice.request(http.MethodPost, revoke, url.Values{"csrf": {alice.csrf}}, map[string]string{"Origin": "", "Referer": base + "/console/keys"})
	wantStatus(t, rec, http.StatusSeeOther)
}

func cookieNamed(rec *httptest.ResponseRecorder, name string) *http.Cookie {
	for _, c := range rec.Result().Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// TestCookieFlags: HttpOnly, Secure, SameSite=Lax, Path=/console; not
// Secure (and no HSTS) for http://localhost only; http elsewhere refused.
func TestCookieFlags(t *testing.T) {
	f := newFixture(t)
	c := f.session(console.TestSession{Tenant: "acme", Member: "alice", Role: lifecycle.RoleViewer, Seen: f.clk.Now().Add(-5 * time.Minute)})
	rec := c.get("/console/keys")
	wantStatus(t, rec, http.StatusOK)
	sess := cookieNamed(rec, console.SessionCookieName)
	if sess == nil {
		t.Fatal("the session was not moved on")
	}
	login := (&client{f: f}).get("/console/login")
	flow := cookieNamed(login, "keyward_console_flow")
	for _, ck := range []*http.Cookie{sess, flow} {
		if ck == nil || !ck.HttpOnly || !ck.Secure || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/console" || ck.MaxAge <= 0 {
			t.Fatalf("cookie %+v", ck)
		}
	}
	if sess.MaxAge > int((12 * time.Hour).Seconds()) {
		t.Fatalf("the session cookie lives %d s", sess.MaxAge)
	}

	cfg := f.cfg
	cfg.BaseURL, cfg.RedirectURL = "http://localhost:8080", "http://localhost:8080/console/callback"
	local := f.newServer(cfg)
	ck, _ := local.SessionCookie(t, console.TestSession{Tenant: "acme", Member: "alice", Role: lifecycle.RoleViewer, Seen: f.clk.Now().Add(-5 * time.Minute)})
	lc := &client{f: f, srv: local, cookie: ck}
	rec = lc.get("/console/keys")
	if c := cookieNamed(rec, console.SessionCookieName); c == nil || c.Secure || !c.HttpOnly {
		t.Fatalf("local cookie %+v", c)
	}
	if rec.Header().Get("Strict-Transport-Security") != "" {
		t.Fatal("HSTS over http")
	}
	for _, bad := range []string{"http://console.example.com", "https://console.example.com/path"} {
		cfg.BaseURL, cfg.RedirectURL = bad, "http://console.example.com/console/callback"
		if _, err := console.New(cfg); err == nil {
			t.Errorf("BaseURL %s accepted", bad)
		}
	}
}

// TestSessionEnds: a tampered, idle, too old or signed-out session sends
// the browser to sign in, on every instance of the console.
func TestSessionEnds(t *testing.T) {
	f := newFixture(t)
	now := f.clk.Now()
	tampered := f.as(lifecycle.RoleAdmin, "ada")
	v := []byte(tampered.cookie.Value)
	v[len(v)-5] ^= 1
	tampered.cookie = &http.Cookie{Name: console.SessionCookieName, Value: string(v)}
	flowAsSession := &client{f: f, cookie: &http.Cookie{Name: console.SessionCookieName,
		Value: f.srv.FlowCookie(t, console.TestFlow{State: "s", Verifier: "v"}).Value}}
	clients := map[string]*client{
		"tampered":        tampered,
		"idle":            f.session(console.TestSession{Tenant: "acme", Member: "ada", Role: lifecycle.RoleAdmin, Seen: now.Add(-31 * time.Minute)}),
		"too old":         f.session(console.TestSession{Tenant: "acme", Member: "ada", Role: lifecycle.RoleAdmin, Issued: now.Add(-12*time.Hour - time.Second)}),
		"no role":         f.session(console.TestSession{Tenant: "acme", Member: "ada", Role: "owner"}),
		"flow as session": flowAsSession,
		"none":            {f: f},
	}
	for name, c := range clients {
		rec := c.get("/console/keys?env=live")
		wantSignIn(t, rec)
		if got := rec.Header().Get("Location"); got != "/console/login?return="+url.QueryEscape("/console/keys?env=live") {
			t.Errorf("%s: Location %q", name, got)
		}
		if name != "none" {
			if ck := cookieNamed(rec, console.SessionCookieName); ck == nil || ck.MaxAge >= 0 {
				t.Errorf("%s: the cookie is not cleared", name)
			}
		}
		if f.count() != 2 {
			t.Fatal("a keys page changed something")
		}
		wantSignIn(t, c.post("/console/keys", createForm("x")))
	}

	ada := f.as(lifecycle.RoleAdmin, "ada")
	wantStatus(t, ada.get("/console/keys"), http.StatusOK)
	rec := ada.post("/console/logout", nil)
	wantStatus(t, rec, http.StatusOK)
	if ck := cookieNamed(rec, console.SessionCookieName); ck == nil || ck.MaxAge >= 0 {
		t.Fatal("sign-out does not clear the cookie")
	}
	wantSignIn(t, ada.get("/console/keys"))
	other := &client{f: f, srv: f.newServer(f.cfg), cookie: ada.cookie} // another function instance
	wantSignIn(t, other.get("/console/keys"))
	wantSignIn(t, ada.post("/console/keys", createForm("after sign-out")))
	if f.count() != 2 {
		t.Fatal("a signed-out session made a key")
	}
}

// TestPepperRotationKeepsSessions: a cookie sealed under an older pepper
// opens, and is resealed under the current one.
func TestPepperRotationKeepsSessions(t *testing.T) {
	f := newFixture(t)
	c := f.as(lifecycle.RoleViewer, "vera")
	if _, err := pepper.Create(t.Context(), f.st, f.keyring, f.clk.Now()); err != nil {
		t.Fatal(err)
	}
	if err := f.ring.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	rec := c.get("/console/keys")
	wantStatus(t, rec, http.StatusOK)
	if ck := cookieNamed(rec, console.SessionCookieName); ck == nil || !strings.HasPrefix(ck.Value, "2.") {
		t.Fatalf("not resealed under version 2: %+v", ck)
	}
}

// TestLiveNeedsFreshSignIn: creating or regenerating a live key more than
// 15 minutes after signing in sends the member to sign in again, then
// back; nothing is made meanwhile.
func TestLiveNeedsFreshSignIn(t *testing.T) {
	f := newFixture(t)
	now := f.clk.Now()
	stale := f.session(console.TestSession{Tenant: "acme", Member: "alice", Role: lifecycle.RoleDeveloper, AuthTime: now.Add(-16 * time.Minute)})
	live := createForm("live")
	live.Set("environment", "live")
	rec := stale.post("/console/keys", live)
	want := "/console/login?reauth=1&return=" + url.QueryEscape("/console/keys/new?env=live")
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != want {
		t.Fatalf("stale live create: %d %q", rec.Code, rec.Header().Get("Location"))
	}
	if f.count() != 2 {
		t.Fatal("a stale live create made a key")
	}
	rec = stale.get("/console/keys/new?env=live")
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != want {
		t.Fatalf("stale live form: %d %q", rec.Code, rec.Header().Get("Location"))
	}
	stale.create(t, createForm("a test key needs no fresh sign-in"))

	fresh := f.session(console.TestSession{Tenant: "acme", Member: "alice", Role: lifecycle.RoleDeveloper, AuthTime: now.Add(-14 * time.Minute)})
	live.Del("csrf") // the stale session's
	k, secret := fresh.create(t, live)
	if k.Environment != "live" || !strings.HasPrefix(secret, "sk_live_") {
		t.Fatalf("fresh live create: %+v", k)
	}
	rotate := "/console/keys/" + apikey.PublicID(k.ID) + "/rotate"
	rec = stale.post(rotate, url.Values{"mode": {"now"}})
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/console/login?reauth=1&return="+url.QueryEscape(rotate) {
		t.Fatalf("stale live rotate: %d %q", rec.Code, rec.Header().Get("Location"))
	}
	if f.key(k.ID).Status != store.KeyActive {
		t.Fatal("a stale live rotate changed the key")
	}
}

// TestSecurityHeaders: every answer carries the policy headers; pages are
// never cached.
func TestSecurityHeaders(t *testing.T) {
	f := newFixture(t)
	ada := f.as(lifecycle.RoleAdmin, "ada")
	k, _ := ada.create(t, createForm("k"))
	id := apikey.PublicID(k.ID)
	csp := "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self' " +
		f.idp.URL + "; base-uri 'none'"
	anon := &client{f: f}
	answers := map[string]*httptest.ResponseRecorder{
		"keys": ada.get("/console/keys"), "key": ada.get("/console/keys/" + id), "new": ada.get("/console/keys/new"),
		"rotate form": ada.get("/console/keys/" + id + "/rotate"), "revoke form": ada.get("/console/keys/" + id + "/revoke"),
		"audit": ada.get("/console/audit"), "members": ada.get("/console/members"), "not found": ada.get("/console/nope"),
		"secret":     ada.post("/console/keys", createForm("k2")),
		"forbidden":  f.as(lifecycle.RoleViewer, "v").get("/console/keys/new"),
		"signed out": anon.get("/console/keys"), "login": anon.get("/console/login"),
		"callback": anon.get("/console/callback?state=x&code=y"), "script": anon.get("/console/static/console.js"),
		"style": anon.get("/console/static/console.css"), "root": ada.get("/console/"),
	}
	for name, rec := range answers {
		h := rec.Header()
		if h.Get("Content-Security-Policy") != csp || h.Get("X-Content-Type-Options") != "nosniff" ||
			h.Get("Referrer-Policy") != "same-origin" || h.Get("Strict-Transport-Security") == "" {
			t.Errorf("%s: headers %v", name, h)
		}
		if name != "script" && name != "style" && h.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: Cache-Control %q", name, h.Get("Cache-Control"))
		}
		if strings.HasPrefix(h.Get("Content-Type"), "text/html") && strings.Contains(rec.Body.String(), "<script>") {
			t.Errorf("%s: inline script", name)
		}
	}
	if ct := answers["script"].Header().Get("Content-Type"); answers["script"].Code != http.StatusOK || !strings.HasPrefix(ct, "text/javascript") {
		t.Fatalf("console.js: %d %q", answers["script"].Code, ct)
	}
}

// TestRemovedMemberIsSignedOut: revoking a member's keys as a whole (a
// person who left) ends their console sessions on every instance, however
// it is done (here, as the admin API does, through the lifecycle); a
// sign-in after it works again.
func TestRemovedMemberIsSignedOut(t *testing.T) {
	f := newFixture(t)
	dev := f.as(lifecycle.RoleDeveloper, "dan")
	dev.create(t, createForm("dan's"))
	other := f.as(lifecycle.RoleDeveloper, "eve")
	f.clk.Advance(time.Minute)
	if _, err := f.svc.RevokeMember(t.Context(), lifecycle.Actor{ID: "operator"}, "acme", "dan"); err != nil {
		t.Fatal(err)
	}
	wantSignIn(t, dev.get("/console/keys"))
	before := f.count()
	wantSignIn(t, dev.post("/console/keys", createForm("after removal")))
	if f.count() != before {
		t.Fatal("a removed member's session made a key")
	}
	wantStatus(t, other.get("/console/keys"), http.StatusOK)
	f.clk.Advance(time.Second)
	wantStatus(t, f.as(lifecycle.RoleDeveloper, "dan").get("/console/keys"), http.StatusOK)
}

// TestUnderAStage: at API Gateway's stage URL the console's pages,
// redirects and cookies carry the stage's path, while the requests it is
// handed do not (API Gateway removes the stage).
func TestUnderAStage(t *testing.T) {
	f := newFixture(t)
	cfg := f.cfg
	cfg.BaseURL, cfg.RedirectURL = base+"/prod", base+"/prod/console/callback"
	staged := f.newServer(cfg)
	cookie, csrf := staged.SessionCookie(t, console.TestSession{Tenant: "acme", Member: "ada", Role: lifecycle.RoleAdmin})
	c := &client{f: f, srv: staged, cookie: cookie, csrf: csrf}

	rec := c.get("/console/keys?env=test")
	wantStatus(t, rec, http.StatusOK)
	page := rec.Body.String()
	if !strings.Contains(page, `href="/prod/console/keys/new`) || strings.Contains(page, `href="/console/`) || strings.Contains(page, `action="/console/`) {
		t.Fatalf("the keys page's links are not under the stage:\n%s", page)
	}
	if got := (&client{f: f, srv: staged}).get("/console/keys").Header().Get("Location"); !strings.HasPrefix(got, "/prod/console/login?") {
		t.Fatalf("sign-in redirect %q", got)
	}
	wantStatus(t, c.post("/console/logout", nil), http.StatusOK)
	signedIn := f.session(console.TestSession{Tenant: "acme", Member: "ada", Role: lifecycle.RoleAdmin})
	if ck := cookieNamed(signedIn.get("/console/keys"), console.SessionCookieName); ck != nil && ck.Path != "/console" {
		t.Fatalf("an origin's console cookie path %q", ck.Path)
	}
	c2, _ := staged.SessionCookie(t, console.TestSession{Tenant: "acme", Member: "ada", Role: lifecycle.RoleAdmin})
	rec = (&client{f: f, srv: staged, cookie: c2}).get("/console/keys")
	for _, ck := range rec.Result().Cookies() {
		if ck.Path != "/prod/console" {
			t.Fatalf("cookie %s has path %q under a stage", ck.Name, ck.Path)
		}
	}
	for _, bad := range []string{base + "/prod?x=1", base + "//prod"} {
		cfg.BaseURL = bad
		if _, err := console.New(cfg); err == nil {
			t.Errorf("BaseURL %q accepted", bad)
		}
	}
}
