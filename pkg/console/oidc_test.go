package console_test

import (
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/console"
	"github.com/keyward/keyward/pkg/lifecycle"
)

// TestLogin: the browser goes to the provider with the authorization code
// flow, PKCE (S256), state and nonce; reauth asks for a new sign-in.
func TestLogin(t *testing.T) {
	f := newFixture(t)
	anon := &client{f: f}
	for _, reauth := range []bool{false, true} {
		path := "/console/login?return=" + url.QueryEscape("/console/keys?env=live")
		if reauth {
			path += "&reauth=1"
		}
		rec := anon.get(path)
		wantStatus(t, rec, http.StatusFound)
		loc, err := url.Parse(rec.Header().Get("Location"))
		if err != nil || loc.Scheme+"://"+loc.Host != f.idp.URL || loc.Path != "/auth" {
			t.Fatalf("Location %q", rec.Header().Get("Location"))
		}
		q := loc.Query()
		if q.Get("response_type") != "code" || q.Get("client_id") != "console" || q.Get("redirect_uri") != base+"/console/callback" ||
			q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43 || len(q.Get("state")) < 32 ||
			len(q.Get("nonce")) < 32 || !strings.Contains(q.Get("scope"), "openid") {
			t.Fatalf("authorization request %v", q)
		}
		if got := q.Get("max_age") == "0" && q.Get("prompt") == "login"; got != reauth {
			t.Fatalf("reauth %v: max_age %q prompt %q", reauth, q.Get("max_age"), q.Get("prompt"))
		}
		if cookieNamed(rec, "keyward_console_flow") == nil {
			t.Fatal("no flow cookie")
		}
	}
}

// claims are an ID token's for the flow, as the provider issues them.
func (f *fixture) claims(nonce string) map[string]any {
	now := f.clk.Now()
	return map[string]any{"iss": f.idp.URL, "aud": "console", "sub": "user-1", "nonce": nonce,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "auth_time": now.Add(-time.Minute).Unix(),
		"custom:tenant_id": "acme", "custom:role": "developer"}
}

// callback serves the provider's answer to the browser holding flow.
func (f *fixture) callback(flow *http.Cookie, query string) (*client, *http.Response) {
	c := &client{f: f, cookie: flow}
	rec := c.get("/console/callback?" + query)
	return c, rec.Result()
}

