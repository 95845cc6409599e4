package oidc

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	zoidc "github.com/zitadel/oidc/v3/pkg/oidc"
	"golang.org/x/oauth2"
)

func TestCodeFlowWithPKCE(t *testing.T) {
	e := newEnv(t)
	var disc struct {
		Methods []string `json:"code_challenge_methods_supported"`
		Algs    []string `json:"id_token_signing_alg_values_supported"`
		Claims  []string `json:"claims_supported"`
		Logout  string   `json:"end_session_endpoint"`
	}
	if err := e.rp.Claims(&disc); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(disc.Methods, "S256") || !slices.Equal(disc.Algs, []string{"RS256"}) ||
		!slices.Contains(disc.Claims, "custom:tenant_id") || disc.Logout != e.issuer+"/end_session" {
		t.Errorf("discovery: %+v", disc)
	}

	f := e.flow(&e.console)
	login := e.get(f.url)
	form := e.loginForm(login)
	for _, want := range []string{alice.Name, alice.Email, bob.Email, "tnt_demo", "viewer", `type="password"`} {
		if !strings.Contains(login.body, want) {
			t.Errorf("login page lacks %q", want)
		}
	}
	if strings.Contains(login.body, "<script") || strings.Contains(login.body, alice.Password) {
		t.Error("login page has a script or a password")
	}
	csp := login.header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "http://127.0.0.1:5173") {
		t.Errorf("CSP %q", csp)
	}
	// With no-referrer, a browser's form post says Origin: null and is refused.
	if rp := login.header.Get("Referrer-Policy"); rp != "same-origin" {
		t.Errorf("Referrer-Policy %q", rp)
	}
	if css := e.get(e.issuer + "/login.css"); css.status != http.StatusOK || css.header.Get("Content-Type") != "text/css; charset=utf-8" {
		t.Errorf("stylesheet: %d %s", css.status, css.header.Get("Content-Type"))
	}

	form.Set("member", alice.ID)
	form.Set("password", alice.Password)
	signedInAt := e.clock.Now()
	code := e.code(f, e.post(form, nil))
	tok, err := e.exchange(f, code, f.verifier)
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	c := e.idToken(f, tok)
	want := claims{Subject: alice.ID, Email: alice.Email, Name: alice.Name, Tenant: "tnt_demo", Role: "admin", AuthTime: signedInAt.Unix(), AMR: []string{"pwd"}}
	if !slices.Equal(c.AMR, want.AMR) || c.Subject != want.Subject || c.Email != want.Email || c.Name != want.Name ||
		c.Tenant != want.Tenant || c.Role != want.Role || c.AuthTime != want.AuthTime {
		t.Errorf("claims %+v, want %+v", c, want)
	}

	info, err := e.rp.UserInfo(e.ctx, oauth2.StaticTokenSource(tok))
	if err != nil {
		t.Fatalf("userinfo: %v", err)
	}
	var ic claims
	if err := info.Claims(&ic); err != nil {
		t.Fatal(err)
	}
	if info.Subject != alice.ID || info.Email != alice.Email || ic.Tenant != "tnt_demo" || ic.Role != "admin" {
		t.Errorf("userinfo %+v %+v", info, ic)
	}
}

func TestCustomClaimNames(t *testing.T) {
	p, err := New(Config{Issuer: "http://127.0.0.1:8080/oidc", Members: []Member{alice}, TenantClaim: "tenant", RoleClaim: "role",
		Clients: []Client{{ID: "c", Secret: "s", RedirectURIs: []string{redirectURI}}}})
	if err != nil {
		t.Fatal(err)
	}
	ui := new(zoidc.UserInfo)
	if err := p.store.setUserinfo(ui, alice.ID); err != nil {
		t.Fatal(err)
	}
	if ui.Claims["tenant"] != "tnt_demo" || ui.Claims["role"] != "admin" || ui.Claims[DefaultTenantClaim] != nil {
		t.Errorf("claims %v", ui.Claims)
	}
}

