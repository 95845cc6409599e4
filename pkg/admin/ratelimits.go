package admin

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/keyward/keyward/pkg/config"
	"github.com/keyward/keyward/pkg/ratelimits"
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
	if t, err := s.limits.Tier(r); err == nil {
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

// provision gives a key's rate-limit identity its usage plan; a limit of
// no tier is the request's error.
func (s *Server) provision(r *http.Request, k store.Key) error {
	err := s.limits.Provision(r.Context(), k)
	if errors.Is(err, ratelimits.ErrNoTier) {
		if _, e := s.tier(k.RateLimit); e != nil {
			return e
		}
	}
	return err
}
