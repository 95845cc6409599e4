// Package gateway emulates, for the local stack, the API Gateway REST API
// (v1) that the CDK stack deploys in front of the protected API and
// keyward's admin API: route matching, the Lambda REQUEST authorizer and
// its result cache, policy evaluation, usage-plan throttling, gateway
// responses, the mapping of the authorizer's context to the backend's
// X-Keyward-* headers, and the Lambda proxy integration of the admin API
// (the proxy event, with the authorizer's context or the operator's IAM
// identity in its request context). It reads the configuration the CDK
// stack deploys (config.Gateway and the compiled route table), never a
// copy of it.
//
// The files: gateway.go checks and routes a request; authorize.go runs
// the authorizer and the operator token check (failures.go throttles
// wrong tokens); cache.go caches decisions; plans.go holds the usage
// plans; forward.go hands an admitted request to the upstream (upstream.go:
// Echo or Proxy) or, through lambda.go, to the admin function;
// responses.go and render.go answer with gateway responses.
//
// Deliberate deviations from API Gateway:
//
//   - Routes with auth "iam" take "Authorization: Bearer <operator token>"
//     instead of SigV4: no Authorization header gets
//     MISSING_AUTHENTICATION_TOKEN, another scheme INCOMPLETE_SIGNATURE and
//     a wrong token INVALID_SIGNATURE (403 each, as AWS answers unsigned,
//     malformed and badly signed requests), and failed attempts are
//     throttled per client address (429). The admin function then sees
//     Config.OperatorARN, a session of the operator role, as the
//     request's identity.userArn, as if that session had signed it.
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
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/events"

	"github.com/keyward/keyward/pkg/accesslog"
	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/authorizer"
	"github.com/keyward/keyward/pkg/config"
	"github.com/keyward/keyward/pkg/route"
	"github.com/keyward/keyward/pkg/usage"
)

// Authorizer is the Lambda REQUEST authorizer's handler
// (authorizer.Authorizer in the local stack).
type Authorizer interface {
	Authorize(ctx context.Context, req events.APIGatewayCustomAuthorizerRequestTypeRequest) (events.APIGatewayCustomAuthorizerResponse, error)
}

// LambdaProxy is a Lambda function's handler behind a proxy integration,
// such as httpadapter.New(h).ProxyWithContext.
type LambdaProxy func(context.Context, events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error)

// Config configures a Gateway.
type Config struct {
	// Routes is the compiled route table of config.Routes and
	// config.AdminRoutes.
	Routes     *route.Table
	Gateway    config.Gateway
	Authorizer Authorizer
	// Admin is keyward's admin function; it receives the /v1 routes as
	// API Gateway's Lambda proxy integration delivers them.
	Admin LambdaProxy
	// Upstream is the protected API: Echo, or Proxy to the user's service.
	Upstream http.Handler
	// OperatorToken stands in for IAM on routes with auth "iam"; empty
	// refuses them all.
	OperatorToken string
	// OperatorARN is the IAM identity the operator token stands for: a
	// session of the stack's operator role
	// (arn:aws:sts::<account>:assumed-role/<role>/<session>), which the
	// admin function receives as identity.userArn. Required with an
	// OperatorToken.
	OperatorARN string
	// Region, AccountID, APIID and Stage name the API in method ARNs;
	// they default to "local", "000000000000", "keyward" and "local".
	Region, AccountID, APIID, Stage string
	Now                             func() time.Time
	Logger                          *slog.Logger
	// Usage, if set, receives every request served with a key, as the
	// stage's access log feeds functions/usage in AWS.
	Usage func(usage.Request)
}

// API Gateway's limits, which the emulation enforces.
const (
	// MaxHead bounds the request line and headers together.
	MaxHead = 10240
	// MaxPayload bounds a request body (413 beyond it).
	MaxPayload = 10 << 20
	// IntegrationTimeout bounds the upstream's answer (504 beyond it).
	IntegrationTimeout = 29 * time.Second
)

// Gateway is the emulated API Gateway stage, an http.Handler. It is also
// the admin API's rate limits (Provision and Remove, as admin.RateLimits)
// and its authorizer.Flusher.
type Gateway struct {
	cfg       Config
	arnPrefix string // through the stage and its slash
	ttl       time.Duration
	tiers     map[string]config.Tier
	// sources are the identity sources of the server endpoint's authorizer
	// attachment and of the browser endpoint's (by OnBrowserEndpoint).
	sources map[bool][]string

	resourceIDs sync.Map // by route path (the route table's: bounded)
	mu          sync.Mutex
	cache       map[string]cached
	cacheBytes  int
	plans       map[string]*plan

	operatorFailures failures
}

var _ authorizer.Flusher = (*Gateway)(nil)

