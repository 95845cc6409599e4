// Package gateway emulates, for the local stack, the API Gateway REST API
// (v1) that the CDK stack deploys in front of the protected API and
// keyward's admin API: route matching, the Lambda REQUEST authorizer and
// its result cache, policy evaluation, usage-plan throttling, gateway
// responses, and the mapping of the authorizer's context to the backend's
// X-Keyward-* headers. It reads the configuration the CDK stack deploys
// (config.Gateway and the compiled route table), never a copy of it.
//
// Deliberate deviations from API Gateway:
//
//   - Routes with auth "iam" take "Authorization: Bearer <operator token>"
//     instead of SigV4: no Authorization header gets
//     MISSING_AUTHENTICATION_TOKEN, another scheme INCOMPLETE_SIGNATURE and
//     a wrong token INVALID_SIGNATURE (403 each, as AWS answers unsigned,
//     malformed and badly signed requests), and failed attempts are
//     throttled per client address (429).
//   - Header names reach the authorizer in Go's canonical form
//     ("Cloudfront-Forwarded-Proto"), since net/http does not keep the
//     client's spelling; the authorizer looks headers up case-insensitively.
//     API Gateway's own headers (CloudFront-*, X-Amzn-Trace-Id,
//     X-Forwarded-*) are not added to the event.
//   - A request that repeats an identity source header is never answered
//     from the cache: the authorizer decides it (and refuses two
//     credentials), where API Gateway would key its cache by the last value.
//   - Paths with ';', a backslash, an encoded '%', or NUL are refused (400)
//     before routing; API Gateway matches them to a route and forwards them
//     decoded, so the upstream must treat path parameters as opaque values
//     (docs/authorizer.md).
//   - A request line and headers over 10,240 bytes get 431 in the error
//     envelope; API Gateway refuses them too, with a status it does not
//     document.
//   - Only the usage plans' per-key rate and burst are enforced: no
//     account, stage or method throttling, no quotas.
//   - Only policies are cached: an "Unauthorized" refusal or a failure is
//     asked again on the next request.
//
// As in AWS, a decision being made while the cache is flushed is cached
// when it arrives (which is why a change is flushed twice, see
// authorizer.Invalidate), and an authorizer's usageIdentifierKey in no
// usage plan gets INVALID_API_KEY, which keyward leaves to DEFAULT_4XX: 403
// "Forbidden".
package gateway

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/events"

	"github.com/keyward/keyward/pkg/admin"
	"github.com/keyward/keyward/pkg/authorizer"
	"github.com/keyward/keyward/pkg/config"
	"github.com/keyward/keyward/pkg/policy"
	"github.com/keyward/keyward/pkg/route"
)

// Authorizer is the Lambda REQUEST authorizer's handler
// (authorizer.Authorizer in the local stack).
type Authorizer interface {
	Authorize(ctx context.Context, req events.APIGatewayCustomAuthorizerRequestTypeRequest) (events.APIGatewayCustomAuthorizerResponse, error)
}

// Config configures a Gateway.
type Config struct {
	// Routes is the compiled route table of config.Routes and
	// config.AdminRoutes.
	Routes     *route.Table
	Gateway    config.Gateway
	Authorizer Authorizer
	// Admin is keyward's admin API; it receives the /v1 routes.
	Admin http.Handler
	// Upstream is the protected API: Echo, or Proxy to the user's service.
	Upstream http.Handler
	// OperatorToken stands in for IAM on routes with auth "iam"; empty
	// refuses them all.
	OperatorToken string
	// Region, AccountID, APIID and Stage name the API in method ARNs;
	// they default to "local", "000000000000", "keyward" and "local".
	Region, AccountID, APIID, Stage string
	Now                             func() time.Time
	Logger                          *slog.Logger
}

// OperatorID is the audit identity of requests made with the operator
// token.
const OperatorID = "operator:local"

// API Gateway's limits, which the emulation enforces.
const (
	// MaxHead bounds the request line and headers together.
	MaxHead = 10240
	// MaxPayload bounds a request body (413 beyond it).
	MaxPayload = 10 << 20
	// IntegrationTimeout bounds the upstream's answer (504 beyond it).
	IntegrationTimeout = 29 * time.Second
)

