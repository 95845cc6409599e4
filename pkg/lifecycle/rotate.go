package lifecycle

import (
	"context"
	"fmt"
	"time"

	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/store"
)

// Rotation overlap bounds: 0 expires the old key at once; the default is
// Recurly's twelve hours.
const (
	DefaultOverlap = 12 * time.Hour
	MaxOverlap     = 7 * 24 * time.Hour
)

// Rotate replaces a key: the new key inherits every setting of the old one
// and never outlives its expiry; the old key keeps working for overlap (0
// ends it at once) and then expires.
func (s *Service) Rotate(ctx context.Context, actor Actor, tenant, id string, overlap time.Duration) (Created, store.Key, error) {
	if overlap < 0 || overlap > MaxOverlap {
		return Created{}, store.Key{}, invalid("expire_old_in", "must be 0 to %d seconds", int(MaxOverlap.Seconds()))
	}
	if err := s.requireActiveTenant(ctx, tenant); err != nil {
		return Created{}, store.Key{}, err
	}
	var created Created
	old, err := s.mutate(ctx, actor, tenant, id, func(k *store.Key, c *store.Change, now time.Time) (bool, error) {
		if err := usable(*k, now); err != nil {
			return false, err
		}
		if k.Status == store.KeyExpiring {
			return false, conflict("the key was already replaced by key_%s", k.ReplacedBy)
		}
		// The replacement inherits the key's restrictions.
		if err := actor.Bounds.admit(*k); err != nil {
			return false, err
		}
		nk, err := s.newKey(ctx, tenant, CreateParams{
			Name: k.Name, Description: k.Description, Environment: apikey.Environment(k.Environment),
			Scopes: k.Scopes, AllowedIPs: k.AllowedIPs, AllowedOrigins: k.AllowedOrigins, AllowBrowserWrites: k.AllowBrowserWrites,
			Contact: k.Contact, RateLimit: k.RateLimit, CreatedBy: k.CreatedBy, Metadata: k.Metadata,
		}, now)
		if err != nil {
			return false, fmt.Errorf("lifecycle: minting the replacement: %w", err)
		}
		nk.Key.ExpiresAt = k.ExpiresAt // set after validation: it may be close
		nk.Key.Replaces = k.ID
		created = nk

		end := now.Add(overlap)
		if !k.ExpiresAt.IsZero() && k.ExpiresAt.Before(end) {
			end = k.ExpiresAt
		}
		k.ExpiresAt, k.ReplacedBy = end, nk.Key.ID
		k.Status = store.KeyExpiring
		if overlap == 0 {
			k.Status = store.KeyExpired
		}
		rotated, err := s.audit(ActionKeyRotated, *k, actor, now, map[string]string{
			"replaced_by": apikey.PublicID(nk.Key.ID), "old_expires_at": end.Format(time.RFC3339)})
		if err != nil {
			return false, err
		}
		born, err := s.audit(ActionKeyCreated, nk.Key, actor, now, map[string]string{"replaces": apikey.PublicID(k.ID)})
		c.Keys = append(c.Keys, store.KeyWrite{Key: nk.Key})
		c.Audit = append(c.Audit, rotated, born)
		return false, err
	})
	if err != nil {
		return Created{}, store.Key{}, err
	}
	created.Key.Revision = 1
	return created, old, nil
}
