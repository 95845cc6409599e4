package gateway

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/keyward/keyward/pkg/config"
)

// plan is one identity's usage plan: its tier and its token bucket.
type plan struct {
	tier   config.Tier
	tokens float64
	at     time.Time
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
