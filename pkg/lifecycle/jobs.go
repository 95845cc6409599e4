package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/keyward/keyward/pkg/store"
)

// Expire marks k expired if its expiry (or rotation overlap) has passed.
// k is the key as listed; if it changed since, or another run expired it
// first, Expire does nothing and reports false, so concurrent sweeps
// cannot both apply the change.
func (s *Service) Expire(ctx context.Context, actor Actor, k store.Key) (bool, error) {
	now := s.now().UTC()
	if k.Status != store.KeyActive && k.Status != store.KeyExpiring || k.ExpiresAt.IsZero() || now.Before(k.ExpiresAt) {
		return false, nil
	}
	rev := k.Revision
	k.Status, k.UpdatedAt = store.KeyExpired, now
	entry, err := s.audit(ActionKeyExpired, k, actor, now, map[string]string{"expires_at": k.ExpiresAt.Format(time.RFC3339)})
	if err != nil {
		return false, err
	}
	return s.applyOnce(ctx, store.Change{Keys: []store.KeyWrite{{Key: k, ExpectedRevision: rev}}, Audit: []store.AuditEntry{entry}})
}

// Notify records that notice was sent about k (an audit entry with action,
// which becomes an event) unless it was already; like Expire, it writes
// against k's listed revision and reports false if it lost a race.
func (s *Service) Notify(ctx context.Context, actor Actor, k store.Key, notice, action string, details map[string]string) (bool, error) {
	if slices.Contains(k.Notices, notice) {
		return false, nil
	}
	now := s.now().UTC()
	rev := k.Revision
	k.Notices = append(slices.Clone(k.Notices), notice)
	details, err := s.withContact(ctx, k, details)
	if err != nil {
		return false, err
	}
	entry, err := s.audit(action, k, actor, now, details)
	if err != nil {
		return false, err
	}
	return s.applyOnce(ctx, store.Change{Keys: []store.KeyWrite{{Key: k, ExpectedRevision: rev}}, Audit: []store.AuditEntry{entry}})
}

// Alert records a suspicious use of k (package usage's rules): an audit
// entry, and so an event, with the evidence in details and the contact
// that applies. The key itself does not change.
func (s *Service) Alert(ctx context.Context, k store.Key, action string, details map[string]string) error {
	details, err := s.withContact(ctx, k, details)
	if err != nil {
		return err
	}
	entry, err := s.audit(action, k, Actor{ID: "usage"}, s.now().UTC(), details)
	if err != nil {
		return err
	}
	if err := s.store.Apply(ctx, store.Change{Audit: []store.AuditEntry{entry}}); err != nil {
		return fmt.Errorf("lifecycle: recording %s: %w", action, err)
	}
	return nil
}

// withContact returns details with the address to reach about k, for its
// event: the key's contact, else its tenant's; neither, no address.
func (s *Service) withContact(ctx context.Context, k store.Key, details map[string]string) (map[string]string, error) {
	contact := k.Contact
	if contact == "" {
		t, err := s.store.GetTenant(ctx, k.TenantID)
		if err != nil {
			return nil, fmt.Errorf("lifecycle: reading the tenant's contact: %w", err)
		}
		contact = t.Contact
	}
	if contact == "" {
		return details, nil
	}
	out := maps.Clone(details)
	if out == nil {
		out = map[string]string{}
	}
	out["contact"] = contact
	return out, nil
}

// Mark records a bookkeeping notice on k (no audit entry, no event: the
// key's access does not change), against its listed revision like Notify.
func (s *Service) Mark(ctx context.Context, k store.Key, notice string) (bool, error) {
	if slices.Contains(k.Notices, notice) {
		return false, nil
	}
	rev := k.Revision
	k.Notices = append(slices.Clone(k.Notices), notice)
	return s.applyOnce(ctx, store.Change{Keys: []store.KeyWrite{{Key: k, ExpectedRevision: rev}}})
}

// applyOnce writes a revision-checked change; a lost race is no error.
func (s *Service) applyOnce(ctx context.Context, c store.Change) (bool, error) {
	err := s.store.Apply(ctx, c)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrNotFound):
		return false, nil
	}
	return false, fmt.Errorf("lifecycle: %w", err)
}

// RecordPepperRotation audits a new pepper version in the system
// namespace, from which the pepper.rotated event is published.
func (s *Service) RecordPepperRotation(ctx context.Context, actor Actor, version int) error {
	e, err := s.entry(store.SystemTenant, ActionPepperRotated, nil, actor, s.now().UTC(), map[string]string{"version": strconv.Itoa(version)})
	if err != nil {
		return err
	}
	if err := s.store.Apply(ctx, store.Change{Audit: []store.AuditEntry{e}}); err != nil {
		return fmt.Errorf("lifecycle: recording pepper rotation: %w", err)
	}
	return nil
}
