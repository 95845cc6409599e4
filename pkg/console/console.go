// Package console is keyward's web console: the pages where the members of
// a tenant sign in (OpenID Connect) and manage their keys. It is a
// net/http handler for the paths under /console, which the admin function
// serves in AWS and the local stack serves locally, rendered on the server
// with html/template and a little plain JavaScript from a static file.
//
// The console calls the key lifecycle directly, as the signed-in member:
// the member's role (lifecycle.Role) grants the management scopes the
// admin API's routes need (keys:read, keys:write, keys:admin) and the
// bounds the lifecycle enforces (lifecycle.MemberBounds), and its changes
// are audited as the actor "member:<member id>". The domain decides what a
// role may do; the pages only hide what it cannot.
//
// Routes, all under /console:
//
//	GET  /console                       the keys page
//	GET  /console/login                 sign in (return=, reauth=1)
//	GET  /console/callback              the provider's answer
//	POST /console/logout                sign out (and at the provider, where it offers that)
//	GET  /console/signedout             where the provider sends the browser back
//	GET  /console/static/{file}         console.js, console.css
//	GET  /console/keys                  keys (env=, status=, member=, cursor=)
//	GET  /console/keys/new              the create form (keys:write)
//	POST /console/keys                  create; the answer shows the secret once
//	GET  /console/keys/{id}             a key and its history
//	GET  /console/keys/{id}/rotate      regenerate: the form
//	POST /console/keys/{id}/rotate      regenerate; the answer shows the secret once
//	GET  /console/keys/{id}/revoke      revoke: the confirmation
//	POST /console/keys/{id}/revoke      revoke
//	GET  /console/audit                 the tenant's audit log (env=, cursor=)
//	GET  /console/members               members who made keys (keys:admin)
//	GET  /console/members/revoke        revoke a member's keys: the confirmation
//	POST /console/members/revoke        revoke a member's keys
package console

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyward/keyward/pkg/accesslog"
	"github.com/keyward/keyward/pkg/authorizer"
	"github.com/keyward/keyward/pkg/clock"
	"github.com/keyward/keyward/pkg/config"
	"github.com/keyward/keyward/pkg/lifecycle"
	"github.com/keyward/keyward/pkg/ratelimits"
	"github.com/keyward/keyward/pkg/scope"
	"github.com/keyward/keyward/pkg/store"
)

// Prefix is the path the console is served under.
const Prefix = "/console"

// Lifecycle is what the console asks of the key lifecycle
// (*lifecycle.Service).
type Lifecycle interface {
	Create(ctx context.Context, actor lifecycle.Actor, tenant string, p lifecycle.CreateParams) (lifecycle.Created, error)
	Get(ctx context.Context, tenant, id string) (store.Key, error)
	List(ctx context.Context, tenant string, q store.KeyQuery) (store.KeyPage, error)
	Rotate(ctx context.Context, actor lifecycle.Actor, tenant, id string, overlap time.Duration) (lifecycle.Created, store.Key, error)
	Revoke(ctx context.Context, actor lifecycle.Actor, tenant, id string) (store.Key, error)
	RevokeMember(ctx context.Context, actor lifecycle.Actor, tenant, member string) (int, error)
}

// Store is what the console reads and writes beside the lifecycle: the
// tenant at sign-in, the audit log, and records with a lifetime (the
// idempotency records of the store contract), which hold signed-out
// sessions and submitted create forms.
type Store interface {
	GetTenant(ctx context.Context, id string) (store.Tenant, error)
	ListAudit(ctx context.Context, tenantID string, q store.AuditQuery) (store.AuditPage, error)
	ListUsage(ctx context.Context, keyID string, from, to time.Time) ([]store.UsageHour, error)
	PutIdempotency(ctx context.Context, r store.Idempotency) error
	GetIdempotency(ctx context.Context, tenantID, key string) (store.Idempotency, error)
	DeleteIdempotency(ctx context.Context, r store.Idempotency) error
}

