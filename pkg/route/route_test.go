package route

import (
	"fmt"
	"testing"

	"github.com/keyward/keyward/pkg/config"
)

func table(t *testing.T, routes ...config.Route) *Table {
	t.Helper()
	tb, err := Compile(config.RouteTable{Routes: routes})
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func TestMatchPrecedence(t *testing.T) {
	tb := table(t,
		config.Route{Method: "GET", Path: "/invoices", Scope: "invoices:read"},
		config.Route{Method: "GET", Path: "/invoices/{id}", Scope: "invoices:read"},
		config.Route{Method: "GET", Path: "/invoices/summary", Scope: "reports:read"},
		config.Route{Method: "GET", Path: "/invoices/{id}/lines", Scope: "lines:read"},
		config.Route{Method: "GET", Path: "/files/{path+}", Scope: "files:read"},
		config.Route{Method: "GET", Path: "/files/{name}", Scope: "names:read"},
		config.Route{Method: "GET", Path: "/", Scope: "root:read"},
	)
	cases := []struct{ method, path, scope, params string }{
		{"GET", "/invoices", "invoices:read", "map[]"},
		{"GET", "/invoices/inv_1", "invoices:read", "map[id:inv_1]"},
		{"GET", "/invoices/summary", "reports:read", "map[]"},
		{"GET", "/invoices/inv_1/lines", "lines:read", "map[id:inv_1]"},
		{"GET", "/files/a", "names:read", "map[name:a]"},
		{"GET", "/files/a/b/c", "files:read", "map[path:a/b/c]"},
		{"GET", "/", "root:read", "map[]"},
	}
	for _, c := range cases {
		r, params, ok := tb.Match(c.method, c.path)
		if !ok || r.Scope != c.scope || fmt.Sprint(params) != c.params {
			t.Errorf("Match(%s %s) = %q %v %v, want %q %s", c.method, c.path, r.Scope, params, ok, c.scope, c.params)
		}
	}
	for _, miss := range [][2]string{{"POST", "/invoices"}, {"GET", "/invoices/"}, {"GET", "/invoices//lines"}, {"GET", "/nope"},
		{"GET", "invoices"}, {"GET", "/files/"}, {"GET", "/invoices/1/lines/2"}} {
		if r, _, ok := tb.Match(miss[0], miss[1]); ok {
			t.Errorf("Match(%s %s) found %s %s", miss[0], miss[1], r.Method, r.Path)
		}
	}
}

// TestMethods: a preflight allows the methods of the one resource a path
// reaches, not every method some route of another shape could match.
func TestMethods(t *testing.T) {
	tb := table(t,
		config.Route{Method: "POST", Path: "/invoices", Scope: "invoices:write"},
		config.Route{Method: "GET", Path: "/invoices", Scope: "invoices:read"},
		config.Route{Method: "GET", Path: "/invoices/{id}", Scope: "invoices:read"},
		config.Route{Method: "DELETE", Path: "/invoices/{key}", Scope: "invoices:write"},
		config.Route{Method: "PUT", Path: "/invoices/summary", Scope: "reports:write"},
		config.Route{Method: "GET", Path: "/files/{path+}", Scope: "files:read"},
		config.Route{Method: "GET", Path: "/", Scope: "root:read"},
	)
	for path, want := range map[string]string{
		"/invoices":         "/invoices [GET POST]",
		"/invoices/inv_1":   "/invoices/{id} [DELETE GET]",
		"/invoices/summary": "/invoices/summary [PUT]",
		"/files/a/b":        "/files/{path+} [GET]",
		"/":                 "/ [GET]",
		"/nope":             " []",
		"/invoices/1/2":     " []",
		"nope":              " []",
	} {
		if resource, methods := tb.Methods(path); fmt.Sprint(resource, " ", methods) != want {
			t.Errorf("Methods(%s) = %s %v, want %s", path, resource, methods, want)
		}
	}
}

func TestARNPath(t *testing.T) {
	tb := table(t,
		config.Route{Method: "GET", Path: "/invoices/{id}/lines", Scope: "lines:read"},
		config.Route{Method: "POST", Path: "/files/{path+}", Scope: "files:write"},
		config.Route{Method: "GET", Path: "/", Scope: "root:read"},
	)
	want := []string{"GET/invoices/*/lines", "POST/files/*", "GET/"}
	for i, r := range tb.Routes() {
		if r.ARNPath != want[i] {
			t.Errorf("%s %s: ARN path %q, want %q", r.Method, r.Path, r.ARNPath, want[i])
		}
	}
}

func TestCompileRejects(t *testing.T) {
	bad := []config.Route{
		{Method: "get", Path: "/x", Scope: "x:read"},
		{Method: "GET", Path: "x", Scope: "x:read"},
		{Method: "GET", Path: "/x/", Scope: "x:read"},
		{Method: "GET", Path: "/x//y", Scope: "x:read"},
		{Method: "GET", Path: "/x", Scope: ""},
		{Method: "GET", Path: "/x", Scope: "x:*"},
		{Method: "GET", Path: "/x", Scope: "*"},
		{Method: "GET", Path: "/x", Auth: "iam", Scope: "x:read"},
		{Method: "GET", Path: "/x", Auth: "cognito"},
		{Method: "GET", Path: "/{a+}/b", Scope: "x:read"},
		{Method: "GET", Path: "/x{a}", Scope: "x:read"},
		{Method: "GET", Path: "/x*", Scope: "x:read"},
		{Method: "GET", Path: "/{a-b}", Scope: "x:read"},
	}
	for _, r := range bad {
		if _, err := Compile(config.RouteTable{Routes: []config.Route{r}}); err == nil {
			t.Errorf("Compile accepted %+v", r)
		}
	}
	dup := config.RouteTable{Routes: []config.Route{
		{Method: "GET", Path: "/x/{id}", Scope: "x:read"},
		{Method: "GET", Path: "/x/{other}", Scope: "y:read"},
	}}
	if _, err := Compile(dup); err == nil {
		t.Error("two routes of one shape accepted")
	}
}

// TestShippedTables compiles the shipped route tables together, as the
// authorizer, the CDK stack and the local stack all do.
func TestShippedTables(t *testing.T) {
	routes, err := config.Routes("")
	if err != nil {
		t.Fatal(err)
	}
	tb, err := Compile(routes, config.AdminRoutes())
	if err != nil {
		t.Fatal(err)
	}
	if r, _, ok := tb.Match("GET", "/invoices/inv_1"); !ok || r.Scope != "invoices:read" {
		t.Fatalf("demo route: %+v %v", r, ok)
	}
	if r, _, ok := tb.Match("POST", "/v1/tenants"); !ok || r.Auth != config.AuthIAM {
		t.Fatalf("operator route: %+v %v", r, ok)
	}
}

func TestMayMatch(t *testing.T) {
	tb := table(t,
		config.Route{Method: "GET", Path: "/invoices/{id}", Scope: "a:read"},
		config.Route{Method: "GET", Path: "/invoices/{id}/refunds", Scope: "b:read"},
		config.Route{Method: "GET", Path: "/a/{x}/{y}/{z}", Scope: "c:read"},
		config.Route{Method: "GET", Path: "/files/{path+}", Scope: "d:read"},
		config.Route{Method: "GET", Path: "/invoices", Scope: "e:read"},
	)
	r := func(i int) Route { return tb.Routes()[i] }
	cases := []struct {
		route   Route
		pattern string
		want    bool
	}{
		{r(1), "GET/invoices/*", true},          // "*" crosses "/": reaches refunds
		{r(0), "GET/invoices/*/refunds", false}, // one segment never holds "/refunds"
		{r(2), "GET/a/*/d", true},               // GET/a/1/2/d is a request to /a/{x}/{y}/{z}
		{r(2), "GET/a/*/*/*/*", false},          // needs four segments; the route has three
		{r(3), "GET/files/*/secret", true},      // a greedy tail holds "/"
		{r(0), "GET/invoices", false},           // a parameter is never empty
		{r(4), "GET/invoices/*", false},         // nor is the segment after "/"
		{r(0), "POST/invoices/*", false},        // methods differ
		{r(0), "GET/invoices/?", true},          // a one-character id
		{r(0), "*", true},
	}
	for _, c := range cases {
		if got := c.route.MayMatch(c.pattern); got != c.want {
			t.Errorf("%s %s MayMatch(%q) = %v, want %v", c.route.Method, c.route.Path, c.pattern, got, c.want)
		}
	}
}
