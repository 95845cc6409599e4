package stack_test

import (
	"encoding/json"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/keyward/keyward/infra/stack"
	"github.com/keyward/keyward/pkg/config"
)

// splitOverrides splits a mock's response template into its first line of
// VTL directives, if it has one, and the body that follows.
func splitOverrides(template string) (directives, body string) {
	if !strings.HasPrefix(template, "#") {
		return "", template
	}
	directives, body, _ = strings.Cut(template, "\n")
	return directives, body
}

// directive is a VTL directive of the overrides, with at most one level of
// nested parentheses.
var directive = regexp.MustCompile(`#(set|if)\((?:[^()]|\([^()]*\))*\)|#end`)

// overrides are the headers the directives set, by name, as the
// request headers they come from (API Gateway's parameter syntax), so
// that they compare with config's maps; it fails the test on any text
// that is not a directive, which would be output.
func overrides(t *testing.T, directives string) map[string]string {
	t.Helper()
	if rest := directive.ReplaceAllString(directives, ""); rest != "" {
		t.Errorf("overrides %q output %q", directives, rest)
	}
	from := map[string]string{} // variable → the header it is read from first
	for _, m := range regexp.MustCompile(`#set\(\$(\w+) = \$input\.params\(\)\.header\.get\("([^"]+)"\)\)`).FindAllStringSubmatch(directives, -1) {
		if _, ok := from[m[1]]; !ok {
			from[m[1]] = m[2]
		}
	}
	out := map[string]string{}
	for _, m := range regexp.MustCompile(`#set\(\$context\.responseOverride\.header\.([^ ]+) = \$(\w+)\)`).FindAllStringSubmatch(directives, -1) {
		out[m[1]] = "method.request.header." + from[m[2]]
	}
	return out
}

// static and dynamic split a header map of config's into its static values
// and the others.
func static(h map[string]string) map[string]any {
	out := map[string]any{}
	for name, v := range h {
		if strings.HasPrefix(v, "'") {
			out["method.response.header."+name] = v
		}
	}
	return out
}

func dynamic(h map[string]string) map[string]string {
	out := map[string]string{}
	for name, v := range h {
		if !strings.HasPrefix(v, "'") {
			out[name] = v
		}
	}
	return out
}

// mockResponse checks a mock method's one response: its status, the
// static headers as parameters, the others as overrides on the
// template's first line, every one declared by the method; it returns the
// template's body.
func mockResponse(t *testing.T, where string, p map[string]any, status string, headers map[string]string) string {
	t.Helper()
	in := mapOf(p["Integration"])
	responses := sliceOf(in["IntegrationResponses"])
	if len(responses) != 1 {
		t.Errorf("%s: integration responses %s", where, flat(responses))
		return ""
	}
	resp := mapOf(responses[0])
	if resp["StatusCode"] != status {
		t.Errorf("%s: status %v, want %s", where, resp["StatusCode"], status)
	}
	if got, want := mapOf(resp["ResponseParameters"]), static(headers); !reflect.DeepEqual(got, want) {
		t.Errorf("%s: response parameters\n got %v\nwant %v", where, got, want)
	}
	templates := mapOf(resp["ResponseTemplates"])
	template, _ := templates["application/json"].(string)
	directives, body := splitOverrides(template)
	if got, want := overrides(t, directives), dynamic(headers); len(templates) != 1 || !reflect.DeepEqual(got, want) {
		t.Errorf("%s: template %q overrides %v, want %v", where, template, got, want)
	}
	var declared []string
	for _, mr := range sliceOf(p["MethodResponses"]) {
		if mapOf(mr)["StatusCode"] != status {
			t.Errorf("%s: method response %s", where, flat(mr))
		}
		for k := range mapOf(mapOf(mr)["ResponseParameters"]) {
			declared = append(declared, strings.TrimPrefix(k, "method.response.header."))
		}
	}
	if want := slices.Sorted(maps.Keys(headers)); !reflect.DeepEqual(sorted(declared...), want) {
		t.Errorf("%s: method response headers %v, want %v", where, sorted(declared...), want)
	}
	return body
}

// mocks are the mock methods of one HTTP method, by resource path.
func mocks(t *testing.T, m *tmpl, method string) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, r := range m.ofType("AWS::ApiGateway::Method") {
		p := props(r)
		if mapOf(p["Integration"])["Type"] == "MOCK" && p["HttpMethod"] == method {
			path := m.path(t, flat(p["ResourceId"]))
			if _, dup := out[path]; dup {
				t.Errorf("two %s mocks on %s", method, path)
			}
			out[path] = p
		}
	}
	return out
}

