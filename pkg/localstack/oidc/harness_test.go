package oidc

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// The registered clients and the demo members of the tests.
const (
	consoleID     = "keyward-console"
	consoleSecret = "console-secret"
	spaID         = "keyward-spa" // public: no secret
	redirectURI   = "http://127.0.0.1:5173/auth/callback"
	logoutURI     = "http://127.0.0.1:5173/signed-out"
)

var (
	alice = Member{ID: "mem_alice", Email: "alice@demo.test", Name: "Alice Admin", Tenant: "tnt_demo", Role: "admin", Password: "alice-pw"}
	bob   = Member{ID: "mem_bob", Email: "bob@demo.test", Name: "Bob Viewer", Tenant: "tnt_demo", Role: "viewer", Password: "bob-pw"}
)

// clock is a clock the tests move.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is a provider on an httptest server, a browser (a client with a
// cookie jar that follows no redirect by itself) and a relying party
// (go-oidc and oauth2, from the discovery document).
type env struct {
	t       *testing.T
	ctx     context.Context
	issuer  string
	clock   *clock
	browser *http.Client
	rp      *gooidc.Provider
	console oauth2.Config
	spa     oauth2.Config
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	issuer := "http://" + srv.Listener.Addr().String() + "/oidc"
	clk := &clock{t: time.Now().Truncate(time.Second)}
	p, err := New(Config{
		Issuer:  issuer,
		Members: []Member{alice, bob},
		Clients: []Client{
			{ID: consoleID, Secret: consoleSecret, RedirectURIs: []string{redirectURI}, PostLogoutRedirectURIs: []string{logoutURI}},
			{ID: spaID, RedirectURIs: []string{redirectURI}},
		},
		Now:    clk.Now,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/oidc/", p)
	srv.Config.Handler = mux
	srv.Start()
	t.Cleanup(srv.Close)

	ctx := t.Context()
	rp, err := gooidc.NewProvider(ctx, issuer)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	e := &env{t: t, ctx: ctx, issuer: issuer, clock: clk, rp: rp}
	e.newBrowser()
	scopes := []string{gooidc.ScopeOpenID, "email"}
	ep := rp.Endpoint()
	ep.AuthStyle = oauth2.AuthStyleInHeader
	e.console = oauth2.Config{ClientID: consoleID, ClientSecret: consoleSecret, Endpoint: ep, RedirectURL: redirectURI, Scopes: scopes}
	ep.AuthStyle = oauth2.AuthStyleInParams
	e.spa = oauth2.Config{ClientID: spaID, Endpoint: ep, RedirectURL: redirectURI, Scopes: scopes}
	return e
}

// newBrowser replaces the browser by one without cookies.
func (e *env) newBrowser() {
	jar, err := cookiejar.New(nil)
	if err != nil {
		e.t.Fatal(err)
	}
	e.browser = &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// flow is one authorization request of a relying party.
type flow struct {
	conf                   *oauth2.Config
	state, nonce, verifier string
	url                    string
}

func (e *env) flow(conf *oauth2.Config, params ...oauth2.AuthCodeOption) *flow {
	f := &flow{conf: conf, state: oauth2.GenerateVerifier(), nonce: oauth2.GenerateVerifier(), verifier: oauth2.GenerateVerifier()}
	params = append([]oauth2.AuthCodeOption{oauth2.S256ChallengeOption(f.verifier), gooidc.Nonce(f.nonce)}, params...)
	f.url = conf.AuthCodeURL(f.state, params...)
	return f
}

// page is where the browser stopped: a page of the provider, or a
// redirect away from it (Location set).
type page struct {
	status   int
	body     string
	header   http.Header
	location *url.URL
}

// do sends the request and follows redirects while they stay with the
// provider.
func (e *env) do(req *http.Request) page {
	e.t.Helper()
	for range 10 {
		resp, err := e.browser.Do(req)
		if err != nil {
			e.t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		pg := page{status: resp.StatusCode, body: string(b), header: resp.Header}
		if resp.StatusCode < 300 || resp.StatusCode >= 400 {
			return pg
		}
		loc, err := resp.Location()
		if err != nil {
			e.t.Fatalf("redirect without Location: %v", err)
		}
		if !strings.HasPrefix(loc.String(), e.issuer+"/") {
			pg.location = loc
			return pg
		}
		req, _ = http.NewRequestWithContext(e.ctx, http.MethodGet, loc.String(), nil)
	}
	e.t.Fatal("too many redirects")
	return page{}
}

func (e *env) get(u string) page {
	e.t.Helper()
	req, err := http.NewRequestWithContext(e.ctx, http.MethodGet, u, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.do(req)
}

var (
	requestIDField = regexp.MustCompile(`name="authRequestID" value="([^"]+)"`)
	csrfField      = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
)

// loginForm is the hidden fields of a login page.
func (e *env) loginForm(pg page) url.Values {
	e.t.Helper()
	id, csrf := requestIDField.FindStringSubmatch(pg.body), csrfField.FindStringSubmatch(pg.body)
	if (pg.status != http.StatusOK && pg.status != http.StatusUnauthorized) || id == nil || csrf == nil {
		e.t.Fatalf("want the login page, got %d %v: %.300s", pg.status, pg.location, pg.body)
	}
	return url.Values{"authRequestID": {id[1]}, "csrf": {csrf[1]}}
}

// post sends the login form as the browser would from the login page.
func (e *env) post(form url.Values, headers map[string]string) page {
	e.t.Helper()
	req, err := http.NewRequestWithContext(e.ctx, http.MethodPost, e.issuer+"/login", strings.NewReader(form.Encode()))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	u, _ := url.Parse(e.issuer)
	req.Header.Set("Origin", u.Scheme+"://"+u.Host)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	return e.do(req)
}

// signIn posts the login page's form for a member.
func (e *env) signIn(login page, memberID, password string) page {
	e.t.Helper()
	form := e.loginForm(login)
	form.Set("member", memberID)
	form.Set("password", password)
	return e.post(form, nil)
}

// code is the code of a redirect to the client, with the flow's state.
func (e *env) code(f *flow, pg page) string {
	e.t.Helper()
	if pg.location == nil || !strings.HasPrefix(pg.location.String(), redirectURI+"?") {
		e.t.Fatalf("want a redirect to %s, got %d %v: %.300s", redirectURI, pg.status, pg.location, pg.body)
	}
	q := pg.location.Query()
	if q.Get("error") != "" {
		e.t.Fatalf("redirect with error %q: %s", q.Get("error"), q.Get("error_description"))
	}
	if q.Get("state") != f.state {
		e.t.Fatalf("state %q, want %q", q.Get("state"), f.state)
	}
	return q.Get("code")
}

// redirectError is the error of a redirect to the client.
func (e *env) redirectError(pg page) string {
	e.t.Helper()
	if pg.location == nil || !strings.HasPrefix(pg.location.String(), redirectURI+"?") {
		e.t.Fatalf("want a redirect to %s, got %d %v: %.300s", redirectURI, pg.status, pg.location, pg.body)
	}
	return pg.location.Query().Get("error")
}

func (e *env) exchange(f *flow, code, verifier string) (*oauth2.Token, error) {
	return f.conf.Exchange(e.ctx, code, oauth2.VerifierOption(verifier))
}

// claims are the ID token's claims the console reads.
type claims struct {
	Subject  string   `json:"sub"`
	Email    string   `json:"email"`
	Name     string   `json:"name"`
	Tenant   string   `json:"custom:tenant_id"`
	Role     string   `json:"custom:role"`
	AuthTime int64    `json:"auth_time"`
	AMR      []string `json:"amr"`
}

// idToken verifies the token response's ID token against the JWKS and
// returns its claims.
func (e *env) idToken(f *flow, tok *oauth2.Token) claims {
	e.t.Helper()
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		e.t.Fatal("no id_token in the token response")
	}
	v := e.rp.Verifier(&gooidc.Config{ClientID: f.conf.ClientID})
	idt, err := v.Verify(e.ctx, raw)
	if err != nil {
		e.t.Fatalf("verify ID token: %v", err)
	}
	if idt.Nonce != f.nonce {
		e.t.Fatalf("nonce %q, want %q", idt.Nonce, f.nonce)
	}
	var c claims
	if err := idt.Claims(&c); err != nil {
		e.t.Fatal(err)
	}
	return c
}

// signedIn runs a whole flow for a member from the authorize URL through
// the login page, returning the ID token's claims and the tokens.
func (e *env) signedIn(conf *oauth2.Config, m Member, params ...oauth2.AuthCodeOption) (claims, *oauth2.Token) {
	e.t.Helper()
	f := e.flow(conf, params...)
	code := e.code(f, e.signIn(e.get(f.url), m.ID, m.Password))
	tok, err := e.exchange(f, code, f.verifier)
	if err != nil {
		e.t.Fatalf("exchange: %v", err)
	}
	return e.idToken(f, tok), tok
}

// oauthError is the error code of a failed token request.
func oauthError(t *testing.T, err error) string {
	t.Helper()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		t.Fatalf("want an OAuth error response, got %v", err)
	}
	return re.ErrorCode
}
