// Package config holds the configuration that the authorizer, the CDK
// stack and the local stack share, so that the three cannot drift: the
// route table of the protected API (routes.json, the platform's to edit),
// keyward's own admin routes (admin-routes.json), the gateway settings
// (gateway.json: authorizer caching, usage plans, gateway responses), and
// the deployed functions' environment (Deployment: every KEYWARD_*
// variable, set by the CDK stack and parsed by the functions).
package config

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"

	"github.com/keyward/keyward/pkg/store"
)

//go:embed routes.json admin-routes.json gateway.json
var files embed.FS

// Route auth modes.
const (
	AuthKey  = ""     // the keyward authorizer, with Scope
	AuthIAM  = "iam"  // SigV4 (operator routes); the local stack uses an operator token
	AuthNone = "none" // public (GitHub's secret scanning callback verifies its own signature)
)

// Route maps one method and path pattern to what it needs. Path segments
// are literals, {name} (one segment) or a final {name+} (the rest).
type Route struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	Scope  string `json:"scope,omitempty"`
	Auth   string `json:"auth,omitempty"`
}

// RouteTable is the content of a routes file.
type RouteTable struct {
	Routes []Route `json:"routes"`
}

// Authorizer is how API Gateway invokes and caches the authorizer.
type Authorizer struct {
	// CacheTTLSeconds is API Gateway's authorizer result cache TTL; 0
	// turns caching off. At most 3600.
	CacheTTLSeconds int `json:"cache_ttl_seconds"`
	// IdentitySources are the request parts the cache is keyed by, in
	// API Gateway's syntax; with caching on every one must be present.
	IdentitySources []string `json:"identity_sources"`
}

// Identity sources keyward knows how to build and emulate.
const (
	IdentityAuthorization = "method.request.header.Authorization"
	IdentitySourceIP      = "context.identity.sourceIp"
	IdentityOrigin        = "method.request.header.Origin"
)

// Tier is one usage plan: a rate limit keys can be given.
type Tier struct {
	Name              string `json:"name"`
	RequestsPerMinute int    `json:"requests_per_minute"`
	Burst             int    `json:"burst"`
}

// RateLimit is the tier's rate limit as a key holds it.
func (t Tier) RateLimit() store.RateLimit {
	return store.RateLimit{RequestsPerMinute: t.RequestsPerMinute, Burst: t.Burst}
}

// TierOf finds the tier of a rate limit: API Gateway enforces limits
// through fixed usage plans, so a key's limit must be one of them. A zero
// burst matches any tier of the rate.
func (g Gateway) TierOf(r store.RateLimit) (Tier, bool) {
	for _, t := range g.RateLimitTiers {
		if t.RequestsPerMinute == r.RequestsPerMinute && (r.Burst == 0 || r.Burst == t.Burst) {
			return t, true
		}
	}
	return Tier{}, false
}

// HighestTier is the tier with the most requests per minute: what a
// tenant's first key gets, so that the keys it makes can have any tier.
func (g Gateway) HighestTier() Tier {
	var top Tier
	for _, t := range g.RateLimitTiers {
		if t.RequestsPerMinute > top.RequestsPerMinute {
			top = t
		}
	}
	return top
}

// GatewayResponse renders one of API Gateway's own responses. Templates
// are not VTL: API Gateway only substitutes $context variables in them.
type GatewayResponse struct {
	Status   int               `json:"status,omitempty"` // 0 keeps the gateway's status
	Headers  map[string]string `json:"headers,omitempty"`
	Template string            `json:"template"`
}

// Usage identity modes: which API Gateway API key (and so which usage
// plan budget) a request counts against.
const (
	UsagePerKey    = "key"
	UsagePerTenant = "tenant"
)

// Gateway is the content of gateway.json.
type Gateway struct {
	Authorizer     Authorizer `json:"authorizer"`
	UsageIdentity  string     `json:"usage_identity"`
	RateLimitTiers []Tier     `json:"rate_limit_tiers"`
	// NoRoute answers a path or method the route tables do not have: in
	// AWS a mock integration on every resource and a greedy {proxy+}
	// child, so that API Gateway's MISSING_AUTHENTICATION_TOKEN is left
	// to what it also means, an operator route without a signature.
	NoRoute          GatewayResponse            `json:"no_route"`
	GatewayResponses map[string]GatewayResponse `json:"gateway_responses"`
	// Browser is the browser endpoint's CORS (BrowserPath). Every
	// response the gateway makes carries its CORSHeaders.
	Browser Browser `json:"browser"`
	// Alerts are the suspicious-use rules' thresholds.
	Alerts Alerts `json:"alerts"`
}

