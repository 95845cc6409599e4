package gateway_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"github.com/keyward/keyward/pkg/config"
	"github.com/keyward/keyward/pkg/localstack/gateway"
	"github.com/keyward/keyward/pkg/route"
)

const appOrigin = "https://app.example.com"

// wantCORS checks the headers a page needs to read an answer.
func wantCORS(t *testing.T, h http.Header, origin string) {
	t.Helper()
	if got := h.Values("Access-Control-Allow-Origin"); len(got) != 1 || got[0] != origin {
		t.Errorf("Access-Control-Allow-Origin %q, want %q", got, origin)
	}
	if !strings.Contains(h.Get("Vary"), "Origin") {
		t.Errorf("Vary %q lacks Origin", h.Get("Vary"))
	}
}

// TestPreflightIsAnsweredByTheGateway: a preflight on the browser endpoint
// reaches neither the authorizer nor the upstream, and allows exactly the
// methods of the resource the path reaches.
func TestPreflightIsAnsweredByTheGateway(t *testing.T) {
	h := newHarness(t, nil)
	for path, methods := range map[string]string{"/browser/invoices": "GET, POST", "/browser/invoices/inv_1": "GET", "/browser/customers": "GET, POST"} {
		w := h.do("OPTIONS", path, "192.0.2.1:1234", http.Header{"Authorization": {""}, "Origin": {appOrigin},
			"Access-Control-Request-Method": {"GET"}, "Access-Control-Request-Headers": {"authorization"}})
		if w.Code != config.PreflightStatus || w.Body.Len() != 0 {
			t.Fatalf("preflight %s: %d %s", path, w.Code, w.Body)
		}
		wantCORS(t, w.Header(), appOrigin)
		want := map[string]string{"Access-Control-Allow-Methods": methods, "Access-Control-Allow-Headers": "Authorization, Content-Type",
			"Access-Control-Max-Age": "600"}
		for k, v := range want {
			if got := w.Header().Get(k); got != v {
				t.Errorf("preflight %s: %s %q, want %q", path, k, got, v)
			}
		}
		if w.Header().Get("Access-Control-Allow-Credentials") != "" {
			t.Errorf("preflight %s allows credentials", path)
		}
	}
	if h.authz.calls() != 0 || h.upstream.count() != 0 {
		t.Fatalf("a preflight reached the authorizer (%d) or the upstream (%d)", h.authz.calls(), h.upstream.count())
	}
	// A path no route has, and the server endpoint, have no preflight:
	// the no-route answer, which a page can read.
	for _, path := range []string{"/browser/nope", "/invoices", "/v1/keys"} {
		w := h.do("OPTIONS", path, "192.0.2.1:1234", http.Header{"Origin": {appOrigin}})
		wantResponse(t, w, 404, notFoundBody)
		wantCORS(t, w.Header(), appOrigin)
	}
}

