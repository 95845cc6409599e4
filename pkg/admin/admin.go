// Package admin is keyward's admin API as a standard net/http handler: key
// management for tenants (authorized by keyward's own authorizer with
// management scopes) and tenant onboarding and offboarding for the
// platform's operators (IAM in AWS, an operator token locally). The Lambda
// function adapts it to API Gateway's proxy integration (FromAPIGateway),
// and the local stack's gateway emulation invokes it the same way.
//
// Who the caller is comes only from the request's context (Caller), which
// the trusted adapter in front of the handler sets: never from a parameter.
package admin

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/keyward/keyward/pkg/accesslog"
	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/authorizer"
	"github.com/keyward/keyward/pkg/clock"
	"github.com/keyward/keyward/pkg/config"
	"github.com/keyward/keyward/pkg/leaks"
	"github.com/keyward/keyward/pkg/lifecycle"
	"github.com/keyward/keyward/pkg/ratelimits"
	"github.com/keyward/keyward/pkg/scope"
	"github.com/keyward/keyward/pkg/store"
)

// Caller is who makes a request, as established in front of the handler.
type Caller struct {
	// TenantID, KeyID, Environment and Scopes describe a management key,
	// from the authorizer's context.
	TenantID    string
	KeyID       string // "key_<id>"
	Environment string
	Scopes      []string
	// Operator is set for the platform's operators (sessions of the
	// operator role, which locally the operator token stands for);
	// OperatorID names them for the audit. Principal is the IAM identity API Gateway verified, operator
	// or not.
	Operator   bool
	OperatorID string
	Principal  string
	RequestID  string

	// key is the management key as stored, read by tenantRoute: its
	// environment and restrictions bound what the request may do.
	key store.Key
}

type callerKey struct{}

// WithCaller returns a context carrying the caller; only the adapters that
// authenticate requests call it.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

func callerFrom(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok
}

// Management scopes: keys:read, keys:write, keys:admin.
const (
	scopeRead  = "keys:read"
	scopeWrite = "keys:write"
	scopeAdmin = "keys:admin"
)

// RateLimits provisions the per-key rate limits that API Gateway's usage
// plans enforce (package apigw in AWS, the gateway emulation locally).
type RateLimits = ratelimits.Plans

// Store is what the admin API reads beyond the lifecycle: the audit log,
// keys' usage and idempotency records.
type Store interface {
	ListAudit(ctx context.Context, tenantID string, q store.AuditQuery) (store.AuditPage, error)
	ListUsage(ctx context.Context, keyID string, from, to time.Time) ([]store.UsageHour, error)
	PutIdempotency(ctx context.Context, r store.Idempotency) error
	GetIdempotency(ctx context.Context, tenantID, key string) (store.Idempotency, error)
	CompleteIdempotency(ctx context.Context, r store.Idempotency) error
	DeleteIdempotency(ctx context.Context, r store.Idempotency) error
}

// Config configures a Server.
type Config struct {
	Keys    *lifecycle.Service
	Store   Store
	Gateway config.Gateway
	// RateLimits and Flusher may be nil only where nothing enforces rate
	// limits or caches decisions (tests of other parts).
	RateLimits RateLimits
	// Flusher flushes the stage's authorizer cache, so that a revocation
	// or a narrowing change applies to the very next request.
	Flusher authorizer.Flusher
	// Leaks answers leaked-key reports (GitHub's and the tenants' own).
	Leaks  Leaks
	Logger *slog.Logger
	Now    func() time.Time
	// Sleep waits between the two flushes of a change (default
	// clock.Sleep).
	Sleep func(context.Context, time.Duration) error
}

// Leaks is the leaked-key response: where GitHub's signing keys come from,
// and what a reported token means.
type Leaks struct {
	Keys      leaks.KeySource
	Responder leaks.Responder
}

// Server is the admin API.
type Server struct {
	cfg    Config
	mux    *http.ServeMux
	limits ratelimits.Identities
}

