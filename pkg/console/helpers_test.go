package console_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/coreos/go-oidc/v3/oidc/oidctest"

	"github.com/keyward/keyward/internal/storetest"
	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/clock"
	"github.com/keyward/keyward/pkg/config"
	"github.com/keyward/keyward/pkg/console"
	"github.com/keyward/keyward/pkg/lifecycle"
	"github.com/keyward/keyward/pkg/pepper"
	"github.com/keyward/keyward/pkg/store"
	"github.com/keyward/keyward/pkg/store/embedded"
)

const base = "https://console.example.com"

// fixture is the console on the real lifecycle and the embedded store,
// with a tenant "acme", a stand-in provider (discovery, keys and a token
// endpoint), and fakes of the gateway's usage plans and cache.
type fixture struct {
	t       *testing.T
	srv     *console.Server
	cfg     console.Config
	svc     *lifecycle.Service
	st      *embedded.Store
	ring    *pepper.Ring
	keyring *pepper.LocalKeyring
	clk     *clock.Manual
	idp     *provider
	plans   *fakePlans
	flusher *fakeFlusher
	logs    *syncBuffer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	clk := clock.NewManual(time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC))
	st := storetest.Temp(t, embedded.WithClock(clk.Now))
	kr, ring := storetest.Peppers(t, st, clk.Now())
	format, err := apikey.NewFormat("sk")
	if err != nil {
		t.Fatal(err)
	}
	svc := lifecycle.New(st, ring, format, lifecycle.WithClock(clk.Now))
	for _, tenant := range []string{"acme", "other"} {
		if _, err := svc.Onboard(t.Context(), lifecycle.Actor{ID: "operator"}, lifecycle.OnboardParams{TenantID: tenant, Name: tenant}); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(time.Second)
	gw, err := config.LoadGateway()
	if err != nil {
		t.Fatal(err)
	}
	routes, err := config.Routes("")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, svc: svc, st: st, ring: ring, keyring: kr, clk: clk, idp: newProvider(t, clk),
		plans: &fakePlans{ids: map[string]string{}}, flusher: &fakeFlusher{}, logs: &syncBuffer{}}
	f.cfg = console.Config{BaseURL: base, Issuer: f.idp.URL, ClientID: "console", ClientSecret: "console-secret",
		RedirectURL: base + "/console/callback", Keys: svc, Store: st, Peppers: ring, Gateway: gw,
		Resources: console.Resources(routes), RateLimits: f.plans, Flusher: f.flusher,
		Logger: slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:    clk.Now, Sleep: func(context.Context, time.Duration) error { return nil }}
	f.srv = f.newServer(f.cfg)
	return f
}

