package lifecycle

import (
	"context"
	"strings"
	"time"

	"github.com/keyward/keyward/pkg/store"
)

// UpdateParams change a key; nil fields stay as they are. A pointer to a
// zero value clears the field (no expiry, no IP list, ...), except Name
// and Scopes, which a key must keep.
type UpdateParams struct {
	Name               *string
	Description        *string
	Scopes             *[]string
	AllowedIPs         *[]string
	AllowedOrigins     *[]string
	AllowBrowserWrites *bool
	Contact            *string
	RateLimit          *store.RateLimit
	ExpiresAt          *time.Time
	Metadata           *map[string]string
}

// changedFields lists the fields an update names, for the audit entry.
func (p UpdateParams) changedFields() string {
	var f []string
	add := func(set bool, name string) {
		if set {
			f = append(f, name)
		}
	}
	add(p.Name != nil, "name")
	add(p.Description != nil, "description")
	add(p.Scopes != nil, "scopes")
	add(p.AllowedIPs != nil, "allowed_ips")
	add(p.AllowedOrigins != nil, "allowed_origins")
	add(p.AllowBrowserWrites != nil, "allow_browser_writes")
	add(p.Contact != nil, "contact")
	add(p.RateLimit != nil, "rate_limit")
	add(p.ExpiresAt != nil, "expires_at")
	add(p.Metadata != nil, "metadata")
	return strings.Join(f, ",")
}

// apply validates p and applies it to k.
func (p UpdateParams) apply(k *store.Key, now time.Time) error {
	if p.Name != nil {
		if err := validName(*p.Name); err != nil {
			return err
		}
		k.Name = *p.Name
	}
	if p.Description != nil {
		if err := validText("description", *p.Description, 0, maxDescriptionLen); err != nil {
			return err
		}
		k.Description = *p.Description
	}
	if p.Scopes != nil {
		scopes, err := validScopes(*p.Scopes)
		if err != nil {
			return err
		}
		k.Scopes = scopes
	}
	if p.AllowedIPs != nil {
		ips, err := normalIPs(*p.AllowedIPs)
		if err != nil {
			return err
		}
		k.AllowedIPs = ips
	}
	if p.AllowedOrigins != nil {
		origins, err := normalOrigins(*p.AllowedOrigins)
		if err != nil {
			return err
		}
		k.AllowedOrigins = origins
	}
	if p.AllowBrowserWrites != nil {
		k.AllowBrowserWrites = *p.AllowBrowserWrites
	}
	if p.Contact != nil {
		if err := validContact("contact", *p.Contact); err != nil {
			return err
		}
		k.Contact = *p.Contact
	}
	if p.RateLimit != nil {
		rate, err := normalRateLimit(*p.RateLimit)
		if err != nil {
			return err
		}
		k.RateLimit = rate
	}
	if p.ExpiresAt != nil {
		at := p.ExpiresAt.UTC()
		if !at.IsZero() {
			if err := validExpiry("expires_at", at, now); err != nil {
				return err
			}
		}
		// A replaced key's overlap may be cut short, never stretched.
		if k.Status == store.KeyExpiring && (at.IsZero() || at.After(k.ExpiresAt)) {
			return invalid("expires_at", "of a key replaced by rotation can only move earlier")
		}
		k.ExpiresAt = at
	}
	if p.Metadata != nil {
		meta, err := validMetadata(*p.Metadata)
		if err != nil {
			return err
		}
		k.Metadata = meta
	}
	return nil
}

// Update changes a key's settings; the authorizer sees the change on the
// very next request, since it reads the key on every uncached decision.
func (s *Service) Update(ctx context.Context, actor Actor, tenant, id string, p UpdateParams) (store.Key, error) {
	return s.mutate(ctx, actor, tenant, id, func(k *store.Key, c *store.Change, now time.Time) (bool, error) {
		if err := usable(*k, now); err != nil {
			return false, err
		}
		old := *k
		if err := p.apply(k, now); err != nil {
			return false, err
		}
		if err := p.browserRules(old, *k); err != nil {
			return false, err
		}
		if err := actor.Bounds.admitUpdate(p, old, *k); err != nil {
			return false, err
		}
		entry, err := s.audit(ActionKeyUpdated, *k, actor, now, map[string]string{"fields": p.changedFields()})
		c.Audit = append(c.Audit, entry)
		return false, err
	})
}