// New returns the admin API handler.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Sleep == nil {
		cfg.Sleep = clock.Sleep
	}
	if cfg.Leaks.Keys == nil {
		cfg.Leaks.Keys = leaks.StaticKeys{} // no key: every report is refused
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux(), limits: ratelimits.Identities{Plans: cfg.RateLimits, Gateway: cfg.Gateway, Logger: cfg.Logger}}
	tenant := func(need string, h func(http.ResponseWriter, *http.Request, Caller) *apiError) http.Handler {
		return s.tenantRoute(need, s.idempotent(handle(h)))
	}
	s.mux.Handle("POST /v1/keys", tenant(scopeWrite, s.createKey))
	s.mux.Handle("GET /v1/keys", tenant(scopeRead, s.listKeys))
	s.mux.Handle("GET /v1/keys/{id}", tenant(scopeRead, s.getKey))
	s.mux.Handle("PATCH /v1/keys/{id}", tenant(scopeWrite, s.updateKey))
	s.mux.Handle("POST /v1/keys/{id}/rotate", tenant(scopeWrite, s.rotateKey))
	s.mux.Handle("POST /v1/keys/{id}/revoke", tenant(scopeWrite, s.revokeKey))
	s.mux.Handle("POST /v1/members/{member_id}/revoke-keys", tenant(scopeAdmin, s.revokeMember))
	s.mux.Handle("GET /v1/audit", tenant(scopeRead, s.listAudit))
	s.mux.Handle("GET /v1/keys/{id}/usage", tenant(scopeRead, s.keyUsage))
	s.mux.Handle("GET /v1/keys/{id}/requests", tenant(scopeRead, s.keyRequests))
	s.mux.Handle("POST /v1/keys/{id}/report-leak", tenant(scopeWrite, s.reportLeak))
	s.mux.Handle("POST /v1/leaks/github", handle(s.githubLeaks))
	s.mux.Handle("POST /v1/tenants", s.operatorRoute(s.idempotent(handle(s.onboard))))
	s.mux.Handle("POST /v1/tenants/{id}/offboard", s.operatorRoute(s.idempotent(handle(s.offboard))))
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { writeError(w, errNotFound) })
	return s
}

// ServeHTTP serves the admin API, logging one line per request (never a
// body, so never a secret).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := s.cfg.Now()
	rec := accesslog.NewRecorder(w)
	c, _ := callerFrom(r.Context())
	if c.RequestID != "" {
		w.Header().Set("Request-Id", c.RequestID)
	}
	s.mux.ServeHTTP(rec, r)
	s.cfg.Logger.LogAttrs(r.Context(), slog.LevelInfo, "admin request",
		slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Int("status", rec.Status),
		slog.String("tenant_id", c.TenantID), slog.String("caller", actorOf(c).ID),
		slog.String("request_id", c.RequestID), slog.Float64("latency_ms", float64(s.cfg.Now().Sub(start).Microseconds())/1000))
}

func actorOf(c Caller) lifecycle.Actor {
	if c.Operator {
		id := c.OperatorID
		if id == "" {
			id = "operator"
		}
		return lifecycle.Actor{ID: id, RequestID: c.RequestID}
	}
	return lifecycle.Actor{ID: c.KeyID, RequestID: c.RequestID, Bounds: lifecycle.BoundsOf(c.key)}
}

// tenantRoute admits management keys holding the route's scope, before
// anything else runs (an idempotent replay included). The authorizer has
// checked the key already; reading it again here means a misconfigured
// gateway cannot open the API, and gives the request the key's current
// scopes, environment and restrictions, which bound everything it does.
func (s *Server) tenantRoute(need string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := callerFrom(r.Context())
		if !ok || c.TenantID == "" || c.KeyID == "" {
			writeError(w, errUnauthorized)
			return
		}
		id, ok := apikey.ParsePublicID(c.KeyID)
		if !ok {
			writeError(w, errUnauthorized)
			return
		}
		k, err := s.cfg.Keys.Get(r.Context(), c.TenantID, id)
		switch {
		case errors.Is(err, lifecycle.ErrNotFound):
			writeError(w, errUnauthorized)
			return
		case err != nil:
			writeError(w, s.internal(r, "reading the calling key", err))
			return
		}
		// The context's environment, when present, must be the key's: a
		// mismatch means the context is not the authorizer's.
		if st := k.Status; (st != store.KeyActive && st != store.KeyExpiring) || (c.Environment != "" && c.Environment != k.Environment) {
			writeError(w, errUnauthorized)
			return
		}
		// A browser key never manages keys, whatever it was stored with:
		// its secret is public in its pages.
		if len(k.AllowedOrigins) > 0 {
			writeError(w, &apiError{Status: http.StatusForbidden, Type: "forbidden", Code: "browser_endpoint_required",
				Message: "This API key is a browser key (it has allowed origins): it never calls the admin API."})
			return
		}
		c.key, c.Environment, c.Scopes = k, k.Environment, k.Scopes
		if !scope.AnyGrants(c.Scopes, need) {
			writeError(w, forbidden("This API key does not have the %s scope this route requires.", need))
			return
		}
		next.ServeHTTP(w, r.WithContext(WithCaller(r.Context(), c)))
	})
}