// maxCacheBytes bounds the authorizer cache's keys and decisions; past it
// expired entries go, and if that is not enough the cache starts over,
// which costs only authorizer calls.
const maxCacheBytes = 16 << 20

// Gateway is the emulated API Gateway stage, an http.Handler. It is also
// the admin API's admin.RateLimits and admin.CacheFlusher.
type Gateway struct {
	cfg       Config
	arnPrefix string // through the stage and its slash
	ttl       time.Duration
	tiers     map[string]config.Tier

	mu         sync.Mutex
	cache      map[string]cached
	cacheBytes int
	plans      map[string]*plan

	operatorFailures failures
}

type cached struct {
	resp    events.APIGatewayCustomAuthorizerResponse
	expires time.Time
	size    int // bytes counted against maxCacheBytes
}

// plan is one identity's usage plan: its tier and its token bucket.
type plan struct {
	tier   config.Tier
	tokens float64
	at     time.Time
}

var (
	_ admin.RateLimits   = (*Gateway)(nil)
	_ authorizer.Flusher = (*Gateway)(nil)
)

// New returns a Gateway.
func New(cfg Config) (*Gateway, error) {
	if cfg.Routes == nil || cfg.Authorizer == nil || cfg.Admin == nil || cfg.Upstream == nil {
		return nil, errors.New("gateway: routes, authorizer, admin and upstream are required")
	}
	if err := cfg.Gateway.Validate(); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	cfg.Region, cfg.AccountID = cmp.Or(cfg.Region, "local"), cmp.Or(cfg.AccountID, "000000000000")
	cfg.APIID, cfg.Stage = cmp.Or(cfg.APIID, "keyward"), cmp.Or(cfg.Stage, "local")
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	g := &Gateway{
		cfg:       cfg,
		arnPrefix: fmt.Sprintf("arn:aws:execute-api:%s:%s:%s/%s/", cfg.Region, cfg.AccountID, cfg.APIID, cfg.Stage),
		ttl:       time.Duration(cfg.Gateway.Authorizer.CacheTTLSeconds) * time.Second,
		tiers:     map[string]config.Tier{},
		cache:     map[string]cached{},
		plans:     map[string]*plan{},

		operatorFailures: failures{buckets: map[string]*bucket{}},
	}
	for _, t := range cfg.Gateway.RateLimitTiers {
		g.tiers[t.Name] = t
	}
	return g, nil
}

// Flush clears the authorizer cache, as FlushStageAuthorizersCache does:
// decisions still being made are cached when they arrive.
func (g *Gateway) Flush(context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	clear(g.cache)
	g.cacheBytes = 0
	return nil
}

// Provision puts identity (an authorizer's usageIdentifierKey) in the
// usage plan of tier. Moving it to another tier starts a full bucket, as
// another usage plan would.
func (g *Gateway) Provision(_ context.Context, identity, tier string) error {
	t, ok := g.tiers[tier]
	if !ok {
		return fmt.Errorf("gateway: provisioning %q: unknown rate limit tier %q", identity, tier)
	}
	if identity == "" {
		return errors.New("gateway: provisioning an empty identity")
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if p, ok := g.plans[identity]; !ok || p.tier != t {
		g.plans[identity] = &plan{tier: t, tokens: float64(t.Burst), at: g.cfg.Now()}
	}
	return nil
}

// Remove takes identity out of its usage plan; its requests are refused
// from then on.
func (g *Gateway) Remove(_ context.Context, identity string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.plans, identity)
	return nil
}

// call is one request on its way through the gateway.
type call struct {
	w         *recorder
	r         *http.Request
	id        string
	sourceIP  string
	route     route.Route
	matched   bool
	principal string // the authorizer's principalId, for the access log
	rendered  string // the gateway response type, when the gateway answered
}