func TestPublicClient(t *testing.T) {
	e := newEnv(t)
	c, _ := e.signedIn(&e.spa, bob)
	if c.Subject != bob.ID || c.Role != "viewer" {
		t.Errorf("claims %+v", c)
	}
	f := e.flow(&e.spa)
	code := e.code(f, e.get(f.url)) // the session answers
	if _, err := f.conf.Exchange(e.ctx, code); oauthError(t, err) != "invalid_request" {
		t.Errorf("exchange without a verifier: %v", err)
	}
}

func TestWrongPasswordRefused(t *testing.T) {
	e := newEnv(t)
	f := e.flow(&e.console)
	login := e.get(f.url)
	for _, tc := range []struct{ member, password string }{
		{alice.ID, "wrong"}, {alice.ID, ""}, {alice.ID, bob.Password}, {"mem_nobody", "alice-pw"},
	} {
		pg := e.signIn(login, tc.member, tc.password)
		if pg.status != http.StatusUnauthorized || pg.location != nil || !strings.Contains(pg.body, "Wrong member or password") {
			t.Errorf("%s/%q: %d %v", tc.member, tc.password, pg.status, pg.location)
		}
		login = pg
	}
	if e.code(f, e.signIn(login, alice.ID, alice.Password)) == "" {
		t.Error("no code after the right password")
	}
}

func TestLoginFormCSRF(t *testing.T) {
	e := newEnv(t)
	f := e.flow(&e.console)
	form := e.loginForm(e.get(f.url))
	form.Set("member", alice.ID)
	form.Set("password", alice.Password)

	noToken := url.Values{"authRequestID": form["authRequestID"], "member": {alice.ID}, "password": {alice.Password}}
	otherRequest := url.Values{"authRequestID": {"0123"}, "csrf": form["csrf"], "member": {alice.ID}, "password": {alice.Password}}
	for name, tc := range map[string]struct {
		form    url.Values
		headers map[string]string
	}{
		"no token":           {form: noToken},
		"other request":      {form: otherRequest},
		"cross-site origin":  {form: form, headers: map[string]string{"Origin": "http://evil.test", "Sec-Fetch-Site": ""}},
		"cross-site fetch":   {form: form, headers: map[string]string{"Sec-Fetch-Site": "cross-site"}},
		"other origin, port": {form: form, headers: map[string]string{"Origin": "http://127.0.0.1:1", "Sec-Fetch-Site": ""}},
	} {
		if pg := e.post(tc.form, tc.headers); pg.status != http.StatusForbidden || pg.location != nil {
			t.Errorf("%s: %d %v", name, pg.status, pg.location)
		}
	}
	// The token from this browser's page, posted by another browser.
	browser := e.browser
	e.newBrowser()
	if pg := e.post(form, nil); pg.status != http.StatusForbidden {
		t.Errorf("another browser: %d %v", pg.status, pg.location)
	}
	e.browser = browser
	if e.code(f, e.post(form, nil)) == "" {
		t.Error("no code for the genuine form")
	}
}

func TestPKCERequired(t *testing.T) {
	e := newEnv(t)
	for name, params := range map[string]url.Values{
		"no challenge": {},
		"plain":        {"code_challenge": {"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"}, "code_challenge_method": {"plain"}},
		"no method":    {"code_challenge": {"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"}},
	} {
		q := url.Values{"client_id": {consoleID}, "redirect_uri": {redirectURI}, "response_type": {"code"},
			"scope": {"openid"}, "state": {"s"}}
		for k, v := range params {
			q[k] = v
		}
		if got := e.redirectError(e.get(e.issuer + "/authorize?" + q.Encode())); got != "invalid_request" {
			t.Errorf("%s: error %q, want invalid_request", name, got)
		}
	}
}