// TestEveryGatewayAnswerCarriesCORS: pages can read the gateway's errors
// (401, 403, 429, 5xx, no route), with the request's origin, never "*";
// a request without an Origin gets no Access-Control-Allow-Origin.
func TestEveryGatewayAnswerCarriesCORS(t *testing.T) {
	h := newHarness(t, func(c *gateway.Config) { c.Gateway.Authorizer.CacheTTLSeconds = 0 })
	origin := http.Header{"Origin": {appOrigin}}
	h.authz.answer = fail(errors.New("Unauthorized"))
	wantCORS(t, h.do("GET", "/browser/invoices", "192.0.2.1:1234", origin).Header(), appOrigin)
	h.authz.answer = decision(nil, []string{"*"}, map[string]any{"error_code": "origin_not_allowed", "error_message": "No."})
	w := h.do("GET", "/browser/invoices", "192.0.2.1:1234", origin)
	wantResponse(t, w, 403, `{"error":{"type":"forbidden","code":"origin_not_allowed","message":"No."}}`)
	wantCORS(t, w.Header(), appOrigin)
	if w.Header().Get("Access-Control-Expose-Headers") != "Retry-After" {
		t.Errorf("expose headers %q", w.Header().Get("Access-Control-Expose-Headers"))
	}
	h.authz.answer = fail(errors.New("the store is down"))
	wantCORS(t, h.do("GET", "/browser/invoices", "192.0.2.1:1234", origin).Header(), appOrigin)
	wantCORS(t, h.do("GET", "/browser/nope", "192.0.2.1:1234", origin).Header(), appOrigin)
	// The same headers on the server endpoint's gateway responses: API
	// Gateway's gateway responses are API-wide.
	wantCORS(t, h.do("GET", "/invoices", "192.0.2.1:1234", origin).Header(), appOrigin)
	if got := h.do("GET", "/browser/invoices", "192.0.2.1:1234", nil).Header().Values("Access-Control-Allow-Origin"); len(got) != 0 {
		t.Errorf("no Origin, yet Access-Control-Allow-Origin %q", got)
	}
	// A refused path form, and the usage plan's 429.
	w = h.do("GET", "/browser/invoices;x", "192.0.2.1:1234", origin)
	wantResponse(t, w, 400, "")
	wantCORS(t, w.Header(), appOrigin)
	h.authz.answer = allowAll()
	for w.Code != http.StatusTooManyRequests {
		if w = h.do("GET", "/browser/invoices", "192.0.2.1:1234", origin); w.Code != 200 && w.Code != http.StatusTooManyRequests {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
	}
	wantCORS(t, w.Header(), appOrigin)
}

// TestUpstreamFailureCarriesCORS: the gateway's 504 for an upstream that
// cannot be reached is a gateway response too.
func TestUpstreamFailureCarriesCORS(t *testing.T) {
	h := unreachableUpstream(t)
	w := h.do("GET", "/browser/invoices", "192.0.2.1:1234", http.Header{"Origin": {appOrigin}})
	wantResponse(t, w, http.StatusGatewayTimeout, "")
	wantCORS(t, w.Header(), appOrigin)
}

// TestBrowserEndpointCachesByOrigin: the browser endpoint's decisions are
// cached by Origin as well, apart from the server endpoint's; a request
// without an Origin is refused there unseen.
func TestBrowserEndpointCachesByOrigin(t *testing.T) {
	h := newHarness(t, nil)
	wantResponse(t, h.get("/browser/invoices"), 401, unauthorizedBody)
	if h.authz.calls() != 0 {
		t.Fatalf("the authorizer was called without an Origin")
	}
	from := func(origin string) http.Header { return http.Header{"Origin": {origin}} }
	h.do("GET", "/browser/invoices", "192.0.2.1:1234", from(appOrigin))
	h.do("GET", "/browser/invoices/inv_1", "192.0.2.1:1234", from(appOrigin))
	if h.authz.calls() != 1 {
		t.Fatalf("%d authorizer calls for one origin, want 1", h.authz.calls())
	}
	h.do("GET", "/browser/invoices", "192.0.2.1:1234", from("https://evil.example"))
	if h.authz.calls() != 2 {
		t.Fatalf("another origin was answered from the cache")
	}
	h.do("GET", "/invoices", "192.0.2.1:1234", from(appOrigin))
	if h.authz.calls() != 3 {
		t.Fatalf("the server endpoint was answered from the browser endpoint's cache")
	}
	ev := h.authz.last()
	if ev.Resource != "/invoices" {
		t.Errorf("server endpoint event resource %q", ev.Resource)
	}
	h.do("GET", "/browser/invoices/inv_1", "192.0.2.2:1234", from("https://evil.example"))
	ev = h.authz.last()
	if ev.Resource != "/browser/invoices/{id}" || !strings.HasSuffix(ev.MethodArn, "/GET/browser/invoices/inv_1") || ev.Headers["Origin"] != "https://evil.example" {
		t.Errorf("browser endpoint event: %s %s %v", ev.Resource, ev.MethodArn, ev.Headers)
	}
}

// TestBrowserEndpointForwardsTheCheckedOrigin: the upstream serves both
// endpoints at the same paths, and on the browser endpoint learns the
// origin the authorizer checked, never one the client wrote.
func TestBrowserEndpointForwardsTheCheckedOrigin(t *testing.T) {
	h := newHarness(t, nil)
	h.authz.answer = decision([]string{"*"}, nil, map[string]any{"origin": appOrigin})
	w := h.do("GET", "/browser/invoices/inv_1?limit=2", "192.0.2.1:1234", http.Header{"Origin": {appOrigin}, "X-Keyward-Origin": {"https://evil.example"}})
	wantResponse(t, w, 200, `{"ok":true}`)
	r := h.upstream.last()
	if r.URL.Path != "/invoices/inv_1" || r.URL.RawQuery != "limit=2" {
		t.Errorf("upstream got %s", r.URL)
	}
	if got := r.Header.Values(config.OriginHeader); len(got) != 1 || got[0] != appOrigin {
		t.Errorf("upstream %s %q, want the checked origin", config.OriginHeader, got)
	}
	// The server endpoint passes no origin on.
	h.do("GET", "/invoices", "192.0.2.1:1234", http.Header{"X-Keyward-Origin": {"https://evil.example"}})
	if got := h.upstream.last().Header.Values(config.OriginHeader); len(got) != 0 {
		t.Errorf("server endpoint upstream got %s %q", config.OriginHeader, got)
	}
}

// TestEchoAnswersCORS: the built-in upstream does what a deployer's must.
func TestEchoAnswersCORS(t *testing.T) {
	h := newHarness(t, func(c *gateway.Config) { c.Upstream = gateway.Echo() })
	h.authz.answer = func(ev events.APIGatewayCustomAuthorizerRequestTypeRequest) (events.APIGatewayCustomAuthorizerResponse, error) {
		return decision([]string{"*"}, nil, map[string]any{"origin": ev.Headers["Origin"]})(ev)
	}
	w := h.do("GET", "/browser/invoices", "192.0.2.1:1234", http.Header{"Origin": {appOrigin}})
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"origin":"`+appOrigin+`"`) || !strings.Contains(w.Body.String(), `"path":"/invoices"`) {
		t.Fatalf("echo: %d %s", w.Code, w.Body)
	}
	wantCORS(t, w.Header(), appOrigin)
}

// TestBrowserSubtreeIsItsOwn: as in API Gateway, whose /browser resource
// wins over a server route's leading parameter, a path below /browser
// never reaches a server route, nor does its preflight list one's methods.
func TestBrowserSubtreeIsItsOwn(t *testing.T) {
	h := newHarness(t, func(c *gateway.Config) {
		rt := config.RouteTable{Routes: []config.Route{{Method: "GET", Path: "/{tenant}/invoices", Scope: "invoices:read"}}}
		table, err := route.Compile(config.APIRoutes(rt)...)
		if err != nil {
			t.Fatal(err)
		}
		c.Routes = table
	})
	origin := http.Header{"Origin": {appOrigin}}
	wantResponse(t, h.do("GET", "/browser/invoices", "192.0.2.1:1234", origin), 404, notFoundBody)
	wantResponse(t, h.do("OPTIONS", "/browser/invoices", "192.0.2.1:1234", origin), 404, notFoundBody)
	if h.authz.calls() != 0 || h.upstream.count() != 0 {
		t.Fatalf("a /browser path reached a server route")
	}
	w := h.do("OPTIONS", "/browser/acme/invoices", "192.0.2.1:1234", origin)
	if w.Code != config.PreflightStatus || w.Header().Get("Access-Control-Allow-Methods") != "GET" {
		t.Fatalf("preflight of a browser route: %d %v", w.Code, w.Header())
	}
	wantResponse(t, h.do("GET", "/acme/invoices", "192.0.2.1:1234", nil), 200, `{"ok":true}`)
}