// KeySource derives the session keys from keyward's pepper ring
// (*pepper.Ring): the key of version v is HashVersion(ctx, v,
// SessionKeyLabel), and cookies name their version, so a pepper rotation
// ends no session.
type KeySource interface {
	Current() int
	HashVersion(ctx context.Context, version int, label string) ([]byte, error)
}

// SessionKeyLabel is what the session key of each pepper version is
// derived from.
const SessionKeyLabel = "keyward console session key v1"

// RateLimits provisions the rate-limit identities API Gateway's usage plans
// enforce: *apigw.UsagePlans in AWS, the local gateway's plans locally.
type RateLimits = ratelimits.Plans

// Config configures the console.
type Config struct {
	// BaseURL is the origin the console is served from (scheme, host and
	// port, no path): https, or http for localhost and 127.0.0.1 only.
	// Cookies are Secure unless it is http; requests that change state
	// must come from it. Default: RedirectURL's origin.
	BaseURL string
	// Issuer is the OpenID Connect provider's issuer URL (discovered on
	// the first sign-in); ClientID and ClientSecret are the console's
	// client; RedirectURL is BaseURL + "/console/callback".
	Issuer       string
	ClientID     string
	ClientSecret string
	RedirectURL  string
	// Claims of the ID token: the tenant (default "custom:tenant_id"), the
	// role (default "custom:role": viewer, developer or admin) and the
	// member (default "sub").
	TenantClaim string
	RoleClaim   string
	MemberClaim string
	// ExtraScopes are requested beside "openid".
	ExtraScopes []string
	// HTTPClient calls the provider; default http.DefaultClient.
	HTTPClient *http.Client

	Keys    Lifecycle
	Store   Store
	Peppers KeySource
	// Gateway gives the rate-limit tiers a key may have, the rate-limit
	// identities and whether the authorizer caches decisions.
	Gateway config.Gateway
	// Resources are the protected API's resources, offered as read or
	// write scopes (Resources derives them from the route table).
	Resources []string
	// RateLimits and Flusher are the admin API's: a key's rate-limit
	// identity is provisioned when it is made and removed when it ends,
	// and revocations flush the authorizer cache. Nil where nothing
	// enforces limits or caches decisions.
	RateLimits RateLimits
	Flusher    authorizer.Flusher

	// Sessions end IdleTimeout (default 30 minutes) after the last request
	// and SessionLifetime (default 12 hours) after sign-in; creating or
	// regenerating a live key needs a sign-in within FreshAuth (default
	// 15 minutes).
	IdleTimeout     time.Duration
	SessionLifetime time.Duration
	FreshAuth       time.Duration

	Logger *slog.Logger
	Now    func() time.Time
	// Sleep waits between the two flushes of a revocation (default
	// clock.Sleep).
	Sleep func(context.Context, time.Duration) error
}

// Resources are the resources of the route tables' scopes, sorted: what
// the create form offers as read and write scopes.
func Resources(tables ...config.RouteTable) []string {
	var out []string
	for _, t := range tables {
		for _, r := range t.Routes {
			res, _, ok := strings.Cut(r.Scope, ":")
			if ok && scope.Validate(res+":read") == nil && !slices.Contains(out, res) {
				out = append(out, res)
			}
		}
	}
	slices.Sort(out)
	return out
}

// Server is the console.
type Server struct {
	cfg    Config
	base   *url.URL // the origin
	root   string   // the path the console's Prefix lies under: a stage's, or ""
	secure bool     // cookies are Secure, HSTS is sent
	mux    *http.ServeMux
	pages  map[string]*template.Template
	seal   *sealer
	csp    atomic.Pointer[string]
	oidcMu sync.Mutex
	idp    *provider // discovered on the first sign-in
	limits ratelimits.Identities
}

