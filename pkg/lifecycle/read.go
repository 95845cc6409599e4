package lifecycle

import (
	"context"
	"errors"
	"fmt"

	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/store"
)

// Get returns one of the tenant's keys, with its effective status.
func (s *Service) Get(ctx context.Context, tenant, id string) (store.Key, error) {
	k, err := s.store.GetKey(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && k.TenantID != tenant) {
		return store.Key{}, ErrNotFound
	}
	if err != nil {
		return store.Key{}, fmt.Errorf("lifecycle: reading key: %w", err)
	}
	return k.Effective(s.now()), nil
}

// Stored returns one of the tenant's keys as stored, for a change the
// caller makes from it (Leak): Get shows the status the key has at now.
func (s *Service) Stored(ctx context.Context, tenant, id string) (store.Key, error) {
	k, err := s.store.GetKey(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && k.TenantID != tenant) {
		return store.Key{}, ErrNotFound
	}
	if err != nil {
		return store.Key{}, fmt.Errorf("lifecycle: reading key: %w", err)
	}
	return k, nil
}

// List returns a page of the tenant's keys, newest first.
func (s *Service) List(ctx context.Context, tenant string, q store.KeyQuery) (store.KeyPage, error) {
	if err := store.CheckLimit(q.Limit); err != nil {
		return store.KeyPage{}, invalid("limit", "must be 1 to %d", store.MaxPageSize)
	}
	if q.Environment != "" {
		if err := validEnvironment(apikey.Environment(q.Environment)); err != nil {
			return store.KeyPage{}, err
		}
	}
	switch q.Status {
	case "", store.KeyActive, store.KeyExpiring, store.KeyRevoked, store.KeyExpired:
	default:
		return store.KeyPage{}, invalid("status", "must be active, expiring, revoked or expired")
	}
	if q.CreatedBy != "" {
		if err := validMemberID("created_by", q.CreatedBy); err != nil {
			return store.KeyPage{}, err
		}
	}
	page, err := s.store.ListKeys(ctx, tenant, q)
	if errors.Is(err, store.ErrInvalidCursor) {
		return store.KeyPage{}, invalid("cursor", "is not a cursor from this listing")
	}
	if err != nil {
		return store.KeyPage{}, fmt.Errorf("lifecycle: listing keys: %w", err)
	}
	now := s.now()
	for i := range page.Keys {
		page.Keys[i] = page.Keys[i].Effective(now)
	}
	return page, nil
}