// ServeHTTP handles one request as API Gateway would.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := g.cfg.Now()
	c := &call{w: &recorder{ResponseWriter: w, status: http.StatusOK}, r: r, id: newRequestID(), sourceIP: sourceIP(r)}
	w.Header().Set("Request-Id", c.id)
	switch {
	case headSize(r) > MaxHead:
		g.refuse(c, http.StatusRequestHeaderFieldsTooLarge, fmt.Sprintf("The request line and headers are larger than %d bytes.", MaxHead))
	case r.ContentLength > MaxPayload:
		// API Gateway's own answer, which it does not let a deployment
		// customize.
		c.w.Header().Set("Content-Type", "application/json")
		c.w.WriteHeader(http.StatusRequestEntityTooLarge)
		_, _ = c.w.Write([]byte(`{"message":"Request Too Long"}`))
	case !plainPath(r.URL):
		g.refuse(c, http.StatusBadRequest, "The request path holds a ';', a backslash, an encoded '%' or a NUL, which this API does not accept.")
	default:
		r.Body = http.MaxBytesReader(c.w, r.Body, MaxPayload)
		g.serve(c)
	}
	var routeName string
	if c.matched {
		routeName = c.route.Method + " " + c.route.Path
	}
	// Never a header: the Authorization header is a credential.
	g.cfg.Logger.LogAttrs(r.Context(), slog.LevelInfo, "gateway request",
		slog.String("request_id", c.id), slog.String("method", r.Method), slog.String("path", r.URL.Path),
		slog.String("route", routeName), slog.Int("status", c.w.status), slog.String("gateway_response", c.rendered),
		slog.String("principal", c.principal), slog.String("source_ip", c.sourceIP),
		slog.Float64("latency_ms", float64(g.cfg.Now().Sub(start).Microseconds())/1000))
}

func (g *Gateway) serve(c *call) {
	rt, params, ok := g.cfg.Routes.Match(c.r.Method, c.r.URL.Path)
	if !ok || !cleanPath(c.r.URL) {
		// An unknown path, or an unknown method on a known one: the mock
		// integrations the CDK stack puts there.
		g.write(c, g.cfg.Gateway.NoRoute.Status, http.Header{"Content-Type": {"application/json"}}, []byte(g.cfg.Gateway.NoRoute.Template))
		c.rendered = "NO_ROUTE"
		return
	}
	c.route, c.matched = rt, true
	switch rt.Auth {
	case config.AuthNone:
		g.forward(c, admin.Caller{RequestID: c.id}, nil)
	case config.AuthIAM:
		if !g.operator(c) {
			return
		}
		g.forward(c, admin.Caller{Operator: true, OperatorID: OperatorID, RequestID: c.id}, nil)
	default:
		g.authorize(c, params)
	}
}

// operator checks the operator token, the local stand-in for a SigV4
// signature, and answers the request when it is missing or wrong.
func (g *Gateway) operator(c *call) bool {
	now := g.cfg.Now()
	if wait := g.operatorFailures.wait(c.sourceIP, now); wait > 0 {
		c.w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
		g.refuse(c, http.StatusTooManyRequests, "Too many requests with a wrong operator token from this address; retry after the Retry-After delay.")
		return false
	}
	vals := c.r.Header.Values("Authorization")
	var responseType string
	switch {
	case len(vals) == 0 || vals[0] == "":
		responseType = "MISSING_AUTHENTICATION_TOKEN"
	case len(vals) > 1:
		responseType = "INCOMPLETE_SIGNATURE"
	default:
		scheme, cred, _ := strings.Cut(vals[0], " ")
		switch {
		case !strings.EqualFold(scheme, "Bearer"):
			responseType = "INCOMPLETE_SIGNATURE"
		case g.cfg.OperatorToken == "" || subtle.ConstantTimeCompare([]byte(cred), []byte(g.cfg.OperatorToken)) != 1:
			responseType = "INVALID_SIGNATURE"
		}
	}
	if responseType == "" {
		return true
	}
	g.operatorFailures.fail(c.sourceIP, now)
	g.reply(c, responseType, nil)
	return false
}