// TestCallbackRefusals: a callback with no flow, another state, no PKCE
// verifier, a provider's error, a token for another sign-in, or an ID
// token naming no tenant or role signs no one in. (The success path runs
// end to end against a real provider elsewhere; here it only shows what
// the refusals are measured against.)
func TestCallbackRefusals(t *testing.T) {
	f := newFixture(t)
	good := console.TestFlow{State: "state-1234567890", Nonce: "nonce-1234567890", Verifier: "verifier-0123456789012345678901234567890123", Return: "/console/keys?env=test"}
	flowOf := func(edit func(*console.TestFlow)) *http.Cookie {
		fl := good
		if edit != nil {
			edit(&fl)
		}
		return f.srv.FlowCookie(t, fl)
	}
	ok := "state=" + good.State + "&code=abc"
	cases := []struct {
		name   string
		flow   *http.Cookie
		query  string
		claims func(map[string]any)
		status int
		want   string
	}{
		{"no flow", nil, ok, nil, http.StatusBadRequest, "not started here"},
		{"bad state", flowOf(nil), "state=forged&code=abc", nil, http.StatusBadRequest, "state does not match"},
		{"no state", flowOf(nil), "code=abc", nil, http.StatusBadRequest, "state does not match"},
		{"no PKCE verifier", flowOf(func(fl *console.TestFlow) { fl.Verifier = "" }), ok, nil, http.StatusBadRequest, "PKCE"},
		{"expired flow", flowOf(func(fl *console.TestFlow) { fl.Started = f.clk.Now().Add(-11 * time.Minute) }), ok, nil, http.StatusBadRequest, "too long"},
		{"provider error", flowOf(nil), "state=" + good.State + "&error=access_denied", nil, http.StatusForbidden, "provider refused"},
		// Another site's text on the console's origin: not shown, and the
		// state is judged first.
		{"forged provider error", flowOf(nil), "state=x&error=access_denied&error_description=Your+account+is+locked", nil, http.StatusBadRequest, "state does not match"},
		{"no auth_time on a fresh sign-in", flowOf(func(fl *console.TestFlow) { fl.Reauth = true }), ok,
			func(c map[string]any) { delete(c, "auth_time") }, http.StatusForbidden, "did not ask you to sign in again"},
		{"no code", flowOf(nil), "state=" + good.State, nil, http.StatusBadRequest, "no authorization code"},
		{"no tenant", flowOf(nil), ok, func(c map[string]any) { delete(c, "custom:tenant_id") }, http.StatusForbidden, "custom:tenant_id"},
		{"unknown tenant", flowOf(nil), ok, func(c map[string]any) { c["custom:tenant_id"] = "nobody" }, http.StatusForbidden, "not active"},
		{"no role", flowOf(nil), ok, func(c map[string]any) { delete(c, "custom:role") }, http.StatusForbidden, "custom:role"},
		{"unknown role", flowOf(nil), ok, func(c map[string]any) { c["custom:role"] = "owner" }, http.StatusForbidden, "custom:role"},
		{"bad member", flowOf(nil), ok, func(c map[string]any) { c["sub"] = "a b" }, http.StatusForbidden, "sub"},
		{"another nonce", flowOf(nil), ok, func(c map[string]any) { c["nonce"] = "other" }, http.StatusBadRequest, "not issued for this sign-in"},
		{"another audience", flowOf(nil), ok, func(c map[string]any) { c["aud"] = "someone-else" }, http.StatusForbidden, "not valid"},
		{"expired token", flowOf(nil), ok, func(c map[string]any) { c["exp"] = f.clk.Now().Add(-time.Minute).Unix() }, http.StatusForbidden, "not valid"},
		{"no fresh sign-in", flowOf(func(fl *console.TestFlow) { fl.Reauth = true }), ok,
			func(c map[string]any) { c["auth_time"] = f.clk.Now().Add(-time.Hour).Unix() }, http.StatusForbidden, "did not ask you to sign in again"},
	}
	for _, c := range cases {
		claims := f.claims(good.Nonce)
		if c.claims != nil {
			c.claims(claims)
		}
		f.idp.sign(claims)
		_, calls := f.idp.lastVerifier()
		_, res := f.callback(c.flow, c.query)
		body := readAll(res)
		if res.StatusCode != c.status || !strings.Contains(body, c.want) {
			t.Errorf("%s: %d, want %d with %q: %s", c.name, res.StatusCode, c.status, c.want, body)
		}
		for _, ck := range res.Cookies() {
			if ck.Name == console.SessionCookieName && ck.MaxAge >= 0 {
				t.Errorf("%s: a session cookie was set", c.name)
			}
		}
		if _, after := f.idp.lastVerifier(); c.claims == nil && after != calls {
			t.Errorf("%s: the code was exchanged", c.name)
		}
	}

	// What the refusals are measured against: the same callback with a
	// good token signs the member in, having sent the flow's verifier.
	f.idp.sign(f.claims(good.Nonce))
	_, res := f.callback(flowOf(nil), ok)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != good.Return {
		t.Fatalf("good callback: %d %q %s", res.StatusCode, res.Header.Get("Location"), readAll(res))
	}
	if v, _ := f.idp.lastVerifier(); v != good.Verifier {
		t.Fatalf("the token endpoint got verifier %q", v)
	}
	var sess *http.Cookie
	for _, ck := range res.Cookies() {
		if ck.Name == console.SessionCookieName {
			sess = ck
		}
	}
	if sess == nil {
		t.Fatal("no session")
	}
	me := &client{f: f, cookie: sess}
	page := me.get("/console/keys")
	wantStatus(t, page, http.StatusOK)
	if !strings.Contains(page.Body.String(), "user-1") || !strings.Contains(page.Body.String(), string(lifecycle.RoleDeveloper)) {
		t.Fatal("the page does not show who is signed in")
	}
}

// TestPKCEChallenge: the challenge sent at login is the S256 of the
// verifier the flow keeps (checked through the token endpoint).
func TestPKCEChallenge(t *testing.T) {
	f := newFixture(t)
	anon := &client{f: f}
	rec := anon.get("/console/login")
	loc, _ := url.Parse(rec.Header().Get("Location"))
	q := loc.Query()
	claims := f.claims(q.Get("nonce"))
	f.idp.sign(claims)
	_, res := f.callback(cookieNamed(rec, "keyward_console_flow"), "state="+q.Get("state")+"&code=c")
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("callback: %d %s", res.StatusCode, readAll(res))
	}
	v, _ := f.idp.lastVerifier()
	sum := sha256.Sum256([]byte(v))
	if base64.RawURLEncoding.EncodeToString(sum[:]) != q.Get("code_challenge") {
		t.Fatal("the verifier does not match the challenge")
	}
}

func readAll(res *http.Response) string {
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

// TestSafeReturn: a sign-in returns only to the console's own pages.
func TestSafeReturn(t *testing.T) {
	for in, want := range map[string]string{
		"/console/keys?env=live":   "/console/keys?env=live",
		"/console/keys/key_abc":    "/console/keys/key_abc",
		"":                         "/console/keys",
		"//evil.example/console/":  "/console/keys",
		"https://evil.example/x":   "/console/keys",
		"/console/../admin":        "/console/keys",
		"/consolex":                "/console/keys",
		"/\\evil.example":          "/console/keys",
		"/console/login?return=/x": "/console/keys",
		"javascript:alert(1)":      "/console/keys",
	} {
		if got := console.SafeReturn(in); got != want {
			t.Errorf("SafeReturn(%q) = %q, want %q", in, got, want)
		}
	}
}
