package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestShippedGatewayIsValid(t *testing.T) {
	g, err := LoadGateway()
	if err != nil {
		t.Fatal(err)
	}
	if g.Authorizer.OriginInCacheKey() {
		t.Error("the shipped cache is not keyed by Origin, yet OriginInCacheKey says so")
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
	if err := off.Validate(); err != nil || !off.Authorizer.OriginInCacheKey() {
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