// authorize runs a key-authorized route: the cached or fresh authorizer
// decision, the policy, the usage plan, then the target.
func (g *Gateway) authorize(c *call, params map[string]string) {
	arn := policy.MethodARN{Prefix: g.arnPrefix, Method: c.r.Method, Path: strings.TrimPrefix(c.r.URL.Path, "/")}.String()
	key, present, cacheable := g.cacheKey(c)
	if g.ttl > 0 && !present {
		g.reply(c, "UNAUTHORIZED", nil)
		return
	}
	var resp events.APIGatewayCustomAuthorizerResponse
	hit := false
	if cacheable {
		resp, hit = g.lookup(key)
	}
	if !hit {
		out, err := g.cfg.Authorizer.Authorize(c.r.Context(), g.event(c, params, arn))
		switch {
		// API Gateway knows a refusal only by this exact error message.
		case err != nil && err.Error() == "Unauthorized":
			g.reply(c, "UNAUTHORIZED", nil)
			return
		case err != nil:
			g.cfg.Logger.ErrorContext(c.r.Context(), "authorizer failed", "request_id", c.id, "error", err)
			g.reply(c, "AUTHORIZER_FAILURE", nil)
			return
		}
		if resp, err = received(out); err != nil {
			g.cfg.Logger.ErrorContext(c.r.Context(), "authorizer response refused", "request_id", c.id, "error", err)
			g.reply(c, "AUTHORIZER_CONFIGURATION_ERROR", nil)
			return
		}
		if cacheable {
			g.remember(key, resp)
		}
	}
	c.principal = resp.PrincipalID
	vars := map[string]string{}
	for name, v := range resp.Context {
		vars["context.authorizer."+name] = contextString(v)
	}
	if !policy.Allows(resp.PolicyDocument, arn) {
		g.reply(c, "ACCESS_DENIED", vars)
		return
	}
	switch known, ok := g.admit(resp.UsageIdentifierKey); {
	case !known:
		g.reply(c, "INVALID_API_KEY", vars)
		return
	case !ok:
		g.reply(c, "THROTTLED", vars)
		return
	}
	str := func(name string) string { return contextString(resp.Context[name]) }
	g.forward(c, admin.Caller{TenantID: str("tenant_id"), KeyID: str("key_id"), Environment: str("environment"),
		Scopes: strings.Fields(str("scopes")), RequestID: c.id}, resp.Context)
}

// headerSource prefixes identity sources that name a request header.
const headerSource = "method.request.header."

// cacheKey returns the values of the identity sources, each
// length-prefixed so that no two different requests share a key; whether
// every source is present and non-empty; and whether the decision may be
// cached under the key: only when each source has one value, which is
// then the credential the authorizer decides on (it refuses two).
func (g *Gateway) cacheKey(c *call) (key string, present, cacheable bool) {
	var b strings.Builder
	present, cacheable = true, g.ttl > 0
	for _, src := range g.cfg.Gateway.Authorizer.IdentitySources {
		v := ""
		if name, ok := strings.CutPrefix(src, headerSource); ok {
			vals := c.r.Header.Values(name)
			if len(vals) > 1 {
				cacheable = false
			}
			if len(vals) > 0 {
				v = vals[len(vals)-1]
			}
		} else if src == config.IdentitySourceIP {
			v = c.sourceIP
		}
		if v == "" {
			present = false
		}
		b.WriteString(strconv.Itoa(len(v)) + ":" + v + ";")
	}
	return b.String(), present, cacheable && present
}

// lookup returns a live cached decision; an expired one is evicted.
func (g *Gateway) lookup(key string) (events.APIGatewayCustomAuthorizerResponse, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	e, ok := g.cache[key]
	if !ok {
		return events.APIGatewayCustomAuthorizerResponse{}, false
	}
	if !g.cfg.Now().Before(e.expires) {
		delete(g.cache, key)
		g.cacheBytes -= e.size
		return events.APIGatewayCustomAuthorizerResponse{}, false
	}
	return e.resp, true
}

// remember caches a decision for the TTL, within maxCacheBytes.
func (g *Gateway) remember(key string, resp events.APIGatewayCustomAuthorizerResponse) {
	size := len(key) + decisionSize(resp)
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.cfg.Now()
	if old, ok := g.cache[key]; ok {
		delete(g.cache, key)
		g.cacheBytes -= old.size
	}
	if g.cacheBytes+size > maxCacheBytes {
		for k, e := range g.cache {
			if !now.Before(e.expires) {
				delete(g.cache, k)
				g.cacheBytes -= e.size
			}
		}
	}
	if g.cacheBytes+size > maxCacheBytes {
		clear(g.cache)
		g.cacheBytes = 0
	}
	g.cache[key] = cached{resp: resp, expires: now.Add(g.ttl), size: size}
	g.cacheBytes += size
}

