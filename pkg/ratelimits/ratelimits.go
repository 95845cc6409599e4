// Package ratelimits keeps each key's rate-limit identity in its usage
// plan while the key lives, for the admin API and the console alike. API
// Gateway enforces usage plans per API key; the authorizer returns a key's
// identity (config.Gateway.RateLimitIdentity) as usageIdentifierKey, and
// the identity must be in the plan of the key's tier before the key can
// pass, so it is provisioned before the key is written and removed when
// the key ends.
package ratelimits

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/config"
	"github.com/keyward/keyward/pkg/lifecycle"
	"github.com/keyward/keyward/pkg/store"
)

// Plans provisions identities in usage plans: *apigw.UsagePlans in AWS,
// the local gateway's plans locally.
type Plans interface {
	Provision(ctx context.Context, identity, tier string) error
	Remove(ctx context.Context, identity string) error
}

// ErrNoTier: the key's rate limit is none of the deployed tiers, which
// are the only limits API Gateway's fixed usage plans can enforce.
var ErrNoTier = errors.New("ratelimits: the rate limit is not one of the deployed tiers")

// cleanupTimeout bounds removing the identities of a change that failed.
const cleanupTimeout = 20 * time.Second

// Identities provisions and removes keys' rate-limit identities. With no
// Plans (nothing enforces limits) it does nothing.
type Identities struct {
	Plans   Plans
	Gateway config.Gateway
	Logger  *slog.Logger
}

// Tier is the deployed tier of a rate limit; an unset limit is the
// default one.
func (i Identities) Tier(r store.RateLimit) (config.Tier, error) {
	if r.RequestsPerMinute == 0 {
		r.RequestsPerMinute = lifecycle.DefaultRequestsPerMinute
	}
	if t, ok := i.Gateway.TierOf(r); ok {
		return t, nil
	}
	return config.Tier{}, fmt.Errorf("%w: %d requests per minute, burst %d", ErrNoTier, r.RequestsPerMinute, r.Burst)
}

// Provision puts k's identity in the usage plan of k's tier.
func (i Identities) Provision(ctx context.Context, k store.Key) error {
	if i.Plans == nil {
		return nil
	}
	t, err := i.Tier(k.RateLimit)
	if err != nil {
		return err
	}
	return i.Plans.Provision(ctx, i.Gateway.RateLimitIdentity(k.TenantID, k.ID), t.Name)
}

// Remove takes an ended key's identity out of its plan; per-tenant
// identities outlive any one key. A failure is logged, not returned: the
// key no longer passes the authorizer, and the identity only holds a slot
// until the jobs' key scan removes it.
func (i Identities) Remove(ctx context.Context, k store.Key) {
	if i.Plans == nil || i.Gateway.UsageIdentity != config.UsagePerKey {
		return
	}
	if err := i.Plans.Remove(ctx, i.Gateway.RateLimitIdentity(k.TenantID, k.ID)); err != nil {
		i.Logger.WarnContext(ctx, "removing rate-limit identity failed", "key_id", apikey.PublicID(k.ID), "error", err)
	}
}

// Prepare provisions the identities of the keys a change creates before
// it is written (lifecycle.Prepare), so that no key exists without one;
// if the write fails they are removed again, even once the request that
// made the change has gone (an identity left behind holds one of API
// Gateway's API key slots).
func (i Identities) Prepare() lifecycle.Prepare {
	if i.Plans == nil {
		return nil
	}
	return func(ctx context.Context, created []store.Key) (func(), error) {
		var done []store.Key
		undo := func() {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
			defer cancel()
			for _, k := range done {
				i.Remove(ctx, k)
			}
		}
		for _, k := range created {
			if err := i.Provision(ctx, k); err != nil {
				undo()
				return nil, err
			}
			done = append(done, k)
		}
		return undo, nil
	}
}