// New returns the console, its templates parsed.
func New(cfg Config) (*Server, error) {
	if cfg.Keys == nil || cfg.Store == nil || cfg.Peppers == nil {
		return nil, errors.New("console: Keys, Store and Peppers are required")
	}
	if cfg.Issuer == "" || cfg.ClientID == "" || cfg.RedirectURL == "" {
		return nil, errors.New("console: Issuer, ClientID and RedirectURL are required")
	}
	redirect, err := url.Parse(cfg.RedirectURL)
	if err != nil || redirect.Host == "" {
		return nil, fmt.Errorf("console: RedirectURL %q is not an absolute URL", cfg.RedirectURL)
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = redirect.Scheme + "://" + redirect.Host
	}
	base, err := url.Parse(strings.TrimSuffix(cfg.BaseURL, "/"))
	if err != nil || base.Host == "" || base.RawQuery != "" || base.Fragment != "" || strings.Contains(base.Path, "//") {
		return nil, fmt.Errorf("console: BaseURL %q must be an origin, or an origin and a path such as API Gateway's stage (https://abc.execute-api.eu-west-1.amazonaws.com/prod)", cfg.BaseURL)
	}
	// The console's own links, redirects and cookies live under root
	// (a stage's path; "" at an origin's root); the requests it is handed
	// have it removed, as API Gateway removes the stage.
	root := strings.TrimSuffix(base.Path, "/")
	base.Path, base.RawPath = "", ""
	local := base.Hostname() == "localhost" || base.Hostname() == "127.0.0.1"
	if base.Scheme != "https" && !(base.Scheme == "http" && local) {
		return nil, fmt.Errorf("console: BaseURL %q must be https (http only for localhost and 127.0.0.1)", cfg.BaseURL)
	}
	if origin(redirect) != origin(base) || !strings.HasPrefix(redirect.Path, root+Prefix+"/") {
		return nil, fmt.Errorf("console: RedirectURL %q must lie under %s%s%s/", cfg.RedirectURL, origin(base), root, Prefix)
	}
	issuer, err := url.Parse(cfg.Issuer)
	if err != nil || issuer.Host == "" || (issuer.Scheme != "https" && issuer.Scheme != "http") {
		return nil, fmt.Errorf("console: Issuer %q is not an http(s) URL", cfg.Issuer)
	}
	if cfg.RateLimits != nil && len(cfg.Gateway.RateLimitTiers) == 0 {
		return nil, errors.New("console: RateLimits needs the Gateway's rate-limit tiers")
	}
	for _, r := range cfg.Resources {
		if err := scope.Validate(r + ":write"); err != nil {
			return nil, fmt.Errorf("console: resource %q: %w", r, err)
		}
	}
	setDefaults(&cfg)
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, base: base, root: root, secure: base.Scheme == "https", pages: pages,
		limits: ratelimits.Identities{Plans: cfg.RateLimits, Gateway: cfg.Gateway, Logger: cfg.Logger},
		seal:   newSealer(cfg.Peppers)}
	s.setCSP(origin(issuer))
	s.routes()
	// Discover the provider now, in the background, so that the pages an
	// instance renders allow its endpoints (form-action) before anyone
	// signs in through this instance; a provider that is down is
	// discovered at the next sign-in instead.
	go func() { _, _ = s.provider(context.Background()) }()
	return s, nil
}

func setDefaults(cfg *Config) {
	def := func(v *string, d string) {
		if *v == "" {
			*v = d
		}
	}
	def(&cfg.TenantClaim, "custom:tenant_id")
	def(&cfg.RoleClaim, "custom:role")
	def(&cfg.MemberClaim, "sub")
	dur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	dur(&cfg.IdleTimeout, 30*time.Minute)
	dur(&cfg.SessionLifetime, 12*time.Hour)
	dur(&cfg.FreshAuth, 15*time.Minute)
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Sleep == nil {
		cfg.Sleep = clock.Sleep
	}
}

func origin(u *url.URL) string { return u.Scheme + "://" + u.Host }

// setCSP sets the Content-Security-Policy: forms post to the console and,
// after a redirect, to the provider's origins.
func (s *Server) setCSP(providerOrigins ...string) {
	var extra []string
	for _, o := range providerOrigins {
		if o != "" && o != origin(s.base) && !slices.Contains(extra, o) {
			extra = append(extra, o)
		}
	}
	csp := "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'"
	if len(extra) > 0 {
		csp += " " + strings.Join(extra, " ")
	}
	csp += "; base-uri 'none'"
	s.csp.Store(&csp)
}