// GatewayResponseTypes are the response types keyward renders, each of
// which gateway.json must define.
var GatewayResponseTypes = []string{
	"UNAUTHORIZED", "ACCESS_DENIED", "THROTTLED", "QUOTA_EXCEEDED", "MISSING_AUTHENTICATION_TOKEN",
	"INCOMPLETE_SIGNATURE", "INVALID_SIGNATURE", "EXPIRED_TOKEN",
	"AUTHORIZER_FAILURE", "AUTHORIZER_CONFIGURATION_ERROR", "DEFAULT_4XX", "DEFAULT_5XX",
}

// Routes returns the protected API's route table: the file at path, or
// the shipped demo table when path is empty.
func Routes(path string) (RouteTable, error) {
	var data []byte
	var err error
	if path == "" {
		data, err = files.ReadFile("routes.json")
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return RouteTable{}, fmt.Errorf("config: routes: %w", err)
	}
	var t RouteTable
	if err := decodeStrict(data, &t); err != nil {
		return RouteTable{}, fmt.Errorf("config: routes %s: %w", path, err)
	}
	for _, r := range t.Routes {
		if AdminFunctionPath(r.Path) {
			return RouteTable{}, fmt.Errorf("config: routes: %s %s: /v1 and /console belong to keyward's admin function", r.Method, r.Path)
		}
		if OnBrowserEndpoint(r.Path) {
			return RouteTable{}, fmt.Errorf("config: routes: %s %s: %s is the browser endpoint, which serves every route again below it", r.Method, r.Path, BrowserPath)
		}
		// Only a key-authorized route gets IntegrationHeaders, which
		// replace whatever the client sent under those names; on any other
		// route a client could pose as a tenant to the upstream.
		if r.Auth != AuthKey {
			return RouteTable{}, fmt.Errorf("config: routes: %s %s: every route of the protected API is authorized by a key (a scope, no auth)", r.Method, r.Path)
		}
	}
	return t, nil
}

// IntegrationHeaders are the headers the protected API receives on every
// route, mapped by the gateway in API Gateway's parameter syntax: the
// authorizer's context (context.authorizer.<name>) or a static value in
// single quotes. A mapping replaces what the client sent under that name,
// so the upstream never receives the client's Authorization header (the
// secret key itself) nor a client's own value of these headers (the
// browser endpoint maps OriginHeader as well, BrowserIntegrationHeaders).
// The CDK stack maps exactly these; the local emulation applies them alike.
var IntegrationHeaders = map[string]string{
	"X-Keyward-Tenant-Id":   "context.authorizer.tenant_id",
	"X-Keyward-Key-Id":      "context.authorizer.key_id",
	"X-Keyward-Environment": "context.authorizer.environment",
	"X-Keyward-Scopes":      "context.authorizer.scopes",
	"Authorization":         "'" + RedactedAuthorization + "'",
}

// RedactedAuthorization is the Authorization header the upstream receives
// in place of the client's.
const RedactedAuthorization = "keyward-verified"

// AdminRoutes returns keyward's own admin API routes.
func AdminRoutes() RouteTable {
	var t RouteTable
	data, _ := files.ReadFile("admin-routes.json")
	if err := decodeStrict(data, &t); err != nil {
		panic("config: shipped admin-routes.json: " + err.Error())
	}
	return t
}

// LoadGateway returns the shipped gateway settings, validated.
func LoadGateway() (Gateway, error) { return GatewayFile("") }