// New returns a Gateway.
func New(cfg Config) (*Gateway, error) {
	if cfg.Routes == nil || cfg.Authorizer == nil || cfg.Admin == nil || cfg.Upstream == nil {
		return nil, errors.New("gateway: routes, authorizer, admin and upstream are required")
	}
	if cfg.OperatorToken != "" && cfg.OperatorARN == "" {
		return nil, errors.New("gateway: an operator token needs the operator ARN it stands for")
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
		sources: map[bool][]string{false: cfg.Gateway.Authorizer.IdentitySources,
			true: cfg.Gateway.BrowserAuthorizer().IdentitySources},
		cache: map[string]cached{},
		plans: map[string]*plan{},

		operatorFailures: failures{buckets: map[string]*bucket{}},
	}
	for _, t := range cfg.Gateway.RateLimitTiers {
		g.tiers[t.Name] = t
	}
	return g, nil
}

// call is one request on its way through the gateway.
type call struct {
	w         *accesslog.Recorder
	r         *http.Request
	id        string
	sourceIP  string
	route     route.Route
	params    map[string]string // the route's path parameters
	matched   bool
	principal string // the authorizer's principalId, for the access log
	tenant    string // the authorizer's tenant_id, for the usage
	rendered  string // the gateway response type, when the gateway answered
}

// ServeHTTP handles one request as API Gateway would.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := g.cfg.Now()
	c := &call{w: accesslog.NewRecorder(w), r: r, id: newRequestID(), sourceIP: sourceIP(r)}
	w.Header().Set("Request-Id", c.id)
	switch {
	case headSize(r) > MaxHead:
		g.refuse(c, http.StatusRequestHeaderFieldsTooLarge, fmt.Sprintf("The request line and headers are larger than %d bytes.", MaxHead))
	case r.ContentLength > MaxPayload:
		g.tooLong(c)
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
	latency := g.cfg.Now().Sub(start)
	// Never a header: the Authorization header is a credential.
	g.cfg.Logger.LogAttrs(r.Context(), slog.LevelInfo, "gateway request",
		slog.String("request_id", c.id), slog.String("method", r.Method), slog.String("path", r.URL.Path),
		slog.String("route", routeName), slog.Int("status", c.w.Status), slog.String("gateway_response", c.rendered),
		slog.String("principal", c.principal), slog.String("source_ip", c.sourceIP),
		slog.Float64("latency_ms", float64(latency.Microseconds())/1000))
	if g.cfg.Usage == nil || c.tenant == "" {
		return
	}
	if id, ok := apikey.ParsePublicID(c.principal); ok {
		g.cfg.Usage(usage.Request{Time: start, KeyID: id, TenantID: c.tenant, Method: r.Method, Route: c.route.Path,
			Status: c.w.Status, SourceIP: c.sourceIP, Latency: latency})
	}
}

func (g *Gateway) serve(c *call) {
	if g.preflight(c) {
		return
	}
	rt, params, ok := g.cfg.Routes.Match(c.r.Method, c.r.URL.Path)
	// API Gateway never leaves the /browser subtree for a server route's
	// parameter or greedy path ({proxy+}): its resources answer no route.
	ok = ok && config.OnBrowserEndpoint(rt.Path) == config.OnBrowserEndpoint(c.r.URL.Path)
	if !ok || !cleanPath(c.r.URL) {
		// An unknown path, or an unknown method on a known one: the mock
		// integrations the CDK stack puts there.
		header := corsHeaders(g.cfg.Gateway, c.r.Header)
		header.Set("Content-Type", "application/json")
		g.write(c, g.cfg.Gateway.NoRoute.Status, header, []byte(g.cfg.Gateway.NoRoute.Template))
		c.rendered = "NO_ROUTE"
		return
	}
	c.route, c.params, c.matched = rt, params, true
	switch rt.Auth {
	case config.AuthNone:
		g.forward(c, admitted{})
	case config.AuthIAM:
		if !g.operator(c) {
			return
		}
		g.forward(c, admitted{userARN: g.cfg.OperatorARN})
	default:
		g.authorize(c)
	}
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

// eventHeaders are the request's headers as API Gateway puts them in an
// event: the last value of each, and all of them, Host included.
func eventHeaders(r *http.Request) (map[string]string, map[string][]string) {
	headers, multi := make(map[string]string, len(r.Header)+1), make(map[string][]string, len(r.Header)+1)
	if r.Host != "" {
		headers["Host"], multi["Host"] = r.Host, []string{r.Host}
	}
	// The values are the request's own: the authorizer only reads them.
	for name, vals := range r.Header {
		if len(vals) > 0 {
			headers[name], multi[name] = vals[len(vals)-1], vals
		}
	}
	return headers, multi
}

// eventQuery is the query string as API Gateway puts it in an event: the
// last value of each parameter, and all of them; null without any.
func eventQuery(r *http.Request) (map[string]string, map[string][]string) {
	if r.URL.RawQuery == "" {
		return nil, nil
	}
	q := r.URL.Query()
	if len(q) == 0 {
		return nil, nil
	}
	query := map[string]string{}
	for name, vals := range q {
		query[name] = vals[len(vals)-1]
	}
	return query, map[string][]string(q)
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
// each resource one; made once per path.
func (g *Gateway) resourceID(path string) string {
	if id, ok := g.resourceIDs.Load(path); ok {
		return id.(string)
	}
	sum := sha256.Sum256([]byte(path))
	id := hex.EncodeToString(sum[:3])
	g.resourceIDs.Store(path, id)
	return id
}