func TestPKCEVerifierMismatchRefused(t *testing.T) {
	e := newEnv(t)
	f := e.flow(&e.console)
	code := e.code(f, e.signIn(e.get(f.url), alice.ID, alice.Password))
	if _, err := e.exchange(f, code, oauth2.GenerateVerifier()); oauthError(t, err) != "invalid_grant" {
		t.Errorf("wrong verifier: %v", err)
	}
	// A failed exchange spends the code.
	if _, err := e.exchange(f, code, f.verifier); oauthError(t, err) != "invalid_grant" {
		t.Errorf("after a failed exchange: %v", err)
	}
	f = e.flow(&e.console)
	code = e.code(f, e.get(f.url))
	if _, err := f.conf.Exchange(e.ctx, code); oauthError(t, err) != "invalid_request" {
		t.Errorf("no verifier: %v", err)
	}
}

func TestCodeUsedTwiceRefused(t *testing.T) {
	e := newEnv(t)
	f := e.flow(&e.console)
	code := e.code(f, e.signIn(e.get(f.url), alice.ID, alice.Password))
	tok, err := e.exchange(f, code, f.verifier)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.rp.UserInfo(e.ctx, oauth2.StaticTokenSource(tok)); err != nil {
		t.Fatalf("userinfo: %v", err)
	}
	if _, err := e.exchange(f, code, f.verifier); oauthError(t, err) != "invalid_grant" {
		t.Errorf("second use: %v", err)
	}
	if _, err := e.rp.UserInfo(e.ctx, oauth2.StaticTokenSource(tok)); err == nil {
		t.Error("the first use's access token still works")
	}
}

func TestCodeExpires(t *testing.T) {
	e := newEnv(t)
	f := e.flow(&e.console)
	code := e.code(f, e.signIn(e.get(f.url), alice.ID, alice.Password))
	e.clock.Advance(codeTTL + time.Second)
	if _, err := e.exchange(f, code, f.verifier); oauthError(t, err) != "invalid_grant" {
		t.Errorf("expired code: %v", err)
	}
}

func TestClientAuthentication(t *testing.T) {
	e := newEnv(t)
	f := e.flow(&e.console)
	code := e.code(f, e.signIn(e.get(f.url), alice.ID, alice.Password))
	wrong := e.console
	wrong.ClientSecret = "nope"
	if _, err := wrong.Exchange(e.ctx, code, oauth2.VerifierOption(f.verifier)); oauthError(t, err) == "" {
		t.Errorf("wrong secret: %v", err)
	}
	// The spa cannot redeem the console's code.
	f = e.flow(&e.console)
	code = e.code(f, e.get(f.url))
	if _, err := e.spa.Exchange(e.ctx, code, oauth2.VerifierOption(f.verifier)); oauthError(t, err) != "invalid_grant" {
		t.Errorf("other client: %v", err)
	}
}