// Management scopes the routes need, as pkg/config/admin-routes.json maps
// the admin API's.
const (
	needRead  = "keys:read"
	needWrite = "keys:write"
	needAdmin = "keys:admin"
)

func (s *Server) routes() {
	m := http.NewServeMux()
	// API Gateway's routes are /console and /console/{proxy+}, which
	// /console/ is not: the console's home is /console itself.
	home := func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, s.url(Prefix)+"/keys", http.StatusSeeOther)
	}
	m.HandleFunc("GET /console", home)
	m.HandleFunc("GET /console/{$}", home)
	m.HandleFunc("GET /console/login", s.login)
	m.HandleFunc("GET /console/callback", s.callback)
	m.HandleFunc("GET "+SignedOutPath, s.signedOut)
	m.Handle("POST /console/logout", s.member("", s.logout))
	m.HandleFunc("GET /console/static/{file}", serveStatic)
	m.Handle("GET /console/keys", s.member(needRead, s.keysPage))
	m.Handle("GET /console/keys/new", s.member(needWrite, s.newKeyPage))
	m.Handle("POST /console/keys", s.member(needWrite, s.createKey))
	m.Handle("GET /console/keys/{id}", s.member(needRead, s.keyPage))
	m.Handle("GET /console/keys/{id}/rotate", s.member(needWrite, s.rotatePage))
	m.Handle("POST /console/keys/{id}/rotate", s.member(needWrite, s.rotateKey))
	m.Handle("GET /console/keys/{id}/revoke", s.member(needWrite, s.revokePage))
	m.Handle("POST /console/keys/{id}/revoke", s.member(needWrite, s.revokeKey))
	m.Handle("GET /console/audit", s.member(needRead, s.auditPage))
	m.Handle("GET /console/members", s.member(needAdmin, s.membersPage))
	m.Handle("GET /console/members/revoke", s.member(needAdmin, s.revokeMemberPage))
	m.Handle("POST /console/members/revoke", s.member(needAdmin, s.revokeMember))
	m.HandleFunc("/console/", func(w http.ResponseWriter, r *http.Request) {
		s.renderError(w, r, nil, errNotFound)
	})
	s.mux = m
}

// ServeHTTP serves the console with its security headers on every answer,
// logging one line per request (never a body, so never a secret).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := s.cfg.Now()
	h := w.Header()
	h.Set("Content-Security-Policy", *s.csp.Load())
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	// same-origin, not no-referrer: with no-referrer browsers send
	// "Origin: null" on the console's own form posts.
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	if s.secure {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
	reqID := newRequestID()
	h.Set("Request-Id", reqID)
	rec := accesslog.NewRecorder(w)
	info := &logInfo{}
	r = r.WithContext(context.WithValue(r.Context(), logKey{}, info))
	r = r.WithContext(context.WithValue(r.Context(), requestIDKey{}, reqID))
	s.mux.ServeHTTP(rec, r)
	s.cfg.Logger.LogAttrs(r.Context(), slog.LevelInfo, "console request",
		slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Int("status", rec.Status),
		slog.String("tenant_id", info.tenant), slog.String("member", info.member), slog.String("request_id", reqID),
		slog.Float64("latency_ms", float64(s.cfg.Now().Sub(start).Microseconds())/1000))
}

type (
	logKey       struct{}
	requestIDKey struct{}
	logInfo      struct{ tenant, member string }
)

func newRequestID() string { return "console_" + randomToken(12) }

func requestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// url is a console path (Prefix...) as the browser reaches it.
func (s *Server) url(path string) string { return s.root + path }

// Beside serves the console under Prefix and api everywhere else: the
// admin function's handler, in AWS and locally.
func (s *Server) Beside(api http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(Prefix, s)
	mux.Handle(Prefix+"/", s)
	mux.Handle("/", api)
	return mux
}