// operatorRoute admits the platform's operators only.
func (s *Server) operatorRoute(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := callerFrom(r.Context())
		switch {
		case ok && c.Operator:
			next.ServeHTTP(w, r)
		case ok && c.Principal != "":
			writeError(w, &apiError{Status: http.StatusForbidden, Type: "forbidden", Code: "not_operator",
				Message: "This route is for the platform's operator role; the signing identity is not it."})
		default:
			writeError(w, errNotOperator)
		}
	})
}

// handle adapts a handler that answers errors with the envelope.
func handle(h func(http.ResponseWriter, *http.Request, Caller) *apiError) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := callerFrom(r.Context())
		if e := h(w, r, c); e != nil {
			writeError(w, e)
		}
	})
}

// internal logs an unexpected error and returns the envelope that hides it.
func (s *Server) internal(r *http.Request, what string, err error) *apiError {
	if e := fromDomain(err); e != nil {
		return e
	}
	s.cfg.Logger.ErrorContext(r.Context(), what, "error", err, "path", r.URL.Path)
	return errInternal
}

// isManagement reports whether a scope grants any keys:* power.
func isManagement(sc string) bool {
	return sc == scope.All || strings.HasPrefix(sc, "keys:")
}

// mayGrant refuses scopes that would give a key more management power
// than its caller: only keys:admin hands out keys:* scopes, and only those
// it covers itself.
func mayGrant(c Caller, scopes []string) *apiError {
	for _, sc := range scopes {
		if !isManagement(sc) {
			continue
		}
		if !scope.AnyGrants(c.Scopes, scopeAdmin) || !scope.Covers(c.Scopes, sc) {
			return forbidden("Only a keys:admin key may grant %s, and only scopes it holds itself.", sc)
		}
	}
	return nil
}

// mayChange refuses changes to keys holding management scopes unless the
// caller holds keys:admin.
func mayChange(c Caller, k store.Key) *apiError {
	for _, sc := range k.Scopes {
		if isManagement(sc) && (!scope.AnyGrants(c.Scopes, scopeAdmin) || !scope.Covers(c.Scopes, sc)) {
			return forbidden("Only a keys:admin key may change a key that holds keys:* scopes, and only one with no more power than its own.")
		}
	}
	return nil
}

// vetted is the caller as the lifecycle's actor, with mayChange applied to
// the key as read inside each change, so that a key upgraded between the
// check and the write cannot slip through.
func vetted(c Caller) lifecycle.Actor {
	a := actorOf(c)
	a.Allow = func(k store.Key) error {
		if e := mayChange(c, k); e != nil {
			return e
		}
		return nil
	}
	return a
}

// visible reads one of the caller's keys: of its tenant and, for a
// management key, of its environment (another's answers 404, like another
// tenant's).
func (s *Server) visible(r *http.Request, c Caller, id string) (store.Key, *apiError) {
	k, err := s.cfg.Keys.Get(r.Context(), c.TenantID, id)
	if err == nil && !actorOf(c).Bounds.Sees(k) {
		err = lifecycle.ErrNotFound
	}
	if err != nil {
		return store.Key{}, s.internal(r, "reading key", err)
	}
	return k, nil
}

// changeable reads one of the caller's keys that it may change.
func (s *Server) changeable(r *http.Request, c Caller, id string) (store.Key, *apiError) {
	k, e := s.visible(r, c, id)
	if e != nil {
		return store.Key{}, e
	}
	if e := mayChange(c, k); e != nil {
		return store.Key{}, e
	}
	return k, nil
}

// noBody refuses a request body other than none or an empty JSON object,
// for routes that take no input.
func noBody(w http.ResponseWriter, r *http.Request) *apiError {
	body, e := readBody(w, r)
	if e != nil || len(body) == 0 {
		return e
	}
	return decode(body, &struct{}{})
}

// keyID parses the {id} path value ("key_<id>").
func keyID(r *http.Request) (string, *apiError) {
	id, ok := apikey.ParsePublicID(r.PathValue("id"))
	if !ok {
		return "", errNotFound
	}
	return id, nil
}
