package authorizer_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/keyward/keyward/internal/dynamolocal"
	"github.com/keyward/keyward/internal/storetest"
	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/authorizer"
	"github.com/keyward/keyward/pkg/clock"
	"github.com/keyward/keyward/pkg/config"
	"github.com/keyward/keyward/pkg/lifecycle"
	"github.com/keyward/keyward/pkg/pepper"
	"github.com/keyward/keyward/pkg/policy"
	"github.com/keyward/keyward/pkg/route"
	"github.com/keyward/keyward/pkg/store"
	"github.com/keyward/keyward/pkg/usage"
)

func TestMain(m *testing.M) { dynamolocal.Main(m) }

// countingStore counts the authorizer's store calls and can fail them.
type countingStore struct {
	store.Store
	gets, touches, rehashes atomic.Int64
	failGet, failRehash     error
	// edit, if set, changes every key GetKey returns.
	edit func(*store.Key)
}

func (c *countingStore) GetKey(ctx context.Context, id string) (store.Key, error) {
	c.gets.Add(1)
	if c.failGet != nil {
		return store.Key{}, c.failGet
	}
	k, err := c.Store.GetKey(ctx, id)
	if err == nil && c.edit != nil {
		c.edit(&k)
	}
	return k, err
}

func (c *countingStore) TouchKey(ctx context.Context, id string, at time.Time, d time.Duration) (bool, error) {
	c.touches.Add(1)
	return c.Store.TouchKey(ctx, id, at, d)
}

func (c *countingStore) RehashKey(ctx context.Context, id string, hash []byte, to int) error {
	c.rehashes.Add(1)
	if c.failRehash != nil {
		return c.failRehash
	}
	return c.Store.RehashKey(ctx, id, hash, to)
}

type env struct {
	t      testing.TB
	ctx    context.Context
	st     *countingStore
	kr     *pepper.LocalKeyring
	ring   *pepper.Ring
	svc    *lifecycle.Service
	clk    *clock.Manual
	logs   *bytes.Buffer
	gw     config.Gateway
	routes *route.Table
	a      *authorizer.Authorizer
	tokens []string
}

var start = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// forEachStore runs test against both store backends, with tenant "acme".
func forEachStore(t *testing.T, test func(t *testing.T, e *env)) {
	var clk *clock.Manual // a fresh one per backend, read by the store through now
	now := func() time.Time { return clk.Now() }
	storetest.ForEach(t, now, func(t *testing.T, st store.Store) {
		clk = clock.NewManual(start)
		test(t, newEnv(t, st, clk))
	})
}

func newEnv(t testing.TB, st store.Store, clk *clock.Manual) *env {
	t.Helper()
	ctx := t.Context()
	kr, ring := storetest.Peppers(t, st, clk.Now())
	format, _ := apikey.NewFormat("sk")
	rt, _ := config.Routes("")
	routes, err := route.Compile(config.APIRoutes(rt)...)
	if err != nil {
		t.Fatal(err)
	}
	gw, err := config.LoadGateway()
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, ctx: ctx, st: &countingStore{Store: st}, kr: kr, ring: ring, clk: clk,
		logs: &bytes.Buffer{}, gw: gw, routes: routes}
	e.svc = lifecycle.New(st, ring, format, lifecycle.WithClock(clk.Now))
	if _, err := e.svc.Onboard(ctx, lifecycle.Actor{ID: "operator"}, lifecycle.OnboardParams{TenantID: "acme", Name: "Acme"}); err != nil {
		t.Fatal(err)
	}
	e.build()
	t.Cleanup(func() {
		for _, tok := range e.tokens {
			if strings.Contains(e.logs.String(), tok) || strings.Contains(e.logs.String(), tok[20:52]) {
				t.Errorf("a token or its secret reached the log")
			}
		}
	})
	return e
}

// build (re)creates the authorizer with the env's gateway settings.
func (e *env) build() {
	format, _ := apikey.NewFormat("sk")
	a, err := authorizer.New(authorizer.Config{Store: e.st, Peppers: e.ring, Format: format, Routes: e.routes, Gateway: e.gw,
		Decisions: e.logs, Logger: slog.New(slog.NewJSONHandler(e.logs, nil)), Now: e.clk.Now})
	if err != nil {
		e.t.Fatal(err)
	}
	e.a = a
}

