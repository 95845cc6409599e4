package admin

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/config"
	"github.com/keyward/keyward/pkg/lifecycle"
	"github.com/keyward/keyward/pkg/store"
)

// rateLimitBody is a key's rate_limit as the API takes it. A key's limit
// is one of the usage plan tiers the stack deploys, and its rate-limit
// identity is provisioned in that tier's plan (RateLimits) while it lives.
type rateLimitBody struct {
	RequestsPerMinute int `json:"requests_per_minute"`
	Burst             int `json:"burst"`
}

// tier finds the usage plan tier of a rate limit: API Gateway enforces
// limits through fixed usage plans, so a key's limit must be one of them.
func (s *Server) tier(r store.RateLimit) (config.Tier, *apiError) {
	if r.RequestsPerMinute == 0 {
		r.RequestsPerMinute = lifecycle.DefaultRequestsPerMinute
	}
	if t, ok := s.cfg.Gateway.TierOf(r); ok {
		return t, nil
	}
	var allowed []string
	for _, t := range s.cfg.Gateway.RateLimitTiers {
		allowed = append(allowed, fmt.Sprintf("%d (burst %d)", t.RequestsPerMinute, t.Burst))
	}
	return config.Tier{}, invalidRequest("rate_limit.requests_per_minute",
		"rate_limit must be one of the deployed tiers: %s requests per minute.", strings.Join(allowed, ", "))
}

func (s *Server) rateLimit(b *rateLimitBody) (store.RateLimit, *apiError) {
	var r store.RateLimit
	if b != nil {
		r = store.RateLimit{RequestsPerMinute: b.RequestsPerMinute, Burst: b.Burst}
	}
	t, e := s.tier(r)
	if e != nil {
		return r, e
	}
	return store.RateLimit{RequestsPerMinute: t.RequestsPerMinute, Burst: t.Burst}, nil
}

func (s *Server) identity(k store.Key) string {
	return s.cfg.Gateway.RateLimitIdentity(k.TenantID, k.ID)
}

// provision gives a key's rate-limit identity its usage plan.
func (s *Server) provision(r *http.Request, k store.Key) error {
	if s.cfg.RateLimits == nil {
		return nil
	}
	t, e := s.tier(k.RateLimit)
	if e != nil {
		return e
	}
	return s.cfg.RateLimits.Provision(r.Context(), s.identity(k), t.Name)
}

// prepareIdentities provisions the rate-limit identities of the keys a
// change creates before it is written (lifecycle.Prepare), so that a key never
// exists without one; if the write fails, they are removed again.
func (s *Server) prepareIdentities(r *http.Request) lifecycle.Prepare {
	if s.cfg.RateLimits == nil {
		return nil
	}
	return func(ctx context.Context, created []store.Key) (func(), error) {
		var done []store.Key
		undo := func() {
			// Even if the client has gone: an identity left behind holds a
			// slot of API Gateway's API keys.
			ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), flushTimeout)
			defer cancel()
			for _, k := range done {
				s.unprovision(r.WithContext(ctx), k)
			}
		}
		for _, k := range created {
			if err := s.provision(r, k); err != nil {
				undo()
				return nil, err
			}
			done = append(done, k)
		}
		return undo, nil
	}
}

// unprovision removes a dead key's rate-limit identity. Per-tenant
// identities outlive any one key.
func (s *Server) unprovision(r *http.Request, k store.Key) {
	if s.cfg.RateLimits == nil || s.cfg.Gateway.UsageIdentity != config.UsagePerKey {
		return
	}
	if err := s.cfg.RateLimits.Remove(r.Context(), s.identity(k)); err != nil {
		// The key no longer passes the authorizer; the identity only
		// occupies a slot until the expiry sweep removes it.
		s.cfg.Logger.WarnContext(r.Context(), "removing rate-limit identity failed", "key_id", apikey.PublicID(k.ID), "error", err)
	}
}
