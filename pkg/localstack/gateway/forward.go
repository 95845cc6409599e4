package gateway

import (
	"net/http"
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
	headers := config.IntegrationHeaders
	// A copy of the request with its own URL and header map (sized for
	// the headers added below), which is all that changes; the values
	// are the request's own. The client must not pose as a tenant, and
	// the backend never sees the key: not under another spelling
	// (X_Keyward_Tenant_Id reaches CGI-style backends as the same
	// variable), and the client may not name the gateway's headers as
	// hop-by-hop ones (Connection), which the proxy would then remove
	// after they are set.
	out := c.r.WithContext(c.r.Context())
	u := *c.r.URL
	out.URL = &u
	out.Header = make(http.Header, len(c.r.Header)+len(headers))
	for name, vals := range c.r.Header {
		if name != "Connection" && !reserved(name) {
			out.Header[name] = vals
		}
	}
	if config.OnBrowserEndpoint(c.route.Path) {
		headers = config.BrowserIntegrationHeaders
		// The upstream serves both endpoints at the same paths.
		out.URL.Path = config.UpstreamPath(out.URL.Path)
		if out.URL.RawPath != "" {
			out.URL.RawPath = config.UpstreamPath(out.URL.RawPath)
		}
	}
	// One array holds every value, each header a slice of it: one
	// allocation, not one per header.
	values := make([]string, 0, len(headers))
	for header, source := range headers {
		var v string
		if static, ok := strings.CutPrefix(source, "'"); ok {
			v = strings.TrimSuffix(static, "'")
		} else if a.authorizer == nil {
			continue
		} else if cv, ok := a.authorizer.Context[strings.TrimPrefix(source, contextSource)]; ok {
			v = contextString(cv)
		} else {
			continue
		}
		values = append(values, v)
		out.Header[http.CanonicalHeaderKey(header)] = values[len(values)-1 : len(values) : len(values)]
	}
	g.cfg.Upstream.ServeHTTP(c.w, out)
}

// contextSource prefixes an integration header mapped from the
// authorizer's context.
const contextSource = "context.authorizer."

// reserved reports whether a client header name stands, under any
// spelling, for the credential or a header the gateway sets.
func reserved(name string) bool {
	const prefix = "x-keyward-"
	return sameName(name, "authorization") || len(name) >= len(prefix) && sameName(name[:len(prefix)], prefix)
}

// sameName reports whether a header name is lower (lower case, with "-")
// under some spelling: any case, "_" for "-". It allocates nothing: it
// runs for every header of every request.
func sameName(name, lower string) bool {
	if len(name) != len(lower) {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '_':
			c = '-'
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
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
