package gateway

import (
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/keyward/keyward/pkg/config"
)

// admitted is what the gateway vouches for about a request it lets
// through: on a key-authorized route, the authorizer's decision as the
// proxy event's requestContext.authorizer (its context, principalId and
// integrationLatency); on an operator route, the IAM identity.
type admitted struct {
	authorizer *events.APIGatewayCustomAuthorizerResponse
	latency    time.Duration // the authorizer's; none for a cached decision
	userARN    string
}

// forward hands an admitted request to its target: the admin function,
// which learns its caller from the proxy event's request context
// (invokeAdmin), or the upstream, which learns it from the headers the CDK
// stack maps from the authorizer's context (config.IntegrationHeaders),
// applied alike here.
func (g *Gateway) forward(c *call, a admitted) {
	// config.Routes reserves the admin function's paths.
	if config.AdminFunctionPath(c.route.Path) {
		g.invokeAdmin(c, a)
		return
	}
	out := c.r.Clone(c.r.Context())
	// The client must not pose as a tenant, and the backend never sees
	// the key: not under another spelling (X_Keyward_Tenant_Id reaches
	// CGI-style backends as the same variable), and the client may not
	// name the gateway's headers as hop-by-hop ones (Connection), which
	// the proxy would then remove after they are set.
	delete(out.Header, "Connection")
	for name := range out.Header {
		if reserved(name) {
			delete(out.Header, name)
		}
	}
	headers := config.IntegrationHeaders
	if config.OnBrowserEndpoint(c.route.Path) {
		headers = config.BrowserIntegrationHeaders
		// The upstream serves both endpoints at the same paths.
		out.URL.Path = config.UpstreamPath(out.URL.Path)
		if out.URL.RawPath != "" {
			out.URL.RawPath = config.UpstreamPath(out.URL.RawPath)
		}
	}
	for header, source := range headers {
		if static, ok := strings.CutPrefix(source, "'"); ok {
			out.Header.Set(header, strings.TrimSuffix(static, "'"))
		} else if a.authorizer == nil {
			continue
		} else if v, ok := a.authorizer.Context[strings.TrimPrefix(source, contextSource)]; ok {
			out.Header.Set(header, contextString(v))
		}
	}
	g.cfg.Upstream.ServeHTTP(c.w, out)
}

// contextSource prefixes an integration header mapped from the
// authorizer's context.
const contextSource = "context.authorizer."

// reserved reports whether a client header name stands, under any
// spelling, for the credential or a header the gateway sets.
func reserved(name string) bool {
	n := strings.ReplaceAll(strings.ToLower(name), "_", "-")
	return n == "authorization" || strings.HasPrefix(n, "x-keyward-")
}

// contextString renders an authorizer context value as API Gateway
// substitutes it into templates and headers.
func contextString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(v)
	}
	return ""
}