func (e *env) key(p lifecycle.CreateParams) lifecycle.Created {
	e.t.Helper()
	if p.Name == "" {
		p.Name = "billing sync"
	}
	if p.Environment == "" {
		p.Environment = apikey.Live
	}
	if p.Scopes == nil {
		p.Scopes = []string{"invoices:read"}
	}
	c, err := e.svc.Create(e.ctx, lifecycle.Actor{ID: "test"}, "acme", p)
	if err != nil {
		e.t.Fatal(err)
	}
	e.tokens = append(e.tokens, c.Token.Plain())
	return c
}

// event loads a fixture from events/ with ${TOKEN}, ${OTHER} and ${BASIC}
// replaced.
func event(t *testing.T, name, token, other string) events.APIGatewayCustomAuthorizerRequestTypeRequest {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "events", name))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.NewReplacer("${TOKEN}", token, "${OTHER}", other,
		"${BASIC}", base64.StdEncoding.EncodeToString([]byte(token+":"))).Replace(string(raw))
	var ev events.APIGatewayCustomAuthorizerRequestTypeRequest
	if err := json.Unmarshal([]byte(s), &ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

func setAuthorization(ev *events.APIGatewayCustomAuthorizerRequestTypeRequest, v string) {
	ev.Headers["Authorization"] = v
	ev.MultiValueHeaders["Authorization"] = []string{v}
}

type outcome struct {
	allowed bool
	code    string // error_code of a 403, "" otherwise
	err     error
	resp    events.APIGatewayCustomAuthorizerResponse
}

func (e *env) authorize(ev events.APIGatewayCustomAuthorizerRequestTypeRequest) outcome {
	resp, err := e.a.Authorize(e.ctx, ev)
	o := outcome{err: err, resp: resp}
	if err == nil {
		o.allowed = policy.Allows(resp.PolicyDocument, ev.MethodArn)
		if !o.allowed {
			o.code, _ = resp.Context["error_code"].(string)
		}
	}
	return o
}

func (e *env) wantAllow(ev events.APIGatewayCustomAuthorizerRequestTypeRequest) events.APIGatewayCustomAuthorizerResponse {
	e.t.Helper()
	o := e.authorize(ev)
	if o.err != nil || !o.allowed {
		e.t.Fatalf("want allow, got err %v allowed %v code %q", o.err, o.allowed, o.code)
	}
	return o.resp
}

func (e *env) wantUnauthorized(ev events.APIGatewayCustomAuthorizerRequestTypeRequest) {
	e.t.Helper()
	if o := e.authorize(ev); o.err == nil || o.err.Error() != "Unauthorized" {
		e.t.Fatalf("want the error Unauthorized, got %v (allowed %v)", o.err, o.allowed)
	}
}

func (e *env) wantDeny(ev events.APIGatewayCustomAuthorizerRequestTypeRequest, code string) {
	e.t.Helper()
	o := e.authorize(ev)
	if o.err != nil || o.allowed || o.code != code {
		e.t.Fatalf("want deny %q, got err %v allowed %v code %q", code, o.err, o.allowed, o.code)
	}
	if msg, _ := o.resp.Context["error_message"].(string); msg == "" || strings.ContainsAny(msg, `"\`) {
		e.t.Fatalf("403 message %q cannot go into the JSON template", msg)
	}
}

func TestAllow(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		k := e.key(lifecycle.CreateParams{Scopes: []string{"invoices:read", "customers:write"}})
		for _, fixture := range []string{"authorizer-bearer.json", "authorizer-basic.json"} {
			resp := e.wantAllow(event(t, fixture, k.Token.Plain(), ""))
			want := map[string]any{"tenant_id": "acme", "key_id": "key_" + k.Key.ID, "environment": "live",
				"scopes": "invoices:read customers:write", "key_name": "billing sync",
				"error_code": "insufficient_scope", "error_message": resp.Context["error_message"]}
			for name, v := range want {
				if resp.Context[name] != v {
					t.Errorf("%s: context %s = %v, want %v", fixture, name, resp.Context[name], v)
				}
			}
			if resp.PrincipalID != "key_"+k.Key.ID || resp.UsageIdentifierKey != "keywardkey"+k.Key.ID {
				t.Errorf("principal %q usage identifier %q", resp.PrincipalID, resp.UsageIdentifierKey)
			}
		}
		ev := event(t, "authorizer-bearer.json", k.Token.Plain(), "")
		setAuthorization(&ev, "bEaReR "+k.Token.Plain())
		e.wantAllow(ev)

		test := e.key(lifecycle.CreateParams{Environment: apikey.Test})
		resp := e.wantAllow(event(t, "authorizer-bearer.json", test.Token.Plain(), ""))
		if resp.Context["environment"] != "test" {
			t.Errorf("test key's environment %v", resp.Context["environment"])
		}
	})
}

func TestUnauthorizedOutcomesLookAlike(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		k := e.key(lifecycle.CreateParams{})
		tok := k.Token.Plain()
		format, _ := apikey.NewFormat("sk")
		unknown, _ := format.Generate(apikey.Live)
		// Same id, another secret, valid checksum: only the HMAC can tell.
		forged := forge(tok[:20] + strings.Repeat("Z", 32))
		bad := forge(tok[:len(tok)-6])
		bad = bad[:len(bad)-1] + map[bool]string{true: "A", false: "B"}[bad[len(bad)-1] != 'A']

		readsBefore := e.st.gets.Load()
		noRead := map[string]string{
			"bad checksum":     "Bearer " + bad,
			"not a token":      "Bearer hello",
			"other prefix":     "Bearer pk" + tok[2:],
			"no scheme":        tok,
			"unknown scheme":   "Token " + tok,
			"two spaces":       "Bearer  " + tok,
			"tab":              "Bearer\t" + tok,
			"trailing space":   "Bearer " + tok + " ",
			"nul":              "Bearer " + tok[:10] + "\x00" + tok[11:],
			"non-ascii":        "Bearer " + tok[:10] + "é" + tok[12:],
			"comma joined":     "Bearer " + tok + ",Bearer " + unknown.Plain(),
			"basic password":   "Basic " + base64.StdEncoding.EncodeToString([]byte(tok+":x")),
			"basic no colon":   "Basic " + base64.StdEncoding.EncodeToString([]byte(tok)),
			"basic not b64":    "Basic " + tok,
			"overlong":         "Bearer " + strings.Repeat("a", 200),
			"empty":            "",
			"scheme only":      "Bearer",
			"scheme and space": "Bearer ",
		}
		for name, header := range noRead {
			ev := event(t, "authorizer-bearer.json", tok, "")
			setAuthorization(&ev, header)
			t.Run(name, func(t *testing.T) { e.t = t; e.wantUnauthorized(ev) })
		}
		e.t = t
		e.wantUnauthorized(event(t, "authorizer-missing.json", tok, ""))
		e.wantUnauthorized(event(t, "authorizer-two-credentials.json", tok, unknown.Plain()))
		if n := e.st.gets.Load() - readsBefore; n != 0 {
			t.Fatalf("refusing malformed credentials read the store %d times", n)
		}

		e.wantUnauthorized(event(t, "authorizer-bearer.json", unknown.Plain(), ""))
		e.wantUnauthorized(event(t, "authorizer-bearer.json", forged, ""))

		if _, err := e.svc.Revoke(e.ctx, lifecycle.Actor{ID: "test"}, "acme", k.Key.ID); err != nil {
			t.Fatal(err)
		}
		e.wantUnauthorized(event(t, "authorizer-bearer.json", tok, ""))
	})
}

// forge returns a well-formed token (valid checksum) with the given head.
func forge(head string) string {
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	sum := crc32.ChecksumIEEE([]byte(head))
	out := make([]byte, 6)
	for i := 5; i >= 0; i-- {
		out[i] = alphabet[sum%62]
		sum /= 62
	}
	return head + string(out)
}

func TestStatusAndValidity(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		expiring := e.key(lifecycle.CreateParams{ExpiresAt: start.Add(time.Hour)})
		rotated := e.key(lifecycle.CreateParams{})
		nk, _, err := e.svc.Rotate(e.ctx, lifecycle.Actor{ID: "test"}, "acme", rotated.Key.ID, 30*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		e.tokens = append(e.tokens, nk.Token.Plain())
		future := e.key(lifecycle.CreateParams{})
		// Not-before is not settable through the lifecycle yet; the store
		// field exists for keys issued ahead of their validity.
		fk, _ := e.st.GetKey(e.ctx, future.Key.ID)
		fk.NotBefore = start.Add(time.Hour)
		if err := e.st.Apply(e.ctx, store.Change{Keys: []store.KeyWrite{{Key: fk, ExpectedRevision: fk.Revision}}}); err != nil {
			t.Fatal(err)
		}

		// During the overlap both the old and the new key work.
		e.wantAllow(event(t, "authorizer-bearer.json", rotated.Token.Plain(), ""))
		e.wantAllow(event(t, "authorizer-bearer.json", nk.Token.Plain(), ""))
		e.wantAllow(event(t, "authorizer-bearer.json", expiring.Token.Plain(), ""))
		e.wantUnauthorized(event(t, "authorizer-bearer.json", future.Token.Plain(), ""))

		e.clk.Advance(30 * time.Minute) // the overlap ends
		e.wantUnauthorized(event(t, "authorizer-bearer.json", rotated.Token.Plain(), ""))
		e.wantAllow(event(t, "authorizer-bearer.json", nk.Token.Plain(), ""))
		e.clk.Advance(30 * time.Minute)
		e.wantUnauthorized(event(t, "authorizer-bearer.json", expiring.Token.Plain(), ""))
		e.wantAllow(event(t, "authorizer-bearer.json", future.Token.Plain(), ""))
	})
}

func TestScopesDenyWithAllRoutesPolicy(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		reader := e.key(lifecycle.CreateParams{Scopes: []string{"invoices:read"}})
		writer := e.key(lifecycle.CreateParams{Scopes: []string{"invoices:write"}})
		e.wantDeny(event(t, "authorizer-post-invoices.json", reader.Token.Plain(), ""), authorizer.ReasonScope)
		e.wantAllow(event(t, "authorizer-post-invoices.json", writer.Token.Plain(), ""))
		// Write implies read.
		e.wantAllow(event(t, "authorizer-bearer.json", writer.Token.Plain(), ""))
		// A key with no route at all gets a policy that only denies.
		none := e.key(lifecycle.CreateParams{Scopes: []string{"reports:read"}})
		e.wantDeny(event(t, "authorizer-bearer.json", none.Token.Plain(), ""), authorizer.ReasonScope)
	})
}

func TestIPAllowList(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		v4 := e.key(lifecycle.CreateParams{AllowedIPs: []string{"203.0.113.0/24"}})
		other := e.key(lifecycle.CreateParams{AllowedIPs: []string{"198.51.100.7"}})
		v6 := e.key(lifecycle.CreateParams{AllowedIPs: []string{"2001:db8::/32"}})
		e.wantAllow(event(t, "authorizer-bearer.json", v4.Token.Plain(), ""))
		e.wantDeny(event(t, "authorizer-bearer.json", other.Token.Plain(), ""), authorizer.ReasonIP)
		e.wantDeny(event(t, "authorizer-bearer.json", v6.Token.Plain(), ""), authorizer.ReasonIP)

		e.gw.Authorizer.CacheTTLSeconds = 0 // the browser fixture sends an Origin
		e.build()
		e.wantAllow(event(t, "authorizer-browser-ipv6.json", v6.Token.Plain(), ""))
		e.wantDeny(event(t, "authorizer-browser-ipv6.json", v4.Token.Plain(), ""), authorizer.ReasonIP)

		// An IPv4 client seen as IPv4-mapped IPv6 is still that IPv4 client.
		ev := event(t, "authorizer-bearer.json", v4.Token.Plain(), "")
		ev.RequestContext.Identity.SourceIP = "::ffff:203.0.113.10"
		e.wantAllow(ev)
		ev.RequestContext.Identity.SourceIP = "not an ip"
		e.wantDeny(ev, authorizer.ReasonIP)
		// Answers are kept per key revision and address: the refusal
		// just given does not answer the allowed address.
		ev.RequestContext.Identity.SourceIP = "203.0.113.10"
		e.wantAllow(ev)
	})
}

// TestAnswerPerOrigin: a server key on the browser endpoint passes on
// whatever single Origin its request has; each answer carries its own
// request's origin, also once the key has been seen from more origins
// than the authorizer keeps answers for.
func TestAnswerPerOrigin(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		k := e.key(lifecycle.CreateParams{})
		for round := range 2 {
			for i := range 40 {
				o := fmt.Sprintf("https://app%d.example.com", i)
				ev := event(t, "authorizer-browser-ipv6.json", k.Token.Plain(), "")
				setOrigin(&ev, o)
				if got := e.wantAllow(ev).Context[authorizer.ContextOrigin]; got != o {
					t.Fatalf("round %d: origin %s answered with context origin %v", round, o, got)
				}
			}
		}
	})
}

// onBrowser moves a fixture's request to the browser endpoint.
func onBrowser(ev events.APIGatewayCustomAuthorizerRequestTypeRequest) events.APIGatewayCustomAuthorizerRequestTypeRequest {
	arn, _ := policy.ParseMethodARN(ev.MethodArn)
	ev.MethodArn = arn.Prefix + ev.HTTPMethod + config.BrowserPath + strings.TrimPrefix(ev.MethodArn, arn.Prefix+ev.HTTPMethod)
	ev.Resource, ev.Path = config.BrowserPath+ev.Resource, config.BrowserPath+ev.Path
	ev.RequestContext.ResourcePath = ev.Resource
	return ev
}

func setOrigin(ev *events.APIGatewayCustomAuthorizerRequestTypeRequest, origins ...string) {
	delete(ev.Headers, "Origin")
	delete(ev.MultiValueHeaders, "Origin")
	if len(origins) > 0 {
		ev.Headers["Origin"], ev.MultiValueHeaders["Origin"] = origins[len(origins)-1], origins
	}
}

// TestBrowserKeys: a key with allowed origins works only on the browser
// endpoint, whose decisions are cached by Origin too, from one of its
// origins; other keys work on both endpoints; a policy never reaches the
// other endpoint's routes.
func TestBrowserKeys(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		browser := e.key(lifecycle.CreateParams{AllowedOrigins: []string{"https://app.example.com"}})
		elsewhere := e.key(lifecycle.CreateParams{AllowedOrigins: []string{"https://other.example.com:8443"}})
		server := e.key(lifecycle.CreateParams{})
		browserEvent := func(k lifecycle.Created) events.APIGatewayCustomAuthorizerRequestTypeRequest {
			return event(t, "authorizer-browser-ipv6.json", k.Token.Plain(), "")
		}
		serverEvent := func(k lifecycle.Created) events.APIGatewayCustomAuthorizerRequestTypeRequest {
			return event(t, "authorizer-bearer.json", k.Token.Plain(), "")
		}

		// The server endpoint is not keyed by Origin: a browser key is
		// refused there, with or without one.
		e.wantDeny(serverEvent(browser), authorizer.ReasonBrowserOnly)
		ev := serverEvent(browser)
		setOrigin(&ev, "https://app.example.com")
		e.wantDeny(ev, authorizer.ReasonBrowserOnly)
		resp := e.wantAllow(serverEvent(server))
		if _, ok := resp.Context[authorizer.ContextOrigin]; ok {
			t.Errorf("a server endpoint decision carries an origin: %v", resp.Context)
		}
		for _, st := range resp.PolicyDocument.Statement {
			for _, r := range st.Resource {
				if strings.Contains(r, config.BrowserPath) {
					t.Errorf("the server endpoint's policy reaches %s", r)
				}
			}
		}

		for _, gw := range []config.Authorizer{
			{CacheTTLSeconds: 0, IdentitySources: []string{config.IdentityAuthorization}},
			{CacheTTLSeconds: 300, IdentitySources: []string{config.IdentityAuthorization, config.IdentitySourceIP}},
		} {
			e.gw.Authorizer = gw
			e.build()
			resp := e.wantAllow(browserEvent(browser))
			if got := resp.Context[authorizer.ContextOrigin]; got != "https://app.example.com" {
				t.Errorf("context origin %v, want the checked origin", got)
			}
			for _, st := range resp.PolicyDocument.Statement {
				for _, r := range st.Resource {
					if !strings.Contains(r, config.BrowserPath+"/") && !strings.HasSuffix(r, "/prod/*") { // or deny-all
						t.Errorf("the browser endpoint's policy reaches %s", r)
					}
				}
			}
			e.wantDeny(browserEvent(elsewhere), authorizer.ReasonOrigin)
			e.wantAllow(browserEvent(server))
			// A browser key without exactly one valid Origin is refused.
			for _, origins := range [][]string{nil, {"https://app.example.com", "https://evil.example"}, {"null"}, {"https://app.example.com/"}} {
				ev := browserEvent(browser)
				setOrigin(&ev, origins...)
				if origins != nil && origins[0] == "https://app.example.com/" {
					// A trailing slash is the same origin to origin.Normal.
					e.wantAllow(ev)
					continue
				}
				e.wantDeny(ev, authorizer.ReasonOrigin)
			}
			ev := browserEvent(browser)
			setOrigin(&ev, "HTTPS://APP.example.com:443")
			e.wantAllow(ev)
		}
	})
}

// TestBrowserKeysReadUnlessAllowed: on the browser endpoint a browser key
// gets only its read scopes unless its owner allowed writes, even a key
// stored before the lifecycle refused such keys.
func TestBrowserKeysReadUnlessAllowed(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		k := e.key(lifecycle.CreateParams{Scopes: []string{"invoices:write"}, AllowedOrigins: []string{"https://app.example.com"}, AllowBrowserWrites: true})
		post := onBrowser(event(t, "authorizer-post-invoices.json", k.Token.Plain(), ""))
		setOrigin(&post, "https://app.example.com")
		get := event(t, "authorizer-browser-ipv6.json", k.Token.Plain(), "")
		e.wantAllow(post)
		e.wantAllow(get)

		stored, err := e.st.GetKey(e.ctx, k.Key.ID)
		if err != nil {
			t.Fatal(err)
		}
		stored.AllowBrowserWrites = false
		if err := e.st.Apply(e.ctx, store.Change{Keys: []store.KeyWrite{{Key: stored, ExpectedRevision: stored.Revision}}}); err != nil {
			t.Fatal(err)
		}
		e.wantDeny(post, authorizer.ReasonScope)
		resp := e.wantAllow(get) // write implies read
		if got := resp.Context["scopes"]; got != "invoices:read" {
			t.Errorf("the upstream would learn scopes %q, more than the policy grants", got)
		}
	})
}

func TestFailsClosed(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		k := e.key(lifecycle.CreateParams{})
		ev := event(t, "authorizer-bearer.json", k.Token.Plain(), "")

		e.st.failGet = errors.New("ProvisionedThroughputExceededException")
		if o := e.authorize(ev); o.err == nil || o.err.Error() == "Unauthorized" || o.allowed {
			t.Fatalf("store failure: %v", o.err)
		}
		e.st.failGet = nil

		// A key hashed under a pepper version this process cannot load.
		sk, _ := e.st.GetKey(e.ctx, k.Key.ID)
		if err := e.st.RehashKey(e.ctx, k.Key.ID, sk.Hash, 42); err != nil {
			t.Fatal(err)
		}
		if o := e.authorize(ev); o.err == nil || o.err.Error() == "Unauthorized" || !errors.Is(o.err, pepper.ErrUnknownVersion) {
			t.Fatalf("unknown pepper version: %v", o.err)
		}

		bad := ev
		bad.MethodArn = "not-an-arn"
		if o := e.authorize(bad); o.err == nil || o.err.Error() == "Unauthorized" {
			t.Fatalf("bad method ARN: %v", o.err)
		}
	})
}

// TestUnknownStatusFailsClosed: only the statuses that mean usable pass;
// a status the code does not know is corrupt data, never an allow.
func TestUnknownStatusFailsClosed(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		k := e.key(lifecycle.CreateParams{})
		ev := event(t, "authorizer-bearer.json", k.Token.Plain(), "")
		for _, status := range []store.KeyStatus{"revokdd", "REVOKED", "disabled", ""} {
			e.st.edit = func(k *store.Key) { k.Status = status }
			o := e.authorize(ev)
			if o.err == nil || o.err.Error() == "Unauthorized" || o.allowed || !errors.Is(o.err, store.ErrCorrupt) {
				t.Fatalf("status %q: err %v, allowed %v", status, o.err, o.allowed)
			}
		}
		if !strings.Contains(e.logs.String(), `"reason":"corrupt_key"`) {
			t.Fatalf("a corrupt key is not logged as such: %s", e.logs)
		}
	})
}

// TestTokenEventIsAConfigurationError: a TOKEN authorizer's event (as
// aws-lambda-go's own sample) is the deployment's mistake: a failure that
// says so, not a 401 for every caller.
func TestTokenEventIsAConfigurationError(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		k := e.key(lifecycle.CreateParams{})
		var ev events.APIGatewayCustomAuthorizerRequestTypeRequest
		raw := `{"type":"TOKEN","authorizationToken":"Bearer ` + k.Token.Plain() + `","methodArn":"arn:aws:execute-api:us-east-1:123456789012:abcdef1234/prod/GET/invoices"}`
		if err := json.Unmarshal([]byte(raw), &ev); err != nil {
			t.Fatal(err)
		}
		o := e.authorize(ev)
		if o.err == nil || o.err.Error() == "Unauthorized" || !strings.Contains(o.err.Error(), "REQUEST authorizer") {
			t.Fatalf("TOKEN event: %v", o.err)
		}
		if !strings.Contains(e.logs.String(), `"reason":"configuration_error"`) || !strings.Contains(e.logs.String(), `"level":"ERROR"`) {
			t.Fatalf("TOKEN event log: %s", e.logs)
		}
	})
}

// TestSlowDecisionFailsClosed: a policy whose key read is older than
// MaxDecisionAge is not returned, so that the second flush after a
// revocation catches every policy read before it.
func TestSlowDecisionFailsClosed(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		k := e.key(lifecycle.CreateParams{})
		ev := event(t, "authorizer-bearer.json", k.Token.Plain(), "")
		e.st.edit = func(*store.Key) { e.clk.Advance(authorizer.MaxDecisionAge + time.Millisecond) }
		if o := e.authorize(ev); o.err == nil || o.err.Error() == "Unauthorized" || o.allowed {
			t.Fatalf("slow decision: %v, allowed %v", o.err, o.allowed)
		}
		e.st.edit = func(*store.Key) { e.clk.Advance(authorizer.MaxDecisionAge) }
		e.wantAllow(ev)
	})
}

func TestLazyRehashAfterPepperRotation(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		k := e.key(lifecycle.CreateParams{})
		e.wantAllow(event(t, "authorizer-bearer.json", k.Token.Plain(), ""))
		if _, err := pepper.Create(e.ctx, e.st, e.kr, e.clk.Now()); err != nil {
			t.Fatal(err)
		}
		if err := e.ring.Refresh(e.ctx); err != nil || e.ring.Current() != 2 {
			t.Fatalf("refresh: %v, current %d", err, e.ring.Current())
		}
		// Decisions ask the ring for its current version once a second.
		e.clk.Advance(time.Second)
		// A failing re-hash never fails the request.
		e.st.failRehash = errors.New("ConditionalCheckFailed storm")
		e.wantAllow(event(t, "authorizer-bearer.json", k.Token.Plain(), ""))
		if got, _ := e.st.GetKey(e.ctx, k.Key.ID); got.PepperVersion != 1 {
			t.Fatal("re-hash happened despite the failure")
		}
		e.st.failRehash = nil
		e.wantAllow(event(t, "authorizer-bearer.json", k.Token.Plain(), ""))
		got, _ := e.st.GetKey(e.ctx, k.Key.ID)
		if got.PepperVersion != 2 {
			t.Fatalf("pepper version %d after use, want 2", got.PepperVersion)
		}
		rehashes := e.st.rehashes.Load()
		e.wantAllow(event(t, "authorizer-bearer.json", k.Token.Plain(), ""))
		if e.st.rehashes.Load() != rehashes {
			t.Fatal("a key on the newest pepper was re-hashed again")
		}
	})
}

func TestLastUsedWrittenAtMostOncePerInterval(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		k := e.key(lifecycle.CreateParams{})
		ev := event(t, "authorizer-bearer.json", k.Token.Plain(), "")
		e.wantAllow(ev)
		if got, _ := e.st.GetKey(e.ctx, k.Key.ID); !got.LastUsedAt.Equal(start) {
			t.Fatalf("last used %v", got.LastUsedAt)
		}
		touches := e.st.touches.Load()
		for range 20 {
			e.clk.Advance(10 * time.Second)
			e.wantAllow(ev)
		}
		if n := e.st.touches.Load() - touches; n != 0 {
			t.Fatalf("%d writes in steady state within the interval", n)
		}
		e.clk.Advance(authorizer.LastUsedInterval)
		e.wantAllow(ev)
		if e.st.touches.Load()-touches != 1 {
			t.Fatal("no write after the interval")
		}
	})
}

// TestDecisionLogAndMetrics: every refusal gets a line of its own;
// allowed decisions are counted into batches, each a line with every
// latency, written when full, when old, or on Flush; every line carries
// the Embedded Metric Format header; no line holds a secret.
func TestDecisionLogAndMetrics(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		k := e.key(lifecycle.CreateParams{})
		e.logs.Reset()
		e.wantAllow(event(t, "authorizer-bearer.json", k.Token.Plain(), ""))
		e.wantAllow(event(t, "authorizer-bearer.json", k.Token.Plain(), ""))
		e.wantUnauthorized(event(t, "authorizer-missing.json", "", ""))
		lines := strings.Split(strings.TrimSpace(e.logs.String()), "\n")
		if len(lines) != 1 || !strings.Contains(lines[0], `"outcome":"unauthorized"`) || !strings.Contains(lines[0], `"reason":"missing_credential"`) {
			t.Fatalf("want the refusal's line alone:\n%s", e.logs)
		}
		var refusal map[string]any
		if err := json.Unmarshal([]byte(lines[0]), &refusal); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"time", "level", "msg", "outcome", "reason", "request_id", "method", "resource", "latency_ms", "decisions", "_aws"} {
			if _, ok := refusal[f]; !ok {
				t.Errorf("the refusal's line lacks %s: %s", f, lines[0])
			}
		}

		e.a.Flush()
		lines = strings.Split(strings.TrimSpace(e.logs.String()), "\n")
		if len(lines) != 2 {
			t.Fatalf("%d lines after the flush:\n%s", len(lines), e.logs)
		}
		var batch struct {
			Msg, Outcome string
			Decisions    int
			Latency      []float64 `json:"latency_ms"`
			AWS          struct {
				Timestamp         int64
				CloudWatchMetrics []struct {
					Namespace  string
					Dimensions [][]string
					Metrics    []struct{ Name, Unit string }
				}
			} `json:"_aws"`
		}
		if err := json.Unmarshal([]byte(lines[1]), &batch); err != nil {
			t.Fatal(err)
		}
		if batch.Msg != "authorization decisions" || batch.Outcome != "allow" || batch.Decisions != 2 || len(batch.Latency) != 2 {
			t.Fatalf("allow batch: %s", lines[1])
		}
		m := batch.AWS.CloudWatchMetrics
		if batch.AWS.Timestamp != start.UnixMilli() || len(m) != 1 || m[0].Namespace != "Keyward" ||
			len(m[0].Dimensions) != 1 || m[0].Dimensions[0][0] != "outcome" || len(m[0].Metrics) != 2 {
			t.Fatalf("EMF header: %+v", batch.AWS)
		}
		e.a.Flush()
		if n := strings.Count(e.logs.String(), "\n"); n != 2 {
			t.Fatalf("an empty flush wrote a line: %d lines", n)
		}

		// A full batch is written at once; an old one before the next line.
		e.logs.Reset()
		for range authorizer.MaxBatch {
			e.wantAllow(event(t, "authorizer-bearer.json", k.Token.Plain(), ""))
		}
		if n := strings.Count(e.logs.String(), "\n"); n != 1 || !strings.Contains(e.logs.String(), fmt.Sprintf(`"decisions":%d`, authorizer.MaxBatch)) {
			t.Fatalf("a full batch: %s", e.logs)
		}
		e.wantAllow(event(t, "authorizer-bearer.json", k.Token.Plain(), ""))
		e.clk.Advance(authorizer.MaxBatchAge)
		e.wantUnauthorized(event(t, "authorizer-missing.json", "", ""))
		lines = strings.Split(strings.TrimSpace(e.logs.String()), "\n")
		if len(lines) != 3 || !strings.Contains(lines[1], `"decisions":1,`) || !strings.Contains(lines[2], `"outcome":"unauthorized"`) {
			t.Fatalf("an old batch before the next line:\n%s", e.logs)
		}

		stored, _ := e.st.GetKey(e.ctx, k.Key.ID)
		if strings.Contains(e.logs.String(), base64.StdEncoding.EncodeToString(stored.Hash)) {
			t.Fatal("the key's hash reached the log")
		}
	})
}

// TestWrongSecretReported: a well-formed token naming a real key with a
// wrong secret is reported to the WrongSecret hook with the key and its
// tenant, and its decision line is what functions/usage reads
// (usage.WrongSecretFromDecision), as written and as Lambda's JSON log
// format wraps it; a right secret, an unknown key or a malformed token is
// neither.
func TestWrongSecretReported(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		var got []string
		var lines bytes.Buffer
		format, _ := apikey.NewFormat("sk")
		a, err := authorizer.New(authorizer.Config{Store: e.st, Peppers: e.ring, Format: format, Routes: e.routes, Gateway: e.gw, Now: e.clk.Now,
			Decisions: &lines, Logger: slog.New(slog.DiscardHandler),
			WrongSecret: func(keyID, tenantID string, at time.Time) {
				got = append(got, keyID+" "+tenantID+" "+at.Format(time.RFC3339))
			}})
		if err != nil {
			t.Fatal(err)
		}
		e.a = a
		k := e.key(lifecycle.CreateParams{})
		tok := k.Token.Plain()
		e.wantAllow(event(t, "authorizer-bearer.json", tok, ""))
		e.wantUnauthorized(event(t, "authorizer-bearer.json", forge(tok[:20]+strings.Repeat("Z", 32)), ""))
		e.wantUnauthorized(event(t, "authorizer-bearer.json", "sk_live_nonsense", ""))
		if want := k.Key.ID + " acme " + e.clk.Now().Format(time.RFC3339); len(got) != 1 || got[0] != want {
			t.Fatalf("reported %q, want [%q]", got, want)
		}
		a.Flush()
		found := 0
		for line := range strings.Lines(lines.String()) {
			id, tenant, at, ok := usage.WrongSecretFromDecision(line)
			if !ok {
				continue
			}
			found++
			if id != k.Key.ID || tenant != "acme" || !at.Equal(e.clk.Now()) {
				t.Fatalf("read %s %s %v from %s", id, tenant, at, line)
			}
			wrapped, _ := json.Marshal(map[string]any{"timestamp": "2026-06-01T12:00:00Z", "level": "INFO", "message": strings.TrimSpace(line)})
			if id2, _, _, ok := usage.WrongSecretFromDecision(string(wrapped)); !ok || id2 != id {
				t.Fatalf("the wrapped line %s is not read", wrapped)
			}
		}
		if found != 1 {
			t.Fatalf("%d wrong secrets read from:\n%s", found, lines.String())
		}
	})
}