// TestBrowserAuthorizer: the browser endpoint's attachment of the
// authorizer is the server endpoint's with Origin in the cache key; the
// server endpoint's cache is not keyed by Origin, which server-to-server
// requests lack.
func TestBrowserAuthorizer(t *testing.T) {
	f := get(t)
	for _, c := range f.devAndProd() {
		x := c.m.ids(t, c.s)
		server, browser := props(c.m.res[x.authorizer]), props(c.m.res[x.browserAuthorizer])
		if sources := strings.Split(browser["IdentitySource"].(string), ","); !slices.Contains(sources, config.RequestOrigin) ||
			!reflect.DeepEqual(sources, c.s.Gateway.BrowserAuthorizer().IdentitySources) {
			t.Errorf("%s browser identity sources %v, want %v", c.name, sources, c.s.Gateway.BrowserAuthorizer().IdentitySources)
		}
		if strings.Contains(server["IdentitySource"].(string), config.RequestOrigin) {
			t.Errorf("%s server identity sources %v", c.name, server["IdentitySource"])
		}
		for _, key := range []string{"Type", "AuthorizerResultTtlInSeconds", "AuthorizerUri", "RestApiId"} {
			if flat(browser[key]) != flat(server[key]) {
				t.Errorf("%s browser authorizer %s = %s, server's %s", c.name, key, flat(browser[key]), flat(server[key]))
			}
		}
	}
}

// TestBrowserRoutes: every route of the protected API is served below
// /browser, by the browser authorizer, with the key counted by its usage
// plan, forwarded to the same upstream path with the request's origin as
// the authorizer checked it.
func TestBrowserRoutes(t *testing.T) {
	f := get(t)
	for _, c := range f.devAndProd() {
		x := c.m.ids(t, c.s)
		deployed := routesOf(t, c.m)
		browser := config.BrowserRoutes(c.s.Routes).Routes
		if len(browser) != len(c.s.Routes.Routes) {
			t.Fatalf("%s: %d browser routes for %d routes", c.name, len(browser), len(c.s.Routes.Routes))
		}
		for _, r := range browser {
			key := r.Method + " " + r.Path
			d, ok := deployed[key]
			if !ok {
				t.Errorf("%s: no %s", c.name, key)
				continue
			}
			if d.Authorizer != ref(x.browserAuthorizer) || !d.APIKey {
				t.Errorf("%s %s: authorizer %s, api key %v", c.name, key, d.Authorizer, d.APIKey)
			}
			server := deployed[r.Method+" "+config.UpstreamPath(r.Path)]
			uri := flat(d.Integration["Uri"])
			if uri != flat(server.Integration["Uri"]) || strings.Contains(uri, config.BrowserPath) ||
				d.Integration["Type"] != "HTTP_PROXY" || d.Integration["IntegrationHttpMethod"] != r.Method {
				t.Errorf("%s %s: integration %s %v %s, want the server endpoint's %s", c.name, key, d.Integration["Type"], d.Integration["IntegrationHttpMethod"], uri, flat(server.Integration["Uri"]))
			}
			// The server endpoint's parameters and the origin.
			want := maps.Clone(mapOf(server.Integration["RequestParameters"]))
			want["integration.request.header."+config.OriginHeader] = "context.authorizer.origin"
			if got := mapOf(d.Integration["RequestParameters"]); !reflect.DeepEqual(got, want) {
				t.Errorf("%s %s: integration parameters\n got %v\nwant %v", c.name, key, got, want)
			}
			if !reflect.DeepEqual(d.MethodParams, server.MethodParams) {
				t.Errorf("%s %s: method parameters %v, want %v", c.name, key, d.MethodParams, server.MethodParams)
			}
		}
	}
	if d := routesOf(t, f.prod)["GET /browser/files/{path+}"]; flat(d.Integration["Uri"]) != "https://api.example.org/base/files/{path}" {
		t.Errorf("greedy browser route integration %v", d.Integration)
	}
}

