package config

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestShippedGatewayIsValid(t *testing.T) {
	g, err := LoadGateway()
	if err != nil {
		t.Fatal(err)
	}
	b := g.BrowserAuthorizer()
	if !slices.Contains(b.IdentitySources, IdentityOrigin) || b.CacheTTLSeconds != g.Authorizer.CacheTTLSeconds {
		t.Errorf("the browser endpoint's authorizer %+v is not the server's keyed by Origin too", b)
	}
	if slices.Contains(g.Authorizer.IdentitySources, IdentityOrigin) {
		t.Error("BrowserAuthorizer changed the server endpoint's identity sources")
	}
	if !reflect.DeepEqual(g.Browser, DefaultBrowser) {
		t.Errorf("the shipped browser block %+v is not DefaultBrowser %+v", g.Browser, DefaultBrowser)
	}
}

// TestGatewayFileWithoutBrowser: a gateway.json written before the
// browser endpoint gets its defaults.
func TestGatewayFileWithoutBrowser(t *testing.T) {
	raw, err := files.ReadFile("gateway.json")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "browser")
	out, _ := json.Marshal(m)
	p := filepath.Join(t.TempDir(), "gateway.json")
	if err := os.WriteFile(p, out, 0o600); err != nil {
		t.Fatal(err)
	}
	g, err := GatewayFile(p)
	if err != nil || !reflect.DeepEqual(g.Browser, DefaultBrowser) {
		t.Fatalf("without a browser block: %v %+v", err, g.Browser)
	}
}

func TestGatewayValidation(t *testing.T) {
	base, err := LoadGateway()
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]func(g *Gateway){
		"ttl too long":            func(g *Gateway) { g.Authorizer.CacheTTLSeconds = 3601 },
		"no authorization source": func(g *Gateway) { g.Authorizer.IdentitySources = []string{IdentitySourceIP} },
		"cache without source ip": func(g *Gateway) { g.Authorizer.IdentitySources = []string{IdentityAuthorization} },
		"unknown identity source": func(g *Gateway) {
			g.Authorizer.IdentitySources = append(g.Authorizer.IdentitySources, "method.request.querystring.key")
		},
		"bad usage identity": func(g *Gateway) { g.UsageIdentity = "ip" },
		"no tiers":           func(g *Gateway) { g.RateLimitTiers = nil },
		"tier without burst": func(g *Gateway) { g.RateLimitTiers = []Tier{{Name: "x", RequestsPerMinute: 1}} },
		"missing response":   func(g *Gateway) { delete(g.GatewayResponses, "THROTTLED") },
		"unknown response":   func(g *Gateway) { g.GatewayResponses["WAF_FILTERED"] = GatewayResponse{Template: "{}"} },
		"template not json":  func(g *Gateway) { g.GatewayResponses["DEFAULT_4XX"] = GatewayResponse{Template: "{oops"} },
		"origin on the server endpoint": func(g *Gateway) {
			g.Authorizer.IdentitySources = append(g.Authorizer.IdentitySources, IdentityOrigin)
		},
		"preflight without authorization": func(g *Gateway) { g.Browser.AllowHeaders = []string{"Content-Type"} },
		"wildcard allowed header":         func(g *Gateway) { g.Browser.AllowHeaders = []string{"Authorization", "*"} },
		"header with a space":             func(g *Gateway) { g.Browser.ExposeHeaders = []string{"Retry After"} },
		"header with a quote":             func(g *Gateway) { g.Browser.ExposeHeaders = []string{"X-It's"} },
		"preflight cached too long":       func(g *Gateway) { g.Browser.MaxAgeSeconds = MaxPreflightAge + 1 },
		"response header hides CORS": func(g *Gateway) {
			g.GatewayResponses["THROTTLED"] = GatewayResponse{Template: "{}", Headers: map[string]string{"vary": "Accept"}}
		},
	}
	for name, edit := range cases {
		g := base
		g.Authorizer.IdentitySources = append([]string(nil), base.Authorizer.IdentitySources...)
		g.GatewayResponses = map[string]GatewayResponse{}
		for k, v := range base.GatewayResponses {
			g.GatewayResponses[k] = v
		}
		edit(&g)
		if err := g.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	off := base
	off.Authorizer = Authorizer{CacheTTLSeconds: 0, IdentitySources: []string{IdentityAuthorization}}
	if err := off.Validate(); err != nil {
		t.Errorf("caching off: %v", err)
	}
}

func TestRoutesFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "routes.json")
	os.WriteFile(good, []byte(`{"routes":[{"method":"GET","path":"/things","scope":"things:read"}]}`), 0o600)
	if rt, err := Routes(good); err != nil || len(rt.Routes) != 1 {
		t.Fatalf("Routes(file): %v %+v", err, rt)
	}
	for name, body := range map[string]string{
		"unknown field": `{"routes":[{"method":"GET","path":"/x","scope":"x:read","extra":1}]}`,
		"admin path":    `{"routes":[{"method":"GET","path":"/v1/keys","scope":"x:read"}]}`,
		"browser path":  `{"routes":[{"method":"GET","path":"/browser/x","scope":"x:read"}]}`,
		"trailing":      `{"routes":[]} {}`,
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".json")
		os.WriteFile(p, []byte(body), 0o600)
		if _, err := Routes(p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := Routes(filepath.Join(dir, "missing.json")); err == nil {
		t.Error("missing file accepted")
	}
}

func TestBrowserRoutes(t *testing.T) {
	b := BrowserRoutes(RouteTable{Routes: []Route{
		{Method: "GET", Path: "/", Scope: "x:read"},
		{Method: "GET", Path: "/invoices/{id}", Scope: "invoices:read"},
		{Method: "OPTIONS", Path: "/invoices", Scope: "invoices:read"},
	}})
	var got []string
	for _, r := range b.Routes {
		got = append(got, r.Method+" "+r.Path+" "+UpstreamPath(r.Path))
	}
	want := []string{"GET /browser /", "GET /browser/invoices/{id} /invoices/{id}"}
	if !slices.Equal(got, want) {
		t.Errorf("browser routes %q, want %q (OPTIONS is the preflight there)", got, want)
	}
	for path, want := range map[string]bool{"/browser": true, "/browser/x": true, "/browsers": false, "/x/browser": false} {
		if OnBrowserEndpoint(path) != want {
			t.Errorf("OnBrowserEndpoint(%q) = %v", path, !want)
		}
	}
}

func TestPreflightHeaders(t *testing.T) {
	g, err := LoadGateway()
	if err != nil {
		t.Fatal(err)
	}
	h := g.Browser.PreflightHeaders([]string{"GET", "POST"})
	want := map[string]string{
		"Access-Control-Allow-Origin":  RequestOrigin,
		"Access-Control-Allow-Methods": "'GET, POST'",
		"Access-Control-Allow-Headers": "'Authorization, Content-Type'",
		"Access-Control-Max-Age":       "'600'",
		"Vary":                         "'Origin'",
	}
	if len(h) != len(want) {
		t.Errorf("preflight headers %v, want %v", h, want)
	}
	for k, v := range want {
		if h[k] != v {
			t.Errorf("preflight %s = %q, want %q", k, h[k], v)
		}
	}
	if c := g.Browser.CORSHeaders(); c["Access-Control-Allow-Origin"] != RequestOrigin || c["Access-Control-Expose-Headers"] != "'Retry-After'" {
		t.Errorf("CORS headers %v", c)
	}
}

// TestAlerts: a gateway file without alerts gets the defaults; one with
// thresholds that would alert on everything or never is refused.
func TestAlerts(t *testing.T) {
	g, err := LoadGateway()
	if err != nil || g.AlertRules() != DefaultAlerts {
		t.Fatalf("%v: %+v", err, g.AlertRules())
	}
	for _, bad := range []Alerts{
		{LearningHours: 1, NetworkMemoryDays: 1, SpikeFactor: 10, SpikeFloor: 1, InvalidSecrets: 1, InvalidSecretMinutes: 1, OldKeyMinutes: 1, NetworkBitsV4: 33, NetworkBitsV6: 48},
		{LearningHours: 1, NetworkMemoryDays: 0, SpikeFactor: 10, SpikeFloor: 1, InvalidSecrets: 1, InvalidSecretMinutes: 1, OldKeyMinutes: 1, NetworkBitsV4: 24, NetworkBitsV6: 48},
		{LearningHours: 1, NetworkMemoryDays: 1, SpikeFactor: 1, SpikeFloor: 1, InvalidSecrets: 1, InvalidSecretMinutes: 1, OldKeyMinutes: 1, NetworkBitsV4: 24, NetworkBitsV6: 48},
		{LearningHours: 1, NetworkMemoryDays: 1, SpikeFactor: 10, SpikeFloor: 1, InvalidSecrets: 0, InvalidSecretMinutes: 1, OldKeyMinutes: 1, NetworkBitsV4: 24, NetworkBitsV6: 48},
		{LearningHours: 1, NetworkMemoryDays: 1, SpikeFactor: 10, SpikeFloor: 1, InvalidSecrets: 1, InvalidSecretMinutes: 1, OldKeyMinutes: 0, NetworkBitsV4: 24, NetworkBitsV6: 48},
	} {
		g.Alerts = bad
		if err := g.Validate(); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
	g.Alerts = Alerts{LearningHours: 0, NetworkMemoryDays: 1, SpikeFactor: 2, SpikeFloor: 1, InvalidSecrets: 1, InvalidSecretMinutes: 1, OldKeyMinutes: 1,
		NetworkBitsV4: 32, NetworkBitsV6: 128}
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
}
