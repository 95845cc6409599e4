package stack

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2/awsapigateway"
	"github.com/aws/jsii-runtime-go"

	"github.com/keyward/keyward/pkg/config"
)

// browserEndpoint serves the protected API's routes again below
// config.BrowserPath: authorized by a second attachment of the authorizer,
// whose cache is keyed by Origin too, so that no decision made for one
// origin serves another, with the request's origin passed upstream; the
// gateway answers the CORS preflights itself (they carry no key).
func (k *keyward) browserEndpoint() {
	k.browserAuthorizer = k.requestAuthorizer("BrowserAuthorizer", k.name("browser"), k.s.Gateway.BrowserAuthorizer())
	routes := config.BrowserRoutes(k.s.Routes)
	for _, r := range routes.Routes {
		k.protectedRoute(r, endpoint{k.browserAuthorizer, config.BrowserIntegrationHeaders})
	}
	preflights := PreflightMethods(routes)
	for _, p := range slices.Sorted(maps.Keys(preflights)) {
		k.preflight(p, preflights[p])
	}
}

// PreflightMethods are the methods of each resource of a route table,
// sorted: what the resource's preflight allows.
func PreflightMethods(t config.RouteTable) map[string][]string {
	m := map[string][]string{}
	for _, r := range t.Routes {
		if !slices.Contains(m[r.Path], r.Method) {
			m[r.Path] = append(m[r.Path], r.Method)
		}
	}
	for _, methods := range m {
		slices.Sort(methods)
	}
	return m
}

// preflight answers OPTIONS on a browser endpoint resource with a mock: no
// authorizer, no API key (a preflight carries neither), no Lambda.
func (k *keyward) preflight(path string, methods []string) {
	status := jsii.String(strconv.Itoa(config.PreflightStatus))
	h := mockHeaders(k.s.Gateway.Browser.PreflightHeaders(methods))
	integration := awsapigateway.NewMockIntegration(&awsapigateway.IntegrationOptions{
		RequestTemplates:    &map[string]*string{"application/json": jsii.String(fmt.Sprintf(`{"statusCode": %d}`, config.PreflightStatus))},
		PassthroughBehavior: awsapigateway.PassthroughBehavior_WHEN_NO_TEMPLATES,
		IntegrationResponses: &[]*awsapigateway.IntegrationResponse{{
			StatusCode:         status,
			ResponseParameters: &h.params,
			ResponseTemplates:  &map[string]*string{"application/json": jsii.String(h.template(""))},
		}},
	})
	k.resource(path).AddMethod(jsii.String("OPTIONS"), integration, &awsapigateway.MethodOptions{
		AuthorizationType: awsapigateway.AuthorizationType_NONE,
		ApiKeyRequired:    jsii.Bool(false),
		MethodResponses:   &[]*awsapigateway.MethodResponse{{StatusCode: status, ResponseParameters: &h.declared}},
	})
}

// responseHeaders are headers in API Gateway's parameter syntax as a mock
// integration's response sets them.
type responseHeaders struct {
	params    map[string]*string // the static ones, as integration response parameters
	declared  map[string]*bool   // every one, as method response parameters
	overrides string             // VTL setting the others
}

// requestHeader is the prefix of a source that is a request header.
const requestHeader = "method.request.header."

// mockHeaders splits headers into static values, which an integration
// response maps, and request headers (config.RequestOrigin), which it
// cannot: those are set by a response override in the template, as CDK's
// own preflights do. The header is looked up as named and in lowercase
// (HTTP/2 sends lowercase names), and none is set when the request has
// none.
func mockHeaders(headers map[string]string) responseHeaders {
	h := responseHeaders{params: map[string]*string{}, declared: map[string]*bool{}}
	var vtl strings.Builder
	for _, name := range slices.Sorted(maps.Keys(headers)) {
		source, key := headers[name], "method.response.header."+name
		if strings.HasPrefix(source, "'") {
			h.params[key] = jsii.String(source)
			h.declared[key] = jsii.Bool(true)
			continue
		}
		from, ok := strings.CutPrefix(source, requestHeader)
		if !ok {
			panic(fmt.Sprintf("keyward: response header %s: source %q is neither static nor a request header", name, source))
		}
		h.declared[key] = jsii.Bool(false)
		// $input.params() looks only at the headers: $input.params(name)
		// would take a query string parameter of that name first.
		v := strings.ToLower(strings.ReplaceAll(from, "-", "_"))
		fmt.Fprintf(&vtl, `#set($%s = $input.params().header.get("%s"))`, v, from)
		if lower := strings.ToLower(from); lower != from {
			fmt.Fprintf(&vtl, `#if("$!%s" == "")#set($%s = $input.params().header.get("%s"))#end`, v, v, lower)
		}
		fmt.Fprintf(&vtl, `#if("$!%s" != "")#set($context.responseOverride.header.%s = $%s)#end`, v, name, v)
	}
	h.overrides = vtl.String()
	return h
}

// template is a response template of body with the overrides, on a line
// of their own: the directives output nothing, the line's end at most.
func (h responseHeaders) template(body string) string {
	if h.overrides == "" || body == "" {
		return h.overrides + body
	}
	return h.overrides + "\n" + body
}

// browserURL is the browser endpoint's base URL.
func (k *keyward) browserURL() string { return k.apiBase() + config.BrowserPath }
