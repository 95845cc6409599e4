package config

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// BrowserPath is the browser endpoint: the protected API's routes again,
// below this base path of the same API and stage, authorized by a second
// attachment of the authorizer whose decisions are cached by Origin as
// well (BrowserAuthorizer), and with CORS answered by the gateway. Keys
// with allowed origins (browser keys) work only here; other keys work on
// both endpoints.
const BrowserPath = "/browser"

// OnBrowserEndpoint reports whether a resource path is the browser
// endpoint's.
func OnBrowserEndpoint(path string) bool {
	return path == BrowserPath || strings.HasPrefix(path, BrowserPath+"/")
}

// Browser is the browser endpoint's CORS settings (gateway.json's
// "browser").
type Browser struct {
	// AllowHeaders are the request headers a preflight allows; they
	// must include Authorization, which carries the key.
	AllowHeaders []string `json:"allow_headers"`
	// ExposeHeaders are the response headers, beyond the CORS-safelisted
	// ones, a page may read: Retry-After on a 429, for one.
	ExposeHeaders []string `json:"expose_headers"`
	// MaxAgeSeconds is how long a browser may reuse a preflight's answer.
	// Chromium caps it at 7200, Firefox at 86400.
	MaxAgeSeconds int `json:"max_age_seconds"`
}

// DefaultBrowser is what a gateway.json without a "browser" block gets
// (the shipped one spells it out).
var DefaultBrowser = Browser{
	AllowHeaders:  []string{"Authorization", "Content-Type"},
	ExposeHeaders: []string{"Retry-After"},
	MaxAgeSeconds: 600,
}

// MaxPreflightAge bounds Browser.MaxAgeSeconds: a change of the route
// table reaches browsers within it.
const MaxPreflightAge = 7200

// validate checks the CORS settings.
func (b Browser) validate() error {
	if !slices.ContainsFunc(b.AllowHeaders, func(h string) bool { return strings.EqualFold(h, "Authorization") }) {
		return fmt.Errorf("config: browser.allow_headers must include Authorization, which carries the key")
	}
	for _, h := range append(slices.Clone(b.AllowHeaders), b.ExposeHeaders...) {
		if !headerName(h) {
			return fmt.Errorf("config: browser header %q is not a header name (no wildcards)", h)
		}
	}
	if b.MaxAgeSeconds < 0 || b.MaxAgeSeconds > MaxPreflightAge {
		return fmt.Errorf("config: browser.max_age_seconds %d outside 0..%d", b.MaxAgeSeconds, MaxPreflightAge)
	}
	return nil
}

// headerName reports whether s is an HTTP header name (RFC 9110 token),
// without the quote that would end API Gateway's static value early.
func headerName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// BrowserAuthorizer is the authorizer attachment of the browser endpoint:
// the same function, cache TTL and identity sources, and Origin, so that
// no decision made for one origin serves another. A request without an
// Origin is refused by the gateway (401) when caching is on.
func (g Gateway) BrowserAuthorizer() Authorizer {
	a := g.Authorizer
	a.IdentitySources = append(slices.Clone(a.IdentitySources), IdentityOrigin)
	return a
}

// BrowserRoutes are the browser endpoint's routes: every route of the
// protected API below BrowserPath, except OPTIONS, which is the CORS
// preflight there.
func BrowserRoutes(t RouteTable) RouteTable {
	var b RouteTable
	for _, r := range t.Routes {
		if r.Method == "OPTIONS" {
			continue
		}
		r.Path = strings.TrimSuffix(BrowserPath+r.Path, "/")
		b.Routes = append(b.Routes, r)
	}
	return b
}

// APIRoutes are every route table the API serves, as route.Compile takes
// them: the protected API's, its browser endpoint's, the admin API's and
// the console's.
func APIRoutes(protected RouteTable) []RouteTable {
	return []RouteTable{protected, BrowserRoutes(protected), AdminRoutes(), ConsoleRoutes()}
}

// UpstreamPath is the protected API's path of a browser endpoint route:
// the upstream serves both endpoints at the same paths.
func UpstreamPath(path string) string {
	if !OnBrowserEndpoint(path) {
		return path
	}
	if p := strings.TrimPrefix(path, BrowserPath); p != "" {
		return p
	}
	return "/"
}

// OriginHeader is the header the protected API receives on the browser
// endpoint: the request's Origin as the authorizer checked it. The
// gateway cannot add headers to a proxied answer, so the upstream echoes
// it as Access-Control-Allow-Origin, with Vary: Origin.
const OriginHeader = "X-Keyward-Origin"

// BrowserIntegrationHeaders are the headers the protected API receives on
// the browser endpoint: IntegrationHeaders and OriginHeader. Built once:
// the local gateway reads it on every browser request.
var BrowserIntegrationHeaders = func() map[string]string {
	m := maps.Clone(IntegrationHeaders)
	m[OriginHeader] = "context.authorizer.origin"
	return m
}()

// RequestOrigin is the parameter, in API Gateway's syntax, that CORS
// headers echo: the request's Origin. API Gateway leaves out a header
// mapped from an absent one.
const RequestOrigin = "method.request.header.Origin"

// CORSHeaders are the headers every response the gateway makes itself
// carries (every gateway response, and the answer of a path no route
// has), in API Gateway's parameter syntax: the request's origin, never
// "*", so that a page can read the error; no Allow-Credentials, since
// keys travel in Authorization, never in cookies.
func (b Browser) CORSHeaders() map[string]string {
	m := map[string]string{
		"Access-Control-Allow-Origin": RequestOrigin,
		"Vary":                        "'Origin'",
	}
	if len(b.ExposeHeaders) > 0 {
		m["Access-Control-Expose-Headers"] = "'" + strings.Join(b.ExposeHeaders, ", ") + "'"
	}
	return m
}

// PreflightStatus is the status of a preflight's answer.
const PreflightStatus = 204

// PreflightHeaders are the headers of the answer to a preflight on a
// resource with the given methods, in API Gateway's parameter syntax. The
// gateway answers every preflight alike: it carries no key, so the real
// request is decided by the key's allowed origins.
func (b Browser) PreflightHeaders(methods []string) map[string]string {
	m := b.CORSHeaders()
	delete(m, "Access-Control-Expose-Headers")
	m["Access-Control-Allow-Methods"] = "'" + strings.Join(methods, ", ") + "'"
	m["Access-Control-Allow-Headers"] = "'" + strings.Join(b.AllowHeaders, ", ") + "'"
	m["Access-Control-Max-Age"] = "'" + strconv.Itoa(b.MaxAgeSeconds) + "'"
	return m
}
