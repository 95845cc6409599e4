package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/keyward/keyward/pkg/store"
)

// Leak records that key k (as stored: store.GetKey or Stored, never Get's
// effective view, whose status is not written back) was found exposed,
// with where (details: url, source): a key.leaked event, and, if revoke is
// set and the key still works, its revocation, in one change. It returns
// the key as written and whether it revoked it. A report about a key that
// changed since it was read is applied to the fresh key.
func (s *Service) Leak(ctx context.Context, actor Actor, k store.Key, revoke bool, details map[string]string) (store.Key, bool, error) {
	revoked := false
	leak := func(k *store.Key, c *store.Change, now time.Time) (bool, error) {
		revoked = false
		if !slices.Contains(k.Notices, store.NoticeLeaked) {
			k.Notices = append(slices.Clone(k.Notices), store.NoticeLeaked)
		}
		if live := k.Effective(now).Status; revoke && (live == store.KeyActive || live == store.KeyExpiring) {
			if _, err := s.revokeInto(k, c, actor, now, "leaked"); err != nil {
				return false, err
			}
			revoked = true
		}
		withContact, err := s.withContact(ctx, *k, details)
		if err != nil {
			return false, err
		}
		entry, err := s.audit(ActionKeyLeaked, *k, actor, now, withContact)
		c.Audit = append(c.Audit, entry)
		return false, err
	}
	// First against the key as the caller read it: one read per report.
	if err := actor.vet(k); err != nil {
		return store.Key{}, false, err
	}
	now := s.now().UTC()
	rev, written := k.Revision, k
	var c store.Change
	if _, err := leak(&written, &c, now); err != nil {
		return store.Key{}, false, err
	}
	written.UpdatedAt = now
	c.Keys = append([]store.KeyWrite{{Key: written, ExpectedRevision: rev}}, c.Keys...)
	err := s.write(ctx, actor, c)
	if err == nil {
		written.Revision = rev + 1
		return written.Effective(now), revoked, nil
	}
	if !errors.Is(err, store.ErrConflict) && !errors.Is(err, store.ErrNotFound) {
		return store.Key{}, false, fmt.Errorf("lifecycle: %w", err)
	}
	written, err = s.mutate(ctx, actor, k.TenantID, k.ID, leak)
	return written, revoked, err
}
