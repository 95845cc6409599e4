package authorizer_test

import (
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/storetest"
	"github.com/keyward/keyward/pkg/clock"
	"github.com/keyward/keyward/pkg/config"
	"github.com/keyward/keyward/pkg/lifecycle"
	"github.com/keyward/keyward/pkg/policy"
	"github.com/keyward/keyward/pkg/route"
	"github.com/keyward/keyward/pkg/scope"
)

// concretePath turns a route's pattern into a request path it matches.
func concretePath(r route.Route) string {
	var parts []string
	for _, seg := range strings.Split(r.Path, "/")[1:] {
		switch {
		case strings.HasSuffix(seg, "+}"):
			parts = append(parts, "deep", "er")
		case strings.HasPrefix(seg, "{"):
			parts = append(parts, "x1")
		default:
			parts = append(parts, seg)
		}
	}
	return "/" + strings.Join(parts, "/")
}

// TestCachedDecisionNeverWidensAccess is the caching invariant: API
// Gateway reuses the policy returned for one route on every other route
// for the same identity sources, so for every key and every pair of
// routes, the cached answer must be the fresh answer.
func TestCachedDecisionNeverWidensAccess(t *testing.T) {
	e := newEnv(t, storetest.Temp(t), clock.NewManual(start))
	// The shipped tables plus routes whose ARN patterns overlap: "*" in
	// GET/invoices/* also matches GET/invoices/x1/refunds.
	extra := config.RouteTable{Routes: []config.Route{
		{Method: "GET", Path: "/invoices/{id}/refunds", Scope: "refunds:read"},
		{Method: "GET", Path: "/invoices/{id}/lines/{line}", Scope: "lines:read"},
		{Method: "GET", Path: "/files/{path+}", Scope: "files:read"},
		{Method: "DELETE", Path: "/customers/{id}", Scope: "customers:admin"},
		// GET/a/*/d also matches GET/a/1/2/d, a request to /a/{x}/{y}/{z}.
		{Method: "GET", Path: "/a/{x}/d", Scope: "d:read"},
		{Method: "GET", Path: "/a/{x}/{y}/{z}", Scope: "z:read"},
	}}
	shipped, _ := config.Routes("")
	routes, err := route.Compile(shipped, extra, config.AdminRoutes())
	if err != nil {
		t.Fatal(err)
	}
	e.routes = routes
	e.build()

	scopeSets := [][]string{
		{"invoices:read"}, {"invoices:write"}, {"invoices:*"}, {"customers:write"}, {"customers:admin"},
		{"refunds:read"}, {"lines:read", "invoices:read"}, {"files:read"}, {"*"},
		{"keys:read"}, {"keys:write"}, {"keys:admin"}, {"messaging:send"}, {"d:read"}, {"z:read"},
	}
	base := event(t, "authorizer-bearer.json", "", "")
	arnPrefix := "arn:aws:execute-api:eu-west-1:111122223333:a1b2c3d4e5/prod/"
	var keyRoutes []route.Route
	for _, r := range routes.Routes() {
		if r.Auth == config.AuthKey {
			keyRoutes = append(keyRoutes, r)
		}
	}
	request := func(token string, r route.Route) (string, bool) {
		ev := base
		ev.Headers = map[string]string{"Authorization": "Bearer " + token}
		ev.MultiValueHeaders = map[string][]string{"Authorization": {"Bearer " + token}}
		ev.HTTPMethod, ev.Path, ev.Resource = r.Method, concretePath(r), r.Path
		if r.Path == "/a/{x}/{y}/{z}" {
			ev.Path = "/a/1/2/d" // the path the "*" of GET/a/*/d also reaches
		}
		ev.MethodArn = arnPrefix + r.Method + ev.Path
		if got, _, ok := routes.Match(r.Method, ev.Path); !ok || got.Path != r.Path {
			t.Fatalf("%s %s does not route back to %s", r.Method, ev.Path, r.Path)
		}
		return ev.MethodArn, e.authorize(ev).allowed
	}
	checked := 0
	for _, scopes := range scopeSets {
		tok := e.key(lifecycle.CreateParams{Scopes: scopes}).Token.Plain()
		fresh := map[string]bool{}
		arns := map[string]string{}
		for _, r := range keyRoutes {
			arns[r.Method+r.Path], fresh[r.Method+r.Path] = request(tok, r)
			// The fresh decision itself must be what the scopes say.
			if want := scope.AnyGrants(scopes, r.Scope); fresh[r.Method+r.Path] != want {
				t.Errorf("scopes %v: fresh decision for %s %s is %v, want %v", scopes, r.Method, r.Path, fresh[r.Method+r.Path], want)
			}
		}
		for _, first := range keyRoutes {
			ev := base
			ev.Headers = map[string]string{"Authorization": "Bearer " + tok}
			ev.MultiValueHeaders = map[string][]string{"Authorization": {"Bearer " + tok}}
			ev.MethodArn = arns[first.Method+first.Path]
			cached := e.authorize(ev).resp.PolicyDocument
			for _, then := range keyRoutes {
				got, want := policy.Allows(cached, arns[then.Method+then.Path]), fresh[then.Method+then.Path]
				if got != want {
					t.Errorf("scopes %v: the policy cached for %s %s answers %v for %s %s; a fresh decision answers %v",
						scopes, first.Method, first.Path, got, then.Method, then.Path, want)
				}
				checked++
			}
		}
	}
	if checked < 1000 {
		t.Fatalf("only %d route pairs checked", checked)
	}
}
