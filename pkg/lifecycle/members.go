package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/keyward/keyward/pkg/store"
)

// A member whose keys are revoked as a whole (RevokeMember: a person who
// left the tenant) is recorded as removed, so that their console sessions
// end too rather than living out their lifetime; if the identity provider
// still vouches for them, they sign in again. The record is an item with a
// lifetime of the store contract's idempotency records, in a namespace no
// Idempotency-Key reaches, kept as long as any session can last; it is
// never done (no answer is replayed from it), so a later removal may
// replace it.

// RemovalHorizon is how long a removal is remembered: longer than any
// console session lasts.
const RemovalHorizon = 24 * time.Hour

func removedNamespace(tenant string) string { return "_removed:" + tenant }

// recordRemoval records that member's sessions begun before at are over.
func (s *Service) recordRemoval(ctx context.Context, tenant, member string, at time.Time) error {
	r := store.Idempotency{TenantID: removedNamespace(tenant), Key: member, RequestHash: "member-removed",
		CreatedAt: at, ExpiresAt: at.Add(RemovalHorizon)}
	err := s.store.PutIdempotency(ctx, r)
	if errors.Is(err, store.ErrAlreadyExists) {
		// An earlier removal: this one is later.
		var old store.Idempotency
		if old, err = s.store.GetIdempotency(ctx, r.TenantID, r.Key); err == nil {
			if err = s.store.DeleteIdempotency(ctx, old); err == nil || errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
				err = s.store.PutIdempotency(ctx, r)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("lifecycle: recording %s as removed: %w", member, err)
	}
	return nil
}

// RemovalReader reads the records RevokeMember writes (store.Store).
type RemovalReader interface {
	GetIdempotency(ctx context.Context, tenantID, key string) (store.Idempotency, error)
}

// RemovedAt is when the member was last removed (their keys revoked as a
// whole) within RemovalHorizon; false if not.
func RemovedAt(ctx context.Context, st RemovalReader, tenant, member string) (time.Time, bool, error) {
	r, err := st.GetIdempotency(ctx, removedNamespace(tenant), member)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return time.Time{}, false, nil
	case err != nil:
		return time.Time{}, false, fmt.Errorf("lifecycle: reading %s's removal: %w", member, err)
	}
	return r.CreatedAt, true, nil
}
