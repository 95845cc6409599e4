package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/store"
)

// AdminScope is the scope of a tenant's first management key.
const AdminScope = "keys:admin"

var tenantIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{1,62}$`)

// OnboardParams describe a new tenant.
type OnboardParams struct {
	TenantID string
	Name     string
	// Contact is the email address to reach about a key without its own.
	Contact string
	// RateLimit is the first key's: the highest tier the deployment has,
	// since every key the tenant makes with it stays within its bounds.
	RateLimit store.RateLimit
}

// Onboarded is a new tenant with its first management keys, whose tokens
// exist nowhere else.
type Onboarded struct {
	Tenant store.Tenant
	Live   Created // keys:admin in the live environment
	Test   Created // keys:admin in the test environment
}

// Onboard creates a tenant together with its first management keys, one
// per environment (a management key acts in its own environment only):
// scope keys:admin, no expiry or address restriction. Their tokens are
// returned once.
func (s *Service) Onboard(ctx context.Context, actor Actor, p OnboardParams) (Onboarded, error) {
	if !tenantIDPattern.MatchString(p.TenantID) {
		return Onboarded{}, invalid("tenant_id", "must be 2 to 63 lowercase letters, digits, '_' or '-', starting with a letter or digit")
	}
	if err := validText("name", p.Name, 1, maxNameLen); err != nil {
		return Onboarded{}, err
	}
	if err := validContact("contact", p.Contact); err != nil {
		return Onboarded{}, err
	}
	now := s.now().UTC()
	o := Onboarded{Tenant: store.Tenant{ID: p.TenantID, Name: p.Name, Contact: p.Contact, Status: store.TenantActive, CreatedAt: now}}
	created, err := s.entry(o.Tenant.ID, ActionTenantCreated, nil, actor, now, nil)
	if err != nil {
		return Onboarded{}, err
	}
	c := store.Change{Tenant: &store.TenantWrite{Tenant: o.Tenant}, Audit: []store.AuditEntry{created}}
	for _, first := range []struct {
		env apikey.Environment
		dst *Created
	}{{apikey.Live, &o.Live}, {apikey.Test, &o.Test}} {
		dst := first.dst
		if *dst, err = s.newKey(ctx, p.TenantID, CreateParams{
			Name: "Admin key", Environment: first.env, Scopes: []string{AdminScope}, RateLimit: p.RateLimit,
		}, now); err != nil {
			return Onboarded{}, err
		}
		entry, err := s.audit(ActionKeyCreated, dst.Key, actor, now, nil)
		if err != nil {
			return Onboarded{}, err
		}
		c.Keys = append(c.Keys, store.KeyWrite{Key: dst.Key})
		c.Audit = append(c.Audit, entry)
	}
	err = s.write(ctx, actor, c)
	if errors.Is(err, store.ErrAlreadyExists) {
		return Onboarded{}, conflict("tenant %s exists", o.Tenant.ID)
	}
	if err != nil {
		return Onboarded{}, s.writeError("onboarding tenant", err)
	}
	o.Tenant.Revision, o.Live.Key.Revision, o.Test.Key.Revision = 1, 1, 1
	return o, nil
}

// Tenant returns a tenant.
func (s *Service) Tenant(ctx context.Context, id string) (store.Tenant, error) {
	t, err := s.store.GetTenant(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return store.Tenant{}, ErrNotFound
	}
	if err != nil {
		return store.Tenant{}, fmt.Errorf("lifecycle: reading tenant: %w", err)
	}
	return t, nil
}

// Offboard marks the tenant offboarded, so no key can be created in it,
// then revokes every key it has. It is idempotent: calling it again
// finishes an offboarding that was interrupted, or that stopped with
// ErrIncomplete. It returns how many keys this call revoked.
func (s *Service) Offboard(ctx context.Context, actor Actor, tenant string) (int, error) {
	t, err := s.store.GetTenant(ctx, tenant)
	if errors.Is(err, store.ErrNotFound) {
		return 0, ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("lifecycle: reading tenant: %w", err)
	}
	if t.Status != store.TenantOffboarded {
		now := s.now().UTC()
		off := t
		off.Status, off.OffboardedAt = store.TenantOffboarded, now
		entry, err := s.entry(tenant, ActionTenantOffboarded, nil, actor, now, nil)
		if err != nil {
			return 0, err
		}
		err = s.store.Apply(ctx, store.Change{Tenant: &store.TenantWrite{Tenant: off, ExpectedRevision: t.Revision}, Audit: []store.AuditEntry{entry}})
		if err != nil && !errors.Is(err, store.ErrConflict) {
			return 0, s.writeError("offboarding tenant", err)
		}
		// On a conflict a key was created meanwhile or another offboarding
		// won; either way, read the tenant again.
		if t, err = s.store.GetTenant(ctx, tenant); err != nil {
			return 0, fmt.Errorf("lifecycle: reading tenant: %w", err)
		}
		if t.Status != store.TenantOffboarded {
			return 0, conflict("the tenant changed while offboarding; retry")
		}
	}
	return s.revokeComplete(ctx, actor, bulk{tenant: tenant, reason: "tenant offboarded", job: "offboard/" + tenant,
		count: func(ctx context.Context) (int64, error) { return s.store.KeyCount(ctx, tenant) }})
}