func (f *fixture) newServer(cfg console.Config) *console.Server {
	f.t.Helper()
	srv, err := console.New(cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	return srv
}

// client is a browser signed in as one member.
type client struct {
	f      *fixture
	srv    *console.Server
	cookie *http.Cookie
	csrf   string
}

func (f *fixture) as(role lifecycle.Role, member string) *client {
	return f.session(console.TestSession{Tenant: "acme", Member: member, Role: role})
}

func (f *fixture) session(ts console.TestSession) *client {
	c, csrf := f.srv.SessionCookie(f.t, ts)
	return &client{f: f, srv: f.srv, cookie: c, csrf: csrf}
}

// request serves one request; a form is posted from the console's origin
// unless headers say otherwise.
func (c *client) request(method, path string, form url.Values, headers map[string]string) *httptest.ResponseRecorder {
	var req *http.Request
	if form != nil {
		req = httptest.NewRequest(method, base+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", base)
	} else {
		req = httptest.NewRequest(method, base+path, nil)
	}
	for k, v := range headers {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	if c.cookie != nil {
		req.AddCookie(c.cookie)
	}
	rec := httptest.NewRecorder()
	srv := c.srv
	if srv == nil {
		srv = c.f.srv
	}
	srv.ServeHTTP(rec, req)
	return rec
}

func (c *client) get(path string) *httptest.ResponseRecorder {
	return c.request(http.MethodGet, path, nil, nil)
}

// post sends a form with the session's CSRF token.
func (c *client) post(path string, form url.Values) *httptest.ResponseRecorder {
	if form == nil {
		form = url.Values{}
	}
	if form.Get("csrf") == "" {
		form.Set("csrf", c.csrf)
	}
	return c.request(http.MethodPost, path, form, nil)
}

// createForm is a valid create form of a test key reading invoices.
func createForm(name string) url.Values {
	return url.Values{"name": {name}, "environment": {"test"}, "env": {"test"}, "scope_invoices": {"read"},
		"tier": {"default"}, "form_id": {randomID()}}
}

func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// create makes a key through the console and returns it and its secret.
func (c *client) create(t *testing.T, form url.Values) (store.Key, string) {
	t.Helper()
	rec := c.post("/console/keys", form)
	if rec.Code != http.StatusOK {
		t.Fatalf("create: %d %s", rec.Code, rec.Body)
	}
	secrets := apikey.FindAll(rec.Body.String())
	if len(secrets) != 1 {
		t.Fatalf("create: the answer shows %d secrets", len(secrets))
	}
	tok, err := must(apikey.NewFormat("sk")).Parse(secrets[0])
	if err != nil {
		t.Fatal(err)
	}
	k, err := c.f.svc.Get(t.Context(), "acme", tok.ID())
	if err != nil {
		t.Fatal(err)
	}
	return k, secrets[0]
}

func (f *fixture) key(id string) store.Key {
	f.t.Helper()
	k, err := f.svc.Get(f.t.Context(), "acme", id)
	if err != nil {
		f.t.Fatal(err)
	}
	return k
}

func (f *fixture) count() int {
	f.t.Helper()
	page, err := f.svc.List(f.t.Context(), "acme", store.KeyQuery{Limit: 100})
	if err != nil {
		f.t.Fatal(err)
	}
	return len(page.Keys)
}

func wantStatus(t *testing.T, rec *httptest.ResponseRecorder, want int) {
	t.Helper()
	if rec.Code != want {
		t.Fatalf("status %d, want %d: %s", rec.Code, want, rec.Body)
	}
}

// wantSignIn: the answer sends the browser to sign in.
func wantSignIn(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Code != http.StatusSeeOther || !strings.HasPrefix(rec.Header().Get("Location"), "/console/login?") {
		t.Fatalf("status %d Location %q, want a redirect to sign in", rec.Code, rec.Header().Get("Location"))
	}
}

type fakePlans struct {
	mu  sync.Mutex
	ids map[string]string // identity: tier
}

func (p *fakePlans) Provision(_ context.Context, identity, tier string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ids[identity] = tier
	return nil
}

func (p *fakePlans) Remove(_ context.Context, identity string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.ids, identity)
	return nil
}

func (p *fakePlans) tier(identity string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ids[identity]
}

type fakeFlusher struct {
	mu sync.Mutex
	n  int
}

func (f *fakeFlusher) Flush(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	return nil
}

func (f *fakeFlusher) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// provider stands in for the OpenID Connect provider: go-oidc's test
// server for discovery and keys, and a token endpoint that answers with
// the ID token the test sets, recording the PKCE verifier it was sent.
type provider struct {
	*httptest.Server
	key      *rsa.PrivateKey
	mu       sync.Mutex
	idToken  string
	verifier string
	calls    int
}

func newProvider(t *testing.T, clk *clock.Manual) *provider {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p := &provider{key: key}
	keys := &oidctest.Server{PublicKeys: []oidctest.PublicKey{{PublicKey: key.Public(), KeyID: "k1", Algorithm: oidc.RS256}}}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/token" {
			keys.ServeHTTP(w, r)
			return
		}
		_ = r.ParseForm()
		p.mu.Lock()
		p.calls++
		p.verifier = r.PostForm.Get("code_verifier")
		tok := p.idToken
		p.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "at", "token_type": "Bearer", "expires_in": 3600, "id_token": tok})
	}))
	t.Cleanup(p.Close)
	keys.SetIssuer(p.URL)
	return p
}

// sign sets the ID token the token endpoint answers with.
func (p *provider) sign(claims map[string]any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.idToken = oidctest.SignIDToken(p.key, "k1", oidc.RS256, string(must(json.Marshal(claims))))
}

func (p *provider) lastVerifier() (string, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.verifier, p.calls
}