// TestBrowserPreflights: each resource of the browser endpoint that has
// routes answers OPTIONS itself (no authorizer, no key, no Lambda) with
// config's preflight headers, allowing exactly that resource's methods,
// and the request's origin echoed.
func TestBrowserPreflights(t *testing.T) {
	f := get(t)
	for _, c := range f.devAndProd() {
		// The methods of each path, from the route table.
		want := map[string][]string{}
		for _, r := range c.s.Routes.Routes {
			p := strings.TrimSuffix(config.BrowserPath+r.Path, "/")
			if !slices.Contains(want[p], r.Method) {
				want[p] = append(want[p], r.Method)
			}
		}
		got := mocks(t, c.m, "OPTIONS")
		if !reflect.DeepEqual(slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want))) {
			t.Errorf("%s preflights on %v, want %v", c.name, slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
		}
		for path, methods := range want {
			p := got[path]
			if p == nil {
				continue
			}
			slices.Sort(methods)
			in := mapOf(p["Integration"])
			if p["AuthorizationType"] != "NONE" || p["AuthorizerId"] != nil || p["ApiKeyRequired"] == true ||
				flat(in["RequestTemplates"]) != flat(map[string]any{"application/json": `{"statusCode": 204}`}) {
				t.Errorf("%s preflight on %s: %s", c.name, path, flat(p))
			}
			headers := c.s.Gateway.Browser.PreflightHeaders(methods)
			if body := mockResponse(t, c.name+" preflight on "+path, p, "204", headers); body != "" {
				t.Errorf("%s preflight on %s has a body %q", c.name, path, body)
			}
		}
	}
	// What the demo table's preflights allow.
	for path, methods := range map[string]string{"/browser/invoices": "'GET, POST'", "/browser/invoices/{id}": "'GET'", "/browser/customers": "'GET, POST'"} {
		p := mocks(t, f.dev, "OPTIONS")[path]
		params := mapOf(mapOf(sliceOf(mapOf(p["Integration"])["IntegrationResponses"])[0])["ResponseParameters"])
		if params["method.response.header.Access-Control-Allow-Methods"] != methods {
			t.Errorf("preflight on %s allows %v, want %s", path, params["method.response.header.Access-Control-Allow-Methods"], methods)
		}
	}
	if got := stack.PreflightMethods(config.BrowserRoutes(f.devS.Routes))["/browser/invoices"]; !reflect.DeepEqual(got, []string{"GET", "POST"}) {
		t.Errorf("PreflightMethods /browser/invoices = %v", got)
	}
}

// TestBrowserGatewayResponses: every response of the gateway's own
// carries the CORS headers, the request's origin from its Origin header,
// so that a page reads a 401 or a 429 rather than a CORS failure.
func TestBrowserGatewayResponses(t *testing.T) {
	f := get(t)
	cors := f.devS.Gateway.Browser.CORSHeaders()
	responses := f.dev.ofType("AWS::ApiGateway::GatewayResponse")
	if len(responses) != len(config.GatewayResponseTypes) {
		t.Fatalf("%d gateway responses", len(responses))
	}
	for _, r := range responses {
		p := props(r)
		params := mapOf(p["ResponseParameters"])
		for name, v := range cors {
			if params["gatewayresponse.header."+name] != v {
				t.Errorf("%s: %s = %v, want %s", p["ResponseType"], name, params["gatewayresponse.header."+name], v)
			}
		}
		if params["gatewayresponse.header.Access-Control-Allow-Origin"] != "method.request.header.Origin" || params["gatewayresponse.header.Vary"] != "'Origin'" {
			t.Errorf("%s: CORS headers %v", p["ResponseType"], params)
		}
	}
}

// TestBrowserNoRouteCORS: the no-route mock, on every path, carries the
// CORS headers like the gateway responses, and still answers exactly
// config's JSON.
func TestBrowserNoRouteCORS(t *testing.T) {
	f := get(t)
	for _, c := range f.devAndProd() {
		got := mocks(t, c.m, "ANY")
		if len(got) == 0 {
			t.Fatalf("%s: no no-route mocks", c.name)
		}
		for path, p := range got {
			body := mockResponse(t, c.name+" no-route mock on "+path, p, "404", c.s.Gateway.Browser.CORSHeaders())
			if body != c.s.Gateway.NoRoute.Template || !json.Valid([]byte(body)) {
				t.Errorf("%s no-route mock on %s answers %q", c.name, path, body)
			}
		}
	}
}

// TestBrowserURL: the output names the browser endpoint, on the custom
// domain when there is one.
func TestBrowserURL(t *testing.T) {
	f := get(t)
	x := f.dev.ids(t, f.devS)
	for name, c := range map[string]struct {
		m    *tmpl
		want string
	}{
		"dev":  {f.dev, "https://" + ref(x.api) + ".execute-api.${AWS::Region}.${AWS::URLSuffix}/dev/browser"},
		"prod": {f.prod, "https://api.example.org/browser"},
	} {
		if got := flat(mapOf(mapOf(c.m.t["Outputs"])[stack.OutputBrowserURL])["Value"]); got != c.want {
			t.Errorf("%s %s = %s, want %s", name, stack.OutputBrowserURL, got, c.want)
		}
	}
}