// decisionSize estimates the bytes a cached decision holds, generously:
// map and struct overheads count as a fixed amount per entry.
func decisionSize(resp events.APIGatewayCustomAuthorizerResponse) int {
	n := 256 + len(resp.PrincipalID) + len(resp.UsageIdentifierKey)
	for _, st := range resp.PolicyDocument.Statement {
		n += 64
		for _, r := range st.Resource {
			n += len(r) + 16
		}
	}
	for k, v := range resp.Context {
		n += len(k) + len(contextString(v)) + 32
	}
	return n
}

// event builds the REQUEST authorizer event as API Gateway does.
func (g *Gateway) event(c *call, params map[string]string, arn string) events.APIGatewayCustomAuthorizerRequestTypeRequest {
	r := c.r
	headers, multi := map[string]string{}, map[string][]string{}
	if r.Host != "" {
		headers["Host"], multi["Host"] = r.Host, []string{r.Host}
	}
	for name, vals := range r.Header {
		if len(vals) > 0 {
			headers[name], multi[name] = vals[len(vals)-1], slices.Clone(vals)
		}
	}
	var query map[string]string
	var multiQuery map[string][]string
	if q := r.URL.Query(); len(q) > 0 {
		query, multiQuery = map[string]string{}, map[string][]string(q)
		for name, vals := range q {
			query[name] = vals[len(vals)-1]
		}
	}
	return events.APIGatewayCustomAuthorizerRequestTypeRequest{
		Type:                            "REQUEST",
		MethodArn:                       arn,
		Resource:                        c.route.Path,
		Path:                            r.URL.Path,
		HTTPMethod:                      r.Method,
		Headers:                         headers,
		MultiValueHeaders:               multi,
		QueryStringParameters:           query,
		MultiValueQueryStringParameters: multiQuery,
		PathParameters:                  params,
		RequestContext: events.APIGatewayCustomAuthorizerRequestTypeRequestContext{
			Path:         "/" + g.cfg.Stage + r.URL.Path,
			AccountID:    g.cfg.AccountID,
			ResourceID:   resourceID(c.route.Path),
			Stage:        g.cfg.Stage,
			RequestID:    c.id,
			Identity:     events.APIGatewayCustomAuthorizerRequestTypeRequestIdentity{SourceIP: c.sourceIP},
			ResourcePath: c.route.Path,
			HTTPMethod:   r.Method,
			APIID:        g.cfg.APIID,
		},
	}
}

// received checks the authorizer's response as API Gateway checks it: a
// principal, a policy, and a context of strings, numbers and booleans only.
func received(out events.APIGatewayCustomAuthorizerResponse) (events.APIGatewayCustomAuthorizerResponse, error) {
	if out.PrincipalID == "" || len(out.PolicyDocument.Statement) == 0 {
		return out, errors.New("gateway: authorizer response lacks a principalId or a policy")
	}
	// Checked as AWS checks the JSON a Lambda returns, without encoding it:
	// this runs on every uncached request. The copy keeps a cached answer
	// safe from whoever reads it.
	ctx := make(map[string]any, len(out.Context))
	for name, v := range out.Context {
		switch v.(type) {
		case string, bool, float64, float32, int, int32, int64, uint, uint32, uint64:
		default:
			return out, fmt.Errorf("gateway: authorizer context %q is not a string, number or boolean", name)
		}
		ctx[name] = v
	}
	out.Context = ctx
	return out, nil
}

// admit counts a request against identity's usage plan: known is false
// when no plan holds identity, ok when its bucket is empty.
func (g *Gateway) admit(identity string) (known, ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	p, known := g.plans[identity]
	if !known {
		return false, false
	}
	now := g.cfg.Now()
	if d := now.Sub(p.at); d > 0 {
		p.tokens = min(float64(p.tier.Burst), p.tokens+d.Seconds()*float64(p.tier.RequestsPerMinute)/60)
		p.at = now
	}
	if p.tokens < 1 {
		return true, false
	}
	p.tokens--
	return true, true
}