// GatewayFile returns the gateway settings in the file at path (the
// shipped ones when path is empty), validated.
func GatewayFile(path string) (Gateway, error) {
	var data []byte
	var err error
	if path == "" {
		path = "gateway.json"
		data, err = files.ReadFile(path)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return Gateway{}, fmt.Errorf("config: %w", err)
	}
	var g Gateway
	if err := decodeStrict(data, &g); err != nil {
		return Gateway{}, fmt.Errorf("config: %s: %w", path, err)
	}
	if g.Browser.AllowHeaders == nil && g.Browser.ExposeHeaders == nil && g.Browser.MaxAgeSeconds == 0 {
		g.Browser = DefaultBrowser
	}
	return g, g.Validate()
}

// Validate checks settings that API Gateway would refuse or that would
// break keyward's guarantees.
func (g Gateway) Validate() error {
	a := g.Authorizer
	if a.CacheTTLSeconds < 0 || a.CacheTTLSeconds > 3600 {
		return fmt.Errorf("config: authorizer cache TTL %d outside 0..3600", a.CacheTTLSeconds)
	}
	if !slices.Contains(a.IdentitySources, IdentityAuthorization) {
		return fmt.Errorf("config: identity sources must include %s", IdentityAuthorization)
	}
	for _, s := range a.IdentitySources {
		if s == IdentityOrigin {
			// Server-to-server requests send no Origin, and an identity
			// source cannot be optional: the browser endpoint adds it.
			return fmt.Errorf("config: identity source %s belongs to the browser endpoint (%s), which adds it", s, BrowserPath)
		}
		if s != IdentityAuthorization && s != IdentitySourceIP {
			return fmt.Errorf("config: identity source %q is not one keyward supports", s)
		}
	}
	// The cache must be keyed by the client address, or a cached Allow
	// would let a key with an IP allow-list be used from another address.
	if a.CacheTTLSeconds > 0 && !slices.Contains(a.IdentitySources, IdentitySourceIP) {
		return fmt.Errorf("config: with caching on, identity sources must include %s", IdentitySourceIP)
	}
	if err := g.AlertRules().Validate(); err != nil {
		return err
	}
	if g.UsageIdentity != UsagePerKey && g.UsageIdentity != UsagePerTenant {
		return fmt.Errorf("config: usage_identity %q must be %q or %q", g.UsageIdentity, UsagePerKey, UsagePerTenant)
	}
	if len(g.RateLimitTiers) == 0 {
		return fmt.Errorf("config: no rate limit tiers")
	}
	for _, t := range g.RateLimitTiers {
		if t.Name == "" || t.RequestsPerMinute < 1 || t.Burst < 1 {
			return fmt.Errorf("config: rate limit tier %+v needs a name, requests_per_minute and burst", t)
		}
	}
	for _, rt := range GatewayResponseTypes {
		r, ok := g.GatewayResponses[rt]
		if !ok {
			return fmt.Errorf("config: gateway response %s missing", rt)
		}
		if !json.Valid([]byte(strings.ReplaceAll(strings.ReplaceAll(r.Template, "$context.error.messageString", `""`), "$", ""))) {
			return fmt.Errorf("config: gateway response %s: template is not JSON", rt)
		}
		for h := range r.Headers {
			if _, cors := g.Browser.CORSHeaders()[http.CanonicalHeaderKey(h)]; cors || strings.HasPrefix(strings.ToLower(h), "access-control-") {
				return fmt.Errorf("config: gateway response %s: header %s is the browser endpoint's CORS, which every gateway response carries", rt, h)
			}
		}
	}
	for rt := range g.GatewayResponses {
		if !slices.Contains(GatewayResponseTypes, rt) {
			return fmt.Errorf("config: gateway response %s is not one keyward renders", rt)
		}
	}
	if g.NoRoute.Status < 400 || g.NoRoute.Status > 499 || !json.Valid([]byte(g.NoRoute.Template)) || strings.Contains(g.NoRoute.Template, "$") {
		return fmt.Errorf("config: no_route needs a 4XX status and a JSON template without variables")
	}
	return g.Browser.validate()
}

func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data")
	}
	return nil
}

// AdminFunctionPath reports whether a route's path is the admin function's
// (the admin API under /v1, the console under ConsolePath), which no
// protected API's route may claim.
func AdminFunctionPath(path string) bool {
	for _, prefix := range []string{"/v1", ConsolePath} {
		if path == prefix || strings.HasPrefix(path, prefix+"/") {
			return true
		}
	}
	return false
}
