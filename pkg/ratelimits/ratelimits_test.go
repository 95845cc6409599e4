package ratelimits

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"testing"

	"github.com/keyward/keyward/pkg/config"
	"github.com/keyward/keyward/pkg/lifecycle"
	"github.com/keyward/keyward/pkg/store"
)

// plans records identities by tier, and fails on the identities in fail.
type plans struct {
	tiers map[string]string
	fail  map[string]bool
}

func (p *plans) Provision(_ context.Context, identity, tier string) error {
	if p.fail[identity] {
		return errors.New("API Gateway said no")
	}
	p.tiers[identity] = tier
	return nil
}

func (p *plans) Remove(ctx context.Context, identity string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	delete(p.tiers, identity)
	return nil
}

func identities(mode string) (Identities, *plans) {
	p := &plans{tiers: map[string]string{}, fail: map[string]bool{}}
	gw := config.Gateway{UsageIdentity: mode, RateLimitTiers: []config.Tier{
		{Name: "default", RequestsPerMinute: lifecycle.DefaultRequestsPerMinute, Burst: 10},
		{Name: "high", RequestsPerMinute: 6000, Burst: 100},
	}}
	return Identities{Plans: p, Gateway: gw, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, p
}

func key(id string, rpm int) store.Key {
	return store.Key{ID: id, TenantID: "acme", RateLimit: store.RateLimit{RequestsPerMinute: rpm}}
}

func TestProvisionAndRemove(t *testing.T) {
	ids, p := identities(config.UsagePerKey)
	if err := ids.Provision(t.Context(), key("k1", 6000)); err != nil {
		t.Fatal(err)
	}
	if err := ids.Provision(t.Context(), key("k2", 0)); err != nil { // the default limit
		t.Fatal(err)
	}
	want := map[string]string{"keywardkeyk1": "high", "keywardkeyk2": "default"}
	if !maps.Equal(p.tiers, want) {
		t.Fatalf("provisioned %v, want %v", p.tiers, want)
	}
	if err := ids.Provision(t.Context(), key("k3", 7)); !errors.Is(err, ErrNoTier) {
		t.Fatalf("a limit of no tier: %v", err)
	}
	ids.Remove(t.Context(), key("k1", 6000))
	if _, ok := p.tiers["keywardkeyk1"]; ok || len(p.tiers) != 1 {
		t.Fatalf("after removing k1: %v", p.tiers)
	}

	// A tenant's identity outlives its keys.
	perTenant, tp := identities(config.UsagePerTenant)
	_ = perTenant.Provision(t.Context(), key("k1", 0))
	perTenant.Remove(t.Context(), key("k1", 0))
	if len(tp.tiers) != 1 {
		t.Fatalf("a per-tenant identity was removed with a key: %v", tp.tiers)
	}

	// Nothing enforces limits: nothing to do, no error.
	if err := (Identities{}).Provision(t.Context(), key("k1", 7)); err != nil || (Identities{}).Prepare() != nil {
		t.Fatalf("without plans: %v", err)
	}
}

// TestPrepareUndoes: a change whose keys cannot all be provisioned
// leaves none provisioned, and so does the undo of a failed write.
func TestPrepareUndoes(t *testing.T) {
	ids, p := identities(config.UsagePerKey)
	p.fail["keywardkeyk3"] = true
	if _, err := ids.Prepare()(t.Context(), []store.Key{key("k1", 0), key("k2", 0), key("k3", 0)}); err == nil || len(p.tiers) != 0 {
		t.Fatalf("a failed provisioning: %v, left %v", err, p.tiers)
	}
	ctx, cancel := context.WithCancel(t.Context())
	undo, err := ids.Prepare()(ctx, []store.Key{key("k1", 0), key("k2", 0)})
	if err != nil || len(p.tiers) != 2 {
		t.Fatalf("provisioning: %v, %v", err, p.tiers)
	}
	cancel() // the request has gone: the undo still runs
	undo()
	if len(p.tiers) != 0 {
		t.Fatalf("undo left %v", p.tiers)
	}
}
