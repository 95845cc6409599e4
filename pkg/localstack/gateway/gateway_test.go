package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/keyward/keyward/pkg/clock"
	"github.com/keyward/keyward/pkg/config"
	"github.com/keyward/keyward/pkg/localstack/gateway"
	"github.com/keyward/keyward/pkg/policy"
	"github.com/keyward/keyward/pkg/route"
	"github.com/keyward/keyward/pkg/usage"
)

var t0 = time.Date(2026, 7, 1, 10, 0, 0, 0, time.UTC)

// arnPrefix is the default stage's method ARN prefix.
const arnPrefix = "arn:aws:execute-api:local:000000000000:keyward/local/"

// identity is the usage identity of the stub's keys.
const identity = "keywardkeyAbCdEfGhIjKl"

// stub is an authorizer that records the events it receives and answers
// from a script.
type stub struct {
	mu     sync.Mutex
	events []events.APIGatewayCustomAuthorizerRequestTypeRequest
	answer func(events.APIGatewayCustomAuthorizerRequestTypeRequest) (events.APIGatewayCustomAuthorizerResponse, error)
}

func (s *stub) Authorize(_ context.Context, ev events.APIGatewayCustomAuthorizerRequestTypeRequest) (events.APIGatewayCustomAuthorizerResponse, error) {
	s.mu.Lock()
	s.events = append(s.events, ev)
	answer := s.answer
	s.mu.Unlock()
	return answer(ev)
}

func (s *stub) calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.events)
}

func (s *stub) last() events.APIGatewayCustomAuthorizerRequestTypeRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.events[len(s.events)-1]
}

// decision answers like keyward's authorizer for a key of tenant acme:
// allow and deny are method ARN paths ("GET/invoices*") on the stage.
func decision(allow, deny []string, context map[string]any) func(events.APIGatewayCustomAuthorizerRequestTypeRequest) (events.APIGatewayCustomAuthorizerResponse, error) {
	ctx := map[string]any{"tenant_id": "acme", "key_id": "key_AbCdEfGhIjKl", "environment": "live", "scopes": "invoices:read keys:read",
		"key_name": "billing", "error_code": "insufficient_scope", "error_message": "This API key does not have the scope this route requires."}
	for k, v := range context {
		ctx[k] = v
	}
	prefix := func(ps []string) []string {
		var out []string
		for _, p := range ps {
			out = append(out, arnPrefix+p)
		}
		return out
	}
	return func(events.APIGatewayCustomAuthorizerRequestTypeRequest) (events.APIGatewayCustomAuthorizerResponse, error) {
		return events.APIGatewayCustomAuthorizerResponse{PrincipalID: "key_AbCdEfGhIjKl", UsageIdentifierKey: identity,
			PolicyDocument: policy.Document(prefix(allow), prefix(deny)), Context: ctx}, nil
	}
}

func allowAll() func(events.APIGatewayCustomAuthorizerRequestTypeRequest) (events.APIGatewayCustomAuthorizerResponse, error) {
	return decision([]string{"*"}, nil, nil)
}

func fail(err error) func(events.APIGatewayCustomAuthorizerRequestTypeRequest) (events.APIGatewayCustomAuthorizerResponse, error) {
	return func(events.APIGatewayCustomAuthorizerRequestTypeRequest) (events.APIGatewayCustomAuthorizerResponse, error) {
		return events.APIGatewayCustomAuthorizerResponse{}, err
	}
}

// recording is a backend that records the requests it receives.
type recording struct {
	mu   sync.Mutex
	reqs []*http.Request
}