// TestMaxAgeAndPromptLogin: the session answers later requests with the
// first sign-in's auth_time, until max_age or prompt=login asks for a new
// sign-in, which yields a newer auth_time.
func TestMaxAgeAndPromptLogin(t *testing.T) {
	e := newEnv(t)
	first, _ := e.signedIn(&e.console, alice)
	if first.AuthTime != e.clock.Now().Unix() {
		t.Fatalf("auth_time %d, want %d", first.AuthTime, e.clock.Now().Unix())
	}

	silent := func(params ...oauth2.AuthCodeOption) claims {
		t.Helper()
		f := e.flow(&e.console, params...)
		code := e.code(f, e.get(f.url))
		tok, err := e.exchange(f, code, f.verifier)
		if err != nil {
			t.Fatal(err)
		}
		return e.idToken(f, tok)
	}
	maxAge := func(s string) oauth2.AuthCodeOption { return oauth2.SetAuthURLParam("max_age", s) }

	e.clock.Advance(5 * time.Minute)
	if c := silent(); c.AuthTime != first.AuthTime || c.Subject != alice.ID {
		t.Errorf("session: %+v", c)
	}
	if c := silent(maxAge("900")); c.AuthTime != first.AuthTime {
		t.Errorf("max_age=900 after 5 minutes: auth_time %d, want %d", c.AuthTime, first.AuthTime)
	}

	last := first.AuthTime
	for _, tc := range []struct {
		name    string
		advance time.Duration
		param   oauth2.AuthCodeOption
	}{
		{"max_age=900 after 20 minutes", 15 * time.Minute, maxAge("900")},
		{"max_age=0", time.Minute, maxAge("0")},
		{"max_age=0 at once", 0, maxAge("0")},
		{"prompt=login", time.Minute, oauth2.SetAuthURLParam("prompt", "login")},
	} {
		e.clock.Advance(tc.advance)
		f := e.flow(&e.console, tc.param)
		login := e.get(f.url)
		if login.location != nil {
			t.Fatalf("%s: no login page, redirected to %v", tc.name, login.location)
		}
		code := e.code(f, e.signIn(login, bob.ID, bob.Password))
		tok, err := e.exchange(f, code, f.verifier)
		if err != nil {
			t.Fatal(err)
		}
		c := e.idToken(f, tok)
		if c.AuthTime != e.clock.Now().Unix() || (tc.advance > 0 && c.AuthTime <= last) || c.Subject != bob.ID {
			t.Errorf("%s: auth_time %d (was %d, now %d), sub %s", tc.name, c.AuthTime, last, e.clock.Now().Unix(), c.Subject)
		}
		last = c.AuthTime
	}
	// The new sign-in is the session now.
	if c := silent(); c.Subject != bob.ID || c.AuthTime != last {
		t.Errorf("session after re-sign-in: %+v", c)
	}
}

func TestPromptNone(t *testing.T) {
	e := newEnv(t)
	none := oauth2.SetAuthURLParam("prompt", "none")
	if got := e.redirectError(e.get(e.flow(&e.console, none).url)); got != "login_required" {
		t.Errorf("without a session: %q", got)
	}
	e.signedIn(&e.console, alice)
	f := e.flow(&e.console, none)
	if e.code(f, e.get(f.url)) == "" {
		t.Error("no code from the session")
	}
}

func TestUnknownRedirectURIRefused(t *testing.T) {
	e := newEnv(t)
	for name, conf := range map[string]oauth2.Config{
		"unknown redirect_uri": func() oauth2.Config { c := e.console; c.RedirectURL = "http://127.0.0.1:5173/evil"; return c }(),
		"redirect_uri prefix":  func() oauth2.Config { c := e.console; c.RedirectURL = redirectURI + "/x"; return c }(),
		"unknown client":       func() oauth2.Config { c := e.console; c.ClientID = "nobody"; return c }(),
	} {
		pg := e.get(e.flow(&conf).url)
		if pg.status != http.StatusBadRequest || pg.location != nil {
			t.Errorf("%s: %d %v", name, pg.status, pg.location)
		}
	}
	if pg := e.get(e.issuer + "/login?authRequestID=nope"); pg.status != http.StatusBadRequest {
		t.Errorf("unknown auth request: %d", pg.status)
	}
}

