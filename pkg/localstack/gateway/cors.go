package gateway

import (
	"net/http"
	"strings"

	"github.com/keyward/keyward/pkg/config"
)

// preflight answers a CORS preflight on the browser endpoint as the CDK
// stack's mock OPTIONS methods do: no authorizer, no upstream, the
// methods of the resource the path reaches. It reports false when the
// path reaches none, which then gets the no-route answer.
func (g *Gateway) preflight(c *call) bool {
	if c.r.Method != http.MethodOptions || !config.OnBrowserEndpoint(c.r.URL.Path) || !cleanPath(c.r.URL) {
		return false
	}
	resource, methods := g.cfg.Routes.Methods(c.r.URL.Path)
	if !config.OnBrowserEndpoint(resource) {
		return false // no resource, or a server route's greedy one
	}
	g.write(c, config.PreflightStatus, mapped(g.cfg.Gateway.Browser.PreflightHeaders(methods), c.r.Header), nil)
	c.rendered = "PREFLIGHT"
	return true
}

// mapped evaluates response headers given in API Gateway's parameter
// syntax against the request: a 'static' value, or a request header
// (config.RequestOrigin), which, when absent, leaves the header out, as
// API Gateway does.
func mapped(params map[string]string, req http.Header) http.Header {
	h := http.Header{}
	for name, source := range params {
		if static, ok := strings.CutPrefix(source, "'"); ok {
			h.Set(name, strings.TrimSuffix(static, "'"))
		} else if header, ok := strings.CutPrefix(source, headerSource); ok {
			if vals := req.Values(header); len(vals) > 0 && vals[len(vals)-1] != "" {
				h.Set(name, vals[len(vals)-1])
			}
		}
	}
	return h
}

// corsHeaders are the headers of every answer the gateway makes itself
// (gateway responses and the no-route answer), in every endpoint alike:
// the CDK stack maps them onto every gateway response, which API Gateway
// applies API-wide.
func corsHeaders(cfg config.Gateway, req http.Header) http.Header {
	return mapped(cfg.Browser.CORSHeaders(), req)
}