func (b *recording) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	b.reqs = append(b.reqs, r)
	b.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"ok":true}`)
}

func (b *recording) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.reqs)
}

func (b *recording) last() *http.Request {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.reqs[len(b.reqs)-1]
}

// function is a Lambda proxy handler that records the events it receives
// and answers from a script (200 {"ok":true} without one).
type function struct {
	mu     sync.Mutex
	events []events.APIGatewayProxyRequest
	answer func(events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error)
}

func (f *function) invoke(_ context.Context, ev events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error) {
	f.mu.Lock()
	f.events = append(f.events, ev)
	answer := f.answer
	f.mu.Unlock()
	if answer != nil {
		return answer(ev)
	}
	return events.APIGatewayProxyResponse{StatusCode: 200, Headers: map[string]string{"Content-Type": "application/json"}, Body: `{"ok":true}`}, nil
}

func (f *function) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.events)
}

func (f *function) last() events.APIGatewayProxyRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.events[len(f.events)-1]
}

type harness struct {
	t        *testing.T
	gw       *gateway.Gateway
	authz    *stub
	clk      *clock.Manual
	upstream *recording
	admin    *function
	logs     *bytes.Buffer
}

func routes(t *testing.T) *route.Table {
	t.Helper()
	rt, err := config.Routes("")
	if err != nil {
		t.Fatal(err)
	}
	table, err := route.Compile(config.APIRoutes(rt)...)
	if err != nil {
		t.Fatal(err)
	}
	return table
}

func loadGateway(t testing.TB) config.Gateway {
	t.Helper()
	gw, err := config.LoadGateway()
	if err != nil {
		t.Fatal(err)
	}
	return gw
}

// newHarness returns a gateway over the shipped configuration with the
// stub's usage identity provisioned in the default tier; adjust may
// change the configuration first.
func newHarness(t *testing.T, adjust func(*gateway.Config)) *harness {
	t.Helper()
	h := &harness{t: t, authz: &stub{answer: allowAll()}, clk: clock.NewManual(t0), upstream: &recording{}, admin: &function{}, logs: &bytes.Buffer{}}
	cfg := gateway.Config{Routes: routes(t), Gateway: loadGateway(t), Authorizer: h.authz, Admin: h.admin.invoke, Upstream: h.upstream,
		OperatorToken: "op-secret", OperatorARN: operatorARN, Now: h.clk.Now, Logger: slog.New(slog.NewJSONHandler(h.logs, nil))}
	if adjust != nil {
		adjust(&cfg)
	}
	gw, err := gateway.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Provision(t.Context(), identity, "default"); err != nil {
		t.Fatal(err)
	}
	h.gw = gw
	return h
}

// operatorARN is the identity the harness's operator token stands for.
const operatorARN = "arn:aws:sts::000000000000:assumed-role/keyward-local-operator/local"

const bearer = "Bearer sk_live_AbCdEfGhIjKl0123456789abcdefghijklmnopqrstuvXyZ9aB"

// do sends a request from remote with the stub's key, unless header sets
// another Authorization (or an empty one to send none).
func (h *harness) do(method, target, remote string, header http.Header) *httptest.ResponseRecorder {
	h.t.Helper()
	r := httptest.NewRequest(method, target, nil)
	r.RemoteAddr = remote
	r.Header.Set("Authorization", bearer)
	for k, v := range header {
		r.Header[k] = v
	}
	if r.Header.Get("Authorization") == "" {
		r.Header.Del("Authorization")
	}
	w := httptest.NewRecorder()
	h.gw.ServeHTTP(w, r)
	return w
}

func (h *harness) get(target string) *httptest.ResponseRecorder {
	h.t.Helper()
	return h.do("GET", target, "192.0.2.1:1234", nil)
}

func wantResponse(t *testing.T, w *httptest.ResponseRecorder, status int, body string) {
	t.Helper()
	if w.Code != status || (body != "" && w.Body.String() != body) {
		t.Fatalf("got %d %s, want %d %s", w.Code, w.Body, status, body)
	}
	if w.Header().Get("Request-Id") == "" {
		t.Errorf("no Request-Id header")
	}
}

const (
	unauthorizedBody = `{"error":{"type":"unauthorized","message":"Invalid or missing API key."}}`
	notFoundBody     = `{"error":{"type":"not_found","code":"not_found","message":"No such route."}}`
)

func TestRouteMissIsNotFoundAndInvokesNothing(t *testing.T) {
	h := newHarness(t, nil)
	for _, c := range []struct{ method, target string }{
		{"GET", "/nope"},
		{"GET", "/invoices/1/refunds"},
		{"DELETE", "/invoices"}, // a known path, an unknown method
		{"GET", "/v1/tenants"},
	} {
		w := h.do(c.method, c.target, "192.0.2.1:1234", nil)
		wantResponse(t, w, 404, notFoundBody)
		if ct := w.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q", ct)
		}
	}
	if h.authz.calls() != 0 || h.upstream.count() != 0 || h.admin.count() != 0 {
		t.Fatalf("a route miss invoked something: authorizer %d, upstream %d, admin %d", h.authz.calls(), h.upstream.count(), h.admin.count())
	}
}

// TestEventMatchesAPIGateway sends the request behind events/authorizer-bearer.json,
// a real event, and expects the same event.
func TestEventMatchesAPIGateway(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "..", "events", "authorizer-bearer.json"))
	if err != nil {
		t.Fatal(err)
	}
	raw = bytes.ReplaceAll(raw, []byte("${TOKEN}"), []byte(strings.TrimPrefix(bearer, "Bearer ")))
	var want events.APIGatewayCustomAuthorizerRequestTypeRequest
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, func(c *gateway.Config) {
		c.Region, c.AccountID, c.APIID, c.Stage = "eu-west-1", "111122223333", "a1b2c3d4e5", "prod"
	})
	r := httptest.NewRequest(want.HTTPMethod, want.Path, nil)
	r.RemoteAddr = want.RequestContext.Identity.SourceIP + ":50312"
	r.Host = want.Headers["Host"]
	for k, vs := range want.MultiValueHeaders {
		for _, v := range vs {
			if k != "Host" {
				r.Header.Add(k, v) // canonicalizing the name, as net/http's server does
			}
		}
	}
	h.gw.ServeHTTP(httptest.NewRecorder(), r)
	got := h.authz.last()

	// net/http canonicalizes header names; the ids are random.
	canon := func(m map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			out[http.CanonicalHeaderKey(k)] = v
		}
		return out
	}
	canonMulti := func(m map[string][]string) map[string][]string {
		out := map[string][]string{}
		for k, v := range m {
			out[http.CanonicalHeaderKey(k)] = v
		}
		return out
	}
	want.Headers, want.MultiValueHeaders = canon(want.Headers), canonMulti(want.MultiValueHeaders)
	if got.RequestContext.RequestID == "" || len(got.RequestContext.ResourceID) != 6 {
		t.Errorf("request id %q, resource id %q", got.RequestContext.RequestID, got.RequestContext.ResourceID)
	}
	want.RequestContext.RequestID, want.RequestContext.ResourceID = got.RequestContext.RequestID, got.RequestContext.ResourceID
	if !reflect.DeepEqual(got, want) {
		g, _ := json.MarshalIndent(got, "", " ")
		w, _ := json.MarshalIndent(want, "", " ")
		t.Fatalf("event\n%s\nwant\n%s", g, w)
	}
}

func TestEventDetails(t *testing.T) {
	h := newHarness(t, nil)
	h.do("GET", "/invoices/inv_1?expand=lines&expand=customer&limit=5", "198.51.100.20:4711", http.Header{
		"Accept":          {"application/json", "text/plain"},
		"X-Forwarded-For": {"203.0.113.99"},
	})
	ev := h.authz.last()
	if ev.Type != "REQUEST" || ev.MethodArn != arnPrefix+"GET/invoices/inv_1" || ev.Resource != "/invoices/{id}" ||
		ev.Path != "/invoices/inv_1" || ev.HTTPMethod != "GET" || ev.StageVariables != nil {
		t.Errorf("event %+v", ev)
	}
	if !reflect.DeepEqual(ev.PathParameters, map[string]string{"id": "inv_1"}) {
		t.Errorf("path parameters %v", ev.PathParameters)
	}
	if !reflect.DeepEqual(ev.MultiValueHeaders["Accept"], []string{"application/json", "text/plain"}) || ev.Headers["Accept"] != "text/plain" {
		t.Errorf("Accept: %q %q", ev.Headers["Accept"], ev.MultiValueHeaders["Accept"])
	}
	if !reflect.DeepEqual(ev.QueryStringParameters, map[string]string{"expand": "customer", "limit": "5"}) ||
		!reflect.DeepEqual(ev.MultiValueQueryStringParameters, map[string][]string{"expand": {"lines", "customer"}, "limit": {"5"}}) {
		t.Errorf("query %v %v", ev.QueryStringParameters, ev.MultiValueQueryStringParameters)
	}
	rc := ev.RequestContext
	if rc.Identity.SourceIP != "198.51.100.20" {
		t.Errorf("sourceIp %q: must be the connection's address, not X-Forwarded-For", rc.Identity.SourceIP)
	}
	if rc.Path != "/local/invoices/inv_1" || rc.Stage != "local" || rc.AccountID != "000000000000" || rc.APIID != "keyward" ||
		rc.ResourcePath != "/invoices/{id}" || rc.HTTPMethod != "GET" {
		t.Errorf("request context %+v", rc)
	}

	h.do("GET", "/invoices", "[2001:db8::7]:443", nil)
	ev = h.authz.last()
	if ev.QueryStringParameters != nil || ev.MultiValueQueryStringParameters != nil || ev.PathParameters != nil {
		t.Errorf("no query or parameters must be null: %v %v %v", ev.QueryStringParameters, ev.MultiValueQueryStringParameters, ev.PathParameters)
	}
	if ev.RequestContext.Identity.SourceIP != "2001:db8::7" {
		t.Errorf("IPv6 sourceIp %q", ev.RequestContext.Identity.SourceIP)
	}
}

func TestCachedDecisionIsReusedAcrossRoutesUntilTTL(t *testing.T) {
	h := newHarness(t, nil)
	wantResponse(t, h.get("/invoices"), 200, "")
	wantResponse(t, h.get("/customers/cus_1"), 200, "")
	wantResponse(t, h.do("GET", "/v1/keys", "192.0.2.1:1234", nil), 200, "")
	if n := h.authz.calls(); n != 1 {
		t.Fatalf("authorizer called %d times, want 1 within the TTL", n)
	}
	h.clk.Advance(299 * time.Second)
	h.get("/invoices")
	if n := h.authz.calls(); n != 1 {
		t.Fatalf("authorizer called %d times before the TTL ran out", n)
	}
	h.clk.Advance(time.Second)
	h.get("/invoices")
	if n := h.authz.calls(); n != 2 {
		t.Fatalf("authorizer called %d times, want a new call at the TTL", n)
	}

	h.do("GET", "/invoices", "192.0.2.2:1234", nil)
	if n := h.authz.calls(); n != 3 {
		t.Fatalf("another source IP must not reuse the decision (%d calls)", n)
	}
	h.do("GET", "/invoices", "192.0.2.1:1234", http.Header{"Authorization": {bearer + "x"}})
	if n := h.authz.calls(); n != 4 {
		t.Fatalf("another Authorization must not reuse the decision (%d calls)", n)
	}
	h.do("GET", "/invoices", "192.0.2.1:1234", http.Header{"Authorization": {"Bearer other", bearer}})
	if n := h.authz.calls(); n != 5 {
		t.Fatalf("a second Authorization value must not reuse the decision (%d calls)", n)
	}

	h.get("/invoices")
	if n := h.authz.calls(); n != 5 {
		t.Fatalf("authorizer called %d times, want the cached decision", n)
	}
	if err := h.gw.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	h.get("/invoices")
	if n := h.authz.calls(); n != 6 {
		t.Fatalf("Flush must clear the cache (%d calls)", n)
	}
}

// TestFlushDuringADecisionKeepsIt: as in API Gateway, a decision on its
// way when the cache is flushed is cached when it arrives; only a later
// flush clears it (see authorizer.Invalidate, which flushes twice).
func TestFlushDuringADecisionKeepsIt(t *testing.T) {
	h := newHarness(t, nil)
	allow := allowAll()
	h.authz.answer = func(ev events.APIGatewayCustomAuthorizerRequestTypeRequest) (events.APIGatewayCustomAuthorizerResponse, error) {
		// The key is revoked and the cache flushed while this decision,
		// made from the old key, is on its way.
		_ = h.gw.Flush(context.Background())
		return allow(ev)
	}
	h.get("/invoices")
	h.authz.answer = allow
	h.get("/invoices")
	if n := h.authz.calls(); n != 1 {
		t.Fatalf("a decision made across a flush was not cached, unlike API Gateway (%d calls)", n)
	}
	_ = h.gw.Flush(t.Context())
	h.get("/invoices")
	if n := h.authz.calls(); n != 2 {
		t.Fatalf("the second flush left the decision cached (%d calls)", n)
	}
}

func TestMissingIdentitySource(t *testing.T) {
	h := newHarness(t, nil)
	wantResponse(t, h.do("GET", "/invoices", "192.0.2.1:1234", http.Header{"Authorization": {""}}), 401, unauthorizedBody)
	if h.authz.calls() != 0 {
		t.Fatalf("the authorizer was called without an identity source")
	}

	// Without caching, the authorizer decides every request itself.
	h = newHarness(t, func(c *gateway.Config) { c.Gateway.Authorizer.CacheTTLSeconds = 0 })
	h.authz.answer = fail(errors.New("Unauthorized"))
	wantResponse(t, h.do("GET", "/invoices", "192.0.2.1:1234", http.Header{"Authorization": {""}}), 401, unauthorizedBody)
	h.authz.answer = allowAll()
	h.get("/invoices")
	h.get("/invoices")
	if h.authz.calls() != 3 {
		t.Fatalf("%d authorizer calls without caching, want 3", h.authz.calls())
	}
}

func TestUnauthorizedIsNotCached(t *testing.T) {
	h := newHarness(t, nil)
	h.authz.answer = fail(errors.New("Unauthorized"))
	w := h.get("/invoices")
	wantResponse(t, w, 401, unauthorizedBody)
	if got := w.Header().Get("WWW-Authenticate"); got != "Bearer" {
		t.Errorf("WWW-Authenticate %q", got)
	}
	wantResponse(t, h.get("/invoices"), 401, unauthorizedBody)
	if h.authz.calls() != 2 || h.upstream.count() != 0 {
		t.Fatalf("authorizer %d calls, upstream %d", h.authz.calls(), h.upstream.count())
	}
}

func TestAuthorizerFailureIs500(t *testing.T) {
	h := newHarness(t, nil)
	h.authz.answer = fail(errors.New("authorizer: internal_error: reading key: throttled"))
	w := h.get("/invoices")
	id := w.Header().Get("Request-Id")
	wantResponse(t, w, 500, `{"error":{"type":"api_error","message":"The request could not be authorized; retry later. Request `+id+`."}}`)
	h.get("/invoices")
	if h.authz.calls() != 2 || h.upstream.count() != 0 {
		t.Fatalf("an error was cached or let through: authorizer %d calls, upstream %d", h.authz.calls(), h.upstream.count())
	}

	// A response API Gateway cannot use is its configuration error.
	for name, resp := range map[string]events.APIGatewayCustomAuthorizerResponse{
		"no principal": {PolicyDocument: policy.Document([]string{arnPrefix + "*"}, nil)},
		"no policy":    {PrincipalID: "key_x"},
		"object in context": {PrincipalID: "key_x", PolicyDocument: policy.Document([]string{arnPrefix + "*"}, nil),
			Context: map[string]any{"tenant": map[string]string{"id": "acme"}}},
	} {
		h.authz.answer = func(events.APIGatewayCustomAuthorizerRequestTypeRequest) (events.APIGatewayCustomAuthorizerResponse, error) {
			return resp, nil
		}
		if w := h.get("/invoices"); w.Code != 500 || h.upstream.count() != 0 {
			t.Errorf("%s: %d, upstream %d", name, w.Code, h.upstream.count())
		}
	}
}

func TestDenyRendersTheContextsError(t *testing.T) {
	h := newHarness(t, nil)
	h.authz.answer = decision([]string{"GET/invoices", "GET/invoices/*"}, []string{"GET/invoices/*/refunds"}, nil)
	wantResponse(t, h.get("/invoices/inv_1"), 200, "")
	// The cached policy decides other routes.
	wantResponse(t, h.do("POST", "/invoices", "192.0.2.1:1234", nil), 403,
		`{"error":{"type":"forbidden","code":"insufficient_scope","message":"This API key does not have the scope this route requires."}}`)
	if h.authz.calls() != 1 || h.upstream.count() != 1 {
		t.Fatalf("authorizer %d calls, upstream %d", h.authz.calls(), h.upstream.count())
	}

	h.authz.answer = decision(nil, []string{"*"}, map[string]any{"error_code": "ip_not_allowed", "error_message": "This API key may not be used from this IP address."})
	wantResponse(t, h.do("GET", "/invoices", "192.0.2.9:1234", nil), 403,
		`{"error":{"type":"forbidden","code":"ip_not_allowed","message":"This API key may not be used from this IP address."}}`)
}

func TestThrottling(t *testing.T) {
	h := newHarness(t, nil) // default tier: 60 per minute, burst 10
	for i := range 10 {
		if w := h.get("/invoices"); w.Code != 200 {
			t.Fatalf("request %d within the burst: %d", i+1, w.Code)
		}
	}
	w := h.get("/invoices")
	wantResponse(t, w, 429, `{"error":{"type":"rate_limited","code":"rate_limited","message":"Too many requests for this API key; retry after the Retry-After delay."}}`)
	if got := w.Header().Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After %q", got)
	}
	if h.upstream.count() != 10 || h.authz.calls() != 1 {
		t.Fatalf("upstream %d, authorizer %d: throttling applies to cached decisions", h.upstream.count(), h.authz.calls())
	}

	h.clk.Advance(time.Second) // one token at one per second
	wantResponse(t, h.get("/invoices"), 200, "")
	wantResponse(t, h.get("/invoices"), 429, "")

	h.clk.Advance(time.Hour) // the bucket holds no more than the burst
	for range 10 {
		wantResponse(t, h.get("/invoices"), 200, "")
	}
	wantResponse(t, h.get("/invoices"), 429, "")

	// Another tier is another usage plan, with a full bucket of its own.
	if err := h.gw.Provision(t.Context(), identity, "standard"); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		wantResponse(t, h.get("/invoices"), 200, "")
	}
	wantResponse(t, h.get("/invoices"), 429, "")
}

func TestUnprovisionedIdentityIsRefused(t *testing.T) {
	h := newHarness(t, nil)
	if err := h.gw.Remove(t.Context(), identity); err != nil {
		t.Fatal(err)
	}
	// INVALID_API_KEY: keyward configures none, so DEFAULT_4XX renders it.
	wantResponse(t, h.get("/invoices"), 403, `{"error":{"type":"invalid_request","message":"Forbidden"}}`)
	if h.upstream.count() != 0 {
		t.Fatal("an unprovisioned identity reached the upstream")
	}
	if err := h.gw.Provision(t.Context(), identity, "high"); err != nil {
		t.Fatal(err)
	}
	wantResponse(t, h.get("/invoices"), 200, "")
	if err := h.gw.Provision(t.Context(), identity, "platinum"); err == nil {
		t.Fatal("an unknown tier was accepted")
	}
}

func TestUpstreamGetsTheCallerNeverTheKey(t *testing.T) {
	h := newHarness(t, nil)
	w := h.do("GET", "/invoices/inv_1?limit=2", "192.0.2.1:1234", http.Header{
		"X-Keyward-Tenant-Id": {"evil"},
		"X-Keyward-Admin":     {"true"},
		"Accept":              {"application/json"},
	})
	wantResponse(t, w, 200, `{"ok":true}`)
	r := h.upstream.last()
	want := map[string]string{"X-Keyward-Tenant-Id": "acme", "X-Keyward-Key-Id": "key_AbCdEfGhIjKl",
		"X-Keyward-Environment": "live", "X-Keyward-Scopes": "invoices:read keys:read", "Accept": "application/json"}
	for k, v := range want {
		if got := r.Header.Values(k); len(got) != 1 || got[0] != v {
			t.Errorf("upstream %s: %q, want %q", k, got, v)
		}
	}
	if got := r.Header.Values("Authorization"); len(got) != 1 || got[0] != config.RedactedAuthorization {
		t.Errorf("upstream received Authorization %q, want only %q", got, config.RedactedAuthorization)
	}
	if _, ok := r.Header["X-Keyward-Admin"]; ok {
		t.Errorf("upstream received X-Keyward-Admin")
	}
	if r.URL.Path != "/invoices/inv_1" || r.URL.RawQuery != "limit=2" {
		t.Errorf("upstream got %s", r.URL)
	}
}

// TestOperatorRoutes: the operator token stands in for SigV4, and is
// refused as API Gateway refuses unsigned (MISSING_AUTHENTICATION_TOKEN),
// malformed (INCOMPLETE_SIGNATURE) and badly signed (INVALID_SIGNATURE)
// requests, with a 403 that says so.
func TestOperatorRoutes(t *testing.T) {
	h := newHarness(t, nil)
	const (
		unsigned = `{"error":{"type":"forbidden","code":"signature_required","message":"This route is for the platform's operators: sign the request with AWS SigV4 (locally, send the operator token)."}}`
		badToken = `{"error":{"type":"forbidden","code":"invalid_signature","message":"The request's AWS SigV4 signature (locally, the operator token) is not valid."}}`
	)
	for auth, body := range map[string]string{"": unsigned, "Basic op-secret": unsigned, "Bearer wrong": badToken, "Bearer op-secret ": badToken} {
		wantResponse(t, h.do("POST", "/v1/tenants", "192.0.2.1:1234", http.Header{"Authorization": {auth}}), 403, body)
	}
	wantResponse(t, h.do("POST", "/v1/tenants", "192.0.2.1:1234", http.Header{"Authorization": {"Bearer op-secret", "Bearer op-secret"}}), 403, unsigned)
	if h.admin.count() != 0 {
		t.Fatal("a refused operator request reached the admin API")
	}
	wantResponse(t, h.do("POST", "/v1/tenants/acme/offboard", "192.0.2.1:1234", http.Header{"Authorization": {"bearer op-secret"}}), 200, "")
	if h.admin.count() != 1 || h.authz.calls() != 0 {
		t.Fatalf("admin %d, authorizer %d", h.admin.count(), h.authz.calls())
	}

	// No operator token configured: no operator.
	h = newHarness(t, func(c *gateway.Config) { c.OperatorToken = "" })
	wantResponse(t, h.do("POST", "/v1/tenants", "192.0.2.1:1234", http.Header{"Authorization": {"Bearer "}}), 403, badToken)
}

// TestOperatorTokenGuessesAreThrottled: failed attempts are limited per
// client address; the right token from another address is unaffected.
func TestOperatorTokenGuessesAreThrottled(t *testing.T) {
	h := newHarness(t, nil)
	guess := http.Header{"Authorization": {"Bearer guess"}}
	for range 10 {
		wantResponse(t, h.do("POST", "/v1/tenants", "192.0.2.9:1234", guess), 403, "")
	}
	w := h.do("POST", "/v1/tenants", "192.0.2.9:1234", guess)
	wantResponse(t, w, 429, "")
	if w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), "operator token") {
		t.Fatalf("throttled guess: %v %s", w.Header(), w.Body)
	}
	// The right token from the throttled address waits too: it cannot be
	// told from a guess until it is checked.
	wantResponse(t, h.do("POST", "/v1/tenants", "192.0.2.9:1234", http.Header{"Authorization": {"Bearer op-secret"}}), 429, "")
	wantResponse(t, h.do("POST", "/v1/tenants", "192.0.2.10:1234", http.Header{"Authorization": {"Bearer op-secret"}}), 200, "")
	h.clk.Advance(6 * time.Second)
	wantResponse(t, h.do("POST", "/v1/tenants", "192.0.2.9:1234", http.Header{"Authorization": {"Bearer op-secret"}}), 200, "")
}

func TestPublicRouteSkipsTheAuthorizer(t *testing.T) {
	h := newHarness(t, nil)
	wantResponse(t, h.do("POST", "/v1/leaks/github", "192.0.2.1:1234", http.Header{"Authorization": {""}}), 200, "")
	if h.admin.count() != 1 || h.authz.calls() != 0 {
		t.Fatalf("admin %d, authorizer %d", h.admin.count(), h.authz.calls())
	}
}

func TestAccessLog(t *testing.T) {
	h := newHarness(t, nil)
	ok := h.get("/invoices/inv_1")
	h.get("/nope")
	lines := strings.Split(strings.TrimSpace(h.logs.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d log lines, want one per request:\n%s", len(lines), h.logs)
	}
	var first, second map[string]any
	_ = json.Unmarshal([]byte(lines[0]), &first)
	_ = json.Unmarshal([]byte(lines[1]), &second)
	want := map[string]any{"method": "GET", "path": "/invoices/inv_1", "route": "GET /invoices/{id}", "status": float64(200),
		"request_id": ok.Header().Get("Request-Id"), "principal": "key_AbCdEfGhIjKl"}
	for k, v := range want {
		if first[k] != v {
			t.Errorf("log %s = %v, want %v", k, first[k], v)
		}
	}
	if _, ok := first["latency_ms"]; !ok {
		t.Error("no latency_ms")
	}
	if second["status"] != float64(404) || second["gateway_response"] != "NO_ROUTE" || second["route"] != "" {
		t.Errorf("route miss logged as %v", second)
	}
	if strings.Contains(h.logs.String(), strings.TrimPrefix(bearer, "Bearer ")) {
		t.Error("the key reached the access log")
	}
}

func TestEcho(t *testing.T) {
	r := httptest.NewRequest("GET", "/invoices/inv_1?expand=lines&expand=customer", nil)
	r.Header.Set("X-Keyward-Tenant-Id", "acme")
	r.Header.Set("X-Keyward-Key-Id", "key_AbCdEfGhIjKl")
	r.Header.Set("X-Keyward-Environment", "test")
	r.Header.Set("X-Keyward-Scopes", "invoices:read")
	r.Header.Set("Authorization", config.RedactedAuthorization)
	w := httptest.NewRecorder()
	gateway.Echo().ServeHTTP(w, r)
	want := `{"method":"GET","path":"/invoices/inv_1","query":{"expand":["lines","customer"]},` +
		`"authorizer":{"environment":"test","key_id":"key_AbCdEfGhIjKl","scopes":"invoices:read","tenant_id":"acme"},"authorization":"keyward-verified"}` + "\n"
	if w.Code != 200 || w.Body.String() != want || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("echo: %d %s", w.Code, w.Body)
	}
}

func TestProxyForwardsToTheService(t *testing.T) {
	type seen struct {
		method, url, body string
		header            http.Header
	}
	received := make(chan seen, 1)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		received <- seen{r.Method, r.URL.String(), string(b), r.Header.Clone()}
		w.Header().Set("X-Backend", "yes")
		w.WriteHeader(201)
		_, _ = io.WriteString(w, `{"id":"inv_9"}`)
	}))
	defer backend.Close()
	u, _ := url.Parse(backend.URL + "/api")
	h := newHarness(t, func(c *gateway.Config) {
		c.Upstream = gateway.Proxy(u, c.Gateway, c.Logger, gateway.IntegrationTimeout)
	})
	front := httptest.NewServer(h.gw)
	defer front.Close()

	req, _ := http.NewRequest("POST", front.URL+"/invoices?draft=true", strings.NewReader(`{"amount":100}`))
	req.Header.Set("Authorization", bearer)
	req.Header.Set("X-Keyward-Tenant-Id", "evil")
	resp, err := front.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 201 || string(out) != `{"id":"inv_9"}` || resp.Header.Get("X-Backend") != "yes" || resp.Header.Get("Request-Id") == "" {
		t.Fatalf("through the proxy: %d %s %v", resp.StatusCode, out, resp.Header)
	}
	got := <-received
	if got.method != "POST" || got.url != "/api/invoices?draft=true" || got.body != `{"amount":100}` {
		t.Errorf("backend got %s %s body %s", got.method, got.url, got.body)
	}
	if got.header.Get("Authorization") != config.RedactedAuthorization || got.header.Get("X-Keyward-Tenant-Id") != "acme" || got.header.Get("X-Forwarded-For") != "127.0.0.1" {
		t.Errorf("backend headers %v", got.header)
	}
}

func TestNewValidates(t *testing.T) {
	gw := loadGateway(t)
	base := gateway.Config{Routes: routes(t), Gateway: gw, Authorizer: &stub{}, Admin: (&function{}).invoke, Upstream: gateway.Echo()}
	if _, err := gateway.New(base); err != nil {
		t.Fatal(err)
	}
	noAuthz := base
	noAuthz.Authorizer = nil
	noAdmin := base
	noAdmin.Admin = nil
	badTTL := base
	badTTL.Gateway.Authorizer.CacheTTLSeconds = 7200
	tokenWithoutARN := base
	tokenWithoutARN.OperatorToken = "op-secret"
	for name, cfg := range map[string]gateway.Config{"no authorizer": noAuthz, "no admin": noAdmin, "bad TTL": badTTL, "operator token without ARN": tokenWithoutARN} {
		if _, err := gateway.New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// unreachableUpstream is a harness whose upstream is a proxy to an address
// nothing listens on.
func unreachableUpstream(t *testing.T) *harness {
	t.Helper()
	down := httptest.NewServer(http.NotFoundHandler())
	u, _ := url.Parse(down.URL)
	down.Close() // nothing listens there now
	return newHarness(t, func(c *gateway.Config) {
		c.Upstream = gateway.Proxy(u, c.Gateway, c.Logger, gateway.IntegrationTimeout)
	})
}

func TestProxyUnreachableUpstream(t *testing.T) {
	h := unreachableUpstream(t)
	w := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "/invoices", nil)
	r.Header.Set("Authorization", "Bearer x")
	h.gw.ServeHTTP(w, r)
	id := w.Header().Get("Request-Id")
	if w.Code != http.StatusGatewayTimeout || w.Header().Get("Content-Type") != "application/json" ||
		!strings.Contains(w.Body.String(), `"type":"api_error"`) || !strings.Contains(w.Body.String(), id) {
		t.Fatalf("unreachable upstream: %d %s", w.Code, w.Body)
	}
	if !strings.Contains(h.logs.String(), "upstream failed") {
		t.Fatal("the cause was not logged")
	}
}

// TestClientCannotPoseAsTheGateway: neither another spelling of the
// gateway's headers nor a Connection header naming them gets past it.
func TestClientCannotPoseAsTheGateway(t *testing.T) {
	var got http.Header
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r.Header.Clone() }))
	defer backend.Close()
	u, _ := url.Parse(backend.URL)
	h := newHarness(t, func(c *gateway.Config) {
		c.Upstream = gateway.Proxy(u, c.Gateway, c.Logger, gateway.IntegrationTimeout)
	})
	front := httptest.NewServer(h.gw)
	defer front.Close()
	req, _ := http.NewRequest("GET", front.URL+"/invoices", nil)
	req.Header.Set("Authorization", "Bearer x")
	req.Header.Set("Connection", "X-Keyward-Tenant-Id, X-Keyward-Scopes")
	req.Header["X_Keyward_Tenant_Id"] = []string{"victim"}
	req.Header["x-keyward-scopes"] = []string{"*"}
	req.Header["Authorization_"] = []string{"x"}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got.Get("X-Keyward-Tenant-Id") == "" || got.Get("X-Keyward-Scopes") == "" {
		t.Fatalf("the gateway's headers were dropped: %v", got)
	}
	for name, vals := range got {
		n := strings.ToLower(strings.ReplaceAll(name, "_", "-"))
		if strings.Contains(strings.Join(vals, ","), "victim") || (n == "authorization" && (name != "Authorization" || len(vals) != 1 || vals[0] != config.RedactedAuthorization)) {
			t.Fatalf("the upstream received %s: %v", name, vals)
		}
	}
}

// TestDotSegmentsAndEncodedSlashesAreRefused: dot segments are refused as
// ambiguous (400), an encoded slash matches no route (404); neither reaches
// the authorizer.
func TestDotSegmentsAndEncodedSlashesAreRefused(t *testing.T) {
	h := newHarness(t, nil)
	for path, want := range map[string]int{"/invoices/..": 400, "/invoices/%2e%2e": 400, "/invoices/.": 400, "/invoices/a%2Fb": 404} {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("GET", path, nil)
		r.Header.Set("Authorization", "Bearer x")
		h.gw.ServeHTTP(w, r)
		if w.Code != want {
			t.Errorf("GET %s: %d, want %d", path, w.Code, want)
		}
	}
	if h.authz.calls() != 0 {
		t.Fatal("a refused path reached the authorizer")
	}
}

// TestRepeatedIdentityHeadersAreNeverCached: a credential sent twice is
// decided afresh (the authorizer refuses two), never keyed by every value.
func TestRepeatedIdentityHeadersAreNeverCached(t *testing.T) {
	h := newHarness(t, nil)
	for k := 1; k <= 40; k++ {
		vals := make([]string, k)
		for i := range vals {
			vals[i] = bearer
		}
		h.do("GET", "/invoices", "192.0.2.1:1234", http.Header{"Authorization": vals})
	}
	// One decision cached for the single header; every repeated one asked.
	if entries, _ := h.gw.CacheSize(); entries != 1 || h.authz.calls() != 40 {
		t.Fatalf("%d cache entries, %d authorizer calls; want 1 and 40", entries, h.authz.calls())
	}
}

// TestRequestHeadLimit: API Gateway's 10,240 bytes of request line and
// headers, refused in the envelope before anything runs.
func TestRequestHeadLimit(t *testing.T) {
	h := newHarness(t, nil)
	vals := make([]string, 200) // 200 × 80 bytes
	for i := range vals {
		vals[i] = bearer
	}
	w := h.do("GET", "/invoices", "192.0.2.1:1234", http.Header{"Authorization": vals})
	if w.Code != http.StatusRequestHeaderFieldsTooLarge || !strings.Contains(w.Body.String(), `"type":"invalid_request"`) || !strings.Contains(w.Body.String(), "10240") {
		t.Fatalf("oversized head: %d %s", w.Code, w.Body)
	}
	w = h.do("GET", "/invoices", "192.0.2.1:1234", http.Header{"X-Pad": {strings.Repeat("p", gateway.MaxHead-300)}})
	if w.Code != http.StatusOK {
		t.Fatalf("a head just within the limit: %d %s", w.Code, w.Body)
	}
	if h.authz.calls() != 1 {
		t.Fatalf("%d authorizer calls, want only the one within the limit", h.authz.calls())
	}
}

// TestCacheIsBoundedInBytes: many distinct credentials, each as large as
// the head limit allows, never hold more than the cache's byte bound;
// expired entries go first.
func TestCacheIsBoundedInBytes(t *testing.T) {
	h := newHarness(t, nil)
	long := strings.Repeat("x", gateway.MaxHead-500)
	for i := range 3000 {
		h.do("GET", "/invoices", "192.0.2.1:1234", http.Header{"Authorization": {fmt.Sprintf("Bearer %d%s", i, long)}})
		if _, bytes := h.gw.CacheSize(); bytes > gateway.MaxCacheBytes {
			t.Fatalf("cache holds %d bytes after %d requests, over %d", bytes, i+1, gateway.MaxCacheBytes)
		}
	}
	// Once the cache is full of expired entries, the next decision
	// evicts them and keeps the live ones.
	h.clk.Advance(time.Duration(loadGateway(t).Authorizer.CacheTTLSeconds) * time.Second)
	fresh := func(i int) http.Header {
		return http.Header{"Authorization": {fmt.Sprintf("Bearer fresh%d%s", i, long)}}
	}
	for i := range 5 {
		h.do("GET", "/invoices", "192.0.2.1:1234", fresh(i))
	}
	for i := range 3000 {
		before, _ := h.gw.CacheSize()
		h.do("GET", "/invoices", "192.0.2.1:1234", http.Header{"Authorization": {fmt.Sprintf("Bearer later%d%s", i, long)}})
		if after, _ := h.gw.CacheSize(); after < before {
			break
		}
	}
	calls := h.authz.calls()
	for i := range 5 {
		h.do("GET", "/invoices", "192.0.2.1:1234", fresh(i))
	}
	if h.authz.calls() != calls {
		t.Fatalf("evicting expired entries dropped live ones: %d authorizer calls for 5 cached decisions", h.authz.calls()-calls)
	}
}

// TestAmbiguousPathsAreRefused: path forms a backend could resolve to
// another route than the one authorized never get past the gateway.
func TestAmbiguousPathsAreRefused(t *testing.T) {
	h := newHarness(t, nil)
	for _, path := range []string{"/invoices/..%5ccustomers", "/invoices/..;", "/invoices/a;b", "/invoices/a%252F..%252Fcustomers",
		"/invoices/%00", "/invoices/a%5Cb", "/invoices/%25", "/invoices/%c0%ae%c0%ae", "/invoices/..%c0%af", "/invoices/..%20",
		"/invoices/...", "/invoices/.%20", "/invoices/a%0ab", "/invoices/a%09b", "/invoices/a%e2%80%a8b", "/invoices/..%ff", "/invoices/a%7fb"} {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("GET", path, nil)
		r.Header.Set("Authorization", bearer)
		h.gw.ServeHTTP(w, r)
		if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), `"type":"invalid_request"`) {
			t.Errorf("GET %s: %d %s, want 400 in the envelope", path, w.Code, w.Body)
		}
	}
	if h.authz.calls() != 0 || h.upstream.count() != 0 {
		t.Fatalf("an ambiguous path reached the authorizer (%d) or the upstream (%d)", h.authz.calls(), h.upstream.count())
	}
}

// TestPayloadLimit: a body over API Gateway's 10 MB gets its 413.
func TestPayloadLimit(t *testing.T) {
	h := newHarness(t, nil)
	r := httptest.NewRequest("POST", "/invoices", strings.NewReader("{}"))
	r.ContentLength = gateway.MaxPayload + 1
	r.Header.Set("Authorization", bearer)
	w := httptest.NewRecorder()
	h.gw.ServeHTTP(w, r)
	if w.Code != http.StatusRequestEntityTooLarge || h.upstream.count() != 0 {
		t.Fatalf("oversized body: %d %s", w.Code, w.Body)
	}
}

// TestProxyTimesOut: an upstream slower than the integration timeout gets
// INTEGRATION_TIMEOUT, not a hung client.
func TestProxyTimesOut(t *testing.T) {
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(release)
	u, _ := url.Parse(slow.URL)
	const timeout = 100 * time.Millisecond
	h := newHarness(t, func(c *gateway.Config) { c.Upstream = gateway.Proxy(u, c.Gateway, c.Logger, timeout) })
	start := time.Now()
	w := h.get("/invoices")
	if w.Code != http.StatusGatewayTimeout || time.Since(start) < timeout || !strings.Contains(h.logs.String(), "INTEGRATION_TIMEOUT") {
		t.Fatalf("slow upstream: %d %s after %v", w.Code, w.Body, time.Since(start))
	}
}

// TestUsageOfKeyRequests: every request served with a key, allowed or
// denied, reaches the usage with its key, tenant, route (the resource
// path, not the request's), status, address and latency; a request
// without a key, or refused before a decision, does not.
func TestUsageOfKeyRequests(t *testing.T) {
	var got []usage.Request
	h := newHarness(t, func(c *gateway.Config) {
		c.Gateway.Authorizer.CacheTTLSeconds = 0
		c.Usage = func(r usage.Request) { got = append(got, r) }
	})
	wantResponse(t, h.do("GET", "/invoices/inv_1?limit=2", "203.0.113.9:5555", nil), 200, "")
	h.authz.answer = decision(nil, []string{"*"}, nil)
	wantResponse(t, h.do("GET", "/invoices/inv_2", "203.0.113.9:5555", nil), 403, "")
	h.authz.answer = fail(errors.New("Unauthorized"))
	wantResponse(t, h.do("GET", "/invoices", "203.0.113.9:5555", nil), 401, unauthorizedBody)
	wantResponse(t, h.get("/nope"), 404, notFoundBody)
	if len(got) != 2 {
		t.Fatalf("usage of %d requests, want the allowed and the denied one: %+v", len(got), got)
	}
	want := usage.Request{Time: t0, KeyID: "AbCdEfGhIjKl", TenantID: "acme", Method: "GET", Route: "/invoices/{id}", Status: 200, SourceIP: "203.0.113.9"}
	if got[0] != want || got[1].Status != 403 {
		t.Fatalf("usage %+v, want %+v then a 403", got, want)
	}
}