func TestEndSession(t *testing.T) {
	e := newEnv(t)
	_, tok := e.signedIn(&e.console, alice)
	rawID, _ := tok.Extra("id_token").(string)

	bad := url.Values{"id_token_hint": {rawID}, "post_logout_redirect_uri": {"http://127.0.0.1:5173/evil"}}
	if pg := e.get(e.issuer + "/end_session?" + bad.Encode()); pg.status != http.StatusBadRequest || pg.location != nil {
		t.Errorf("unregistered post_logout_redirect_uri: %d %v", pg.status, pg.location)
	}
	f := e.flow(&e.console)
	if e.code(f, e.get(f.url)) == "" { // a refused sign-out ends nothing
		t.Fatal("session gone after a refused sign-out")
	}

	q := url.Values{"id_token_hint": {rawID}, "post_logout_redirect_uri": {logoutURI}, "state": {"st"}}
	pg := e.get(e.issuer + "/end_session?" + q.Encode())
	if pg.location == nil || pg.location.String() != logoutURI+"?state=st" {
		t.Fatalf("sign-out: %d %v %.200s", pg.status, pg.location, pg.body)
	}
	if !strings.Contains(strings.Join(pg.header.Values("Set-Cookie"), "\n"), sessionCookie+"=;") {
		t.Errorf("session cookie not cleared: %v", pg.header.Values("Set-Cookie"))
	}
	if _, err := e.rp.UserInfo(e.ctx, oauth2.StaticTokenSource(tok)); err == nil {
		t.Error("access token still valid after sign-out")
	}
	e.loginForm(e.get(e.flow(&e.console).url)) // the login page again

	// Without a client: the provider's own signed-out page.
	e.signedIn(&e.console, alice)
	if pg := e.get(e.issuer + "/end_session"); pg.status != http.StatusOK || !strings.Contains(pg.body, "signed out") {
		t.Errorf("sign-out without a client: %d %v", pg.status, pg.location)
	}
	e.loginForm(e.get(e.flow(&e.console).url))
}

func TestServeHTTPOutsideIssuerPath(t *testing.T) {
	p, err := New(Config{Issuer: "http://127.0.0.1:8080/oidc", Members: []Member{alice},
		Clients: []Client{{ID: "c", Secret: "s", RedirectURIs: []string{redirectURI}}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/", "/oidc", "/oidcx/login", "/other/.well-known/openid-configuration"} {
		req, _ := http.NewRequest(http.MethodGet, "http://x"+path, nil)
		w := httptest.NewRecorder()
		p.ServeHTTP(w, req)
		if w.Code != http.StatusNotFound {
			t.Errorf("%s: %d", path, w.Code)
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	ok := func() Config {
		return Config{Issuer: "http://127.0.0.1:8080/oidc", Members: []Member{alice},
			Clients: []Client{{ID: "c", Secret: "s", RedirectURIs: []string{redirectURI}}}}
	}
	if _, err := New(ok()); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for name, edit := range map[string]func(*Config){
		"relative issuer":       func(c *Config) { c.Issuer = "/oidc" },
		"issuer slash":          func(c *Config) { c.Issuer += "/" },
		"issuer query":          func(c *Config) { c.Issuer += "?x=1" },
		"ftp issuer":            func(c *Config) { c.Issuer = "ftp://127.0.0.1/oidc" },
		"no members":            func(c *Config) { c.Members = nil },
		"member twice":          func(c *Config) { c.Members = append(c.Members, alice) },
		"member colon":          func(c *Config) { c.Members[0].ID = "a:b" },
		"no password":           func(c *Config) { c.Members[0].Password = "" },
		"no email":              func(c *Config) { c.Members[0].Email = "" },
		"no clients":            func(c *Config) { c.Clients = nil },
		"client twice":          func(c *Config) { c.Clients = append(c.Clients, c.Clients[0]) },
		"no redirect":           func(c *Config) { c.Clients[0].RedirectURIs = nil },
		"relative redirect":     func(c *Config) { c.Clients[0].RedirectURIs = []string{"/cb"} },
		"redirect fragment":     func(c *Config) { c.Clients[0].RedirectURIs = []string{redirectURI + "#x"} },
		"bad post-logout":       func(c *Config) { c.Clients[0].PostLogoutRedirectURIs = []string{"x"} },
		"same claim":            func(c *Config) { c.TenantClaim, c.RoleClaim = "x", "x" },
		"role claim is default": func(c *Config) { c.RoleClaim = DefaultTenantClaim },
	} {
		c := ok()
		c.Members = slices.Clone(c.Members)
		edit(&c)
		if _, err := New(c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