// forward hands an admitted request to its target: the admin API, which
// learns its caller from the context, or the upstream, which learns it from
// the headers the CDK stack maps from the authorizer's context
// (config.IntegrationHeaders), applied alike here.
func (g *Gateway) forward(c *call, caller admin.Caller, authz map[string]any) {
	// config.Routes reserves /v1 for the admin API.
	if c.route.Path == "/v1" || strings.HasPrefix(c.route.Path, "/v1/") {
		g.cfg.Admin.ServeHTTP(c.w, c.r.WithContext(admin.WithCaller(c.r.Context(), caller)))
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
	for header, source := range config.IntegrationHeaders {
		if static, ok := strings.CutPrefix(source, "'"); ok {
			out.Header.Set(header, strings.TrimSuffix(static, "'"))
		} else if v, ok := authz[strings.TrimPrefix(source, contextSource)]; ok {
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

// cleanPath refuses paths that a backend could resolve to another route
// than the one authorized: dot segments and encoded slashes.
func cleanPath(u *url.URL) bool {
	if strings.Contains(strings.ToLower(u.EscapedPath()), "%2f") {
		return false
	}
	for _, seg := range strings.Split(u.Path, "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// reply answers with a gateway response.
func (g *Gateway) reply(c *call, responseType string, vars map[string]string) {
	all := map[string]string{"context.requestId": c.id, "context.error.message": builtin(responseType).message}
	for k, v := range vars {
		all[k] = v
	}
	status, header, body := Render(g.cfg.Gateway, responseType, all)
	g.write(c, status, header, body)
	c.rendered = responseType
}

// refuse answers a request the emulation refuses before routing, in the
// error envelope of DEFAULT_4XX with its own status and message.
func (g *Gateway) refuse(c *call, status int, message string) {
	_, header, body := Render(g.cfg.Gateway, "DEFAULT_4XX", map[string]string{"context.requestId": c.id, "context.error.message": message})
	g.write(c, status, header, body)
}

func (g *Gateway) write(c *call, status int, header http.Header, body []byte) {
	for k, v := range header {
		c.w.Header()[k] = v
	}
	c.w.WriteHeader(status)
	_, _ = c.w.Write(body)
}

// headSize is the size of the request line and headers as sent.
func headSize(r *http.Request) int {
	n := len(r.Method) + 1 + len(r.RequestURI) + 1 + len(r.Proto) + 2
	if r.Host != "" {
		n += len("Host: ") + len(r.Host) + 2
	}
	for name, vals := range r.Header {
		for _, v := range vals {
			n += len(name) + 2 + len(v) + 2
		}
	}
	return n + 2
}

// plainPath refuses the path forms that backends resolve differently from
// the route table (Tomcat's ";" parameters, Windows' backslashes and its
// trailing dots and spaces, a second decoding of "%25", C strings' NUL,
// overlong or invalid UTF-8, control characters), so that no request
// authorized for one route reaches another.
func plainPath(u *url.URL) bool {
	raw := strings.ToLower(u.EscapedPath())
	if strings.Contains(raw, ";") || strings.Contains(raw, "%5c") || strings.Contains(raw, "%25") || !utf8.ValidString(u.Path) {
		return false
	}
	for _, r := range u.Path {
		if r == '\\' || unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp) {
			return false
		}
	}
	for _, seg := range strings.Split(u.Path, "/") {
		if seg != "" && strings.TrimRight(seg, ". ") == "" {
			return false // ".", "..", "...", ". ", which some servers read as ".."
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

// sourceIP is the connection's address: never X-Forwarded-For, which the
// client writes.
func sourceIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// newRequestID returns a random UUID (version 4), API Gateway's request id
// form.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// resourceID is a stable id per resource path, as API Gateway assigns
// each resource one.
func resourceID(path string) string {
	sum := sha256.Sum256([]byte(path))
	return hex.EncodeToString(sum[:3])
}

// recorder remembers the status for the access log.
type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController (the reverse proxy's flushes) reach
// the connection.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
