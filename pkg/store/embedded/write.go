package embedded

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/keyward/keyward/pkg/store"
)

// Apply implements store.Store: one database transaction, in which any
// failed precondition rolls back everything.
func (s *Store) Apply(ctx context.Context, c store.Change) error {
	if err := c.Validate(); err != nil {
		return fmt.Errorf("embedded: apply: %w", err)
	}
	creates := c.CreatesByTenant()
	// The tenant this change writes replaces the stored one, so its new
	// status is the one that must allow the creates.
	if w := c.Tenant; w != nil && creates[w.Tenant.ID] > 0 && w.Tenant.Status != store.TenantActive {
		return fmt.Errorf("embedded: apply: keys created in tenant %s, written as %s: %w", w.Tenant.ID, w.Tenant.Status, store.ErrConflict)
	}
	now := s.now()
	// Checked in the order of the DynamoDB transaction's items (keys, the
	// tenant, counters, audit, the idempotency record), so that the first
	// failure is reported alike.
	err := s.update(ctx, func(tx *bolt.Tx) error {
		for _, w := range c.Keys {
			if err := s.writeKey(tx, w); err != nil {
				return err
			}
		}
		if w := c.Tenant; w != nil {
			if err := s.writeTenant(tx, *w, creates[w.Tenant.ID]); err != nil {
				return err
			}
		}
		for _, id := range slices.Sorted(maps.Keys(creates)) {
			if c.Tenant != nil && c.Tenant.Tenant.ID == id {
				continue // counted by writeTenant
			}
			if err := s.countKeys(tx, id, creates[id]); err != nil {
				return err
			}
		}
		for m, n := range c.CreatesByMember() {
			if err := s.countMemberKeys(tx, m, n); err != nil {
				return err
			}
		}
		for _, a := range c.Audit {
			if err := s.writeAudit(tx, a, now); err != nil {
				return err
			}
		}
		if r := c.Idempotency; r != nil {
			// As on DynamoDB, a change fails on any claim but its own, in
			// progress: ErrConflict.
			err := s.completeClaim(tx, *r, now)
			if errors.Is(err, store.ErrNotFound) {
				err = fmt.Errorf("embedded: apply: no claim of %s/%s in progress: %w", r.TenantID, r.Key, store.ErrConflict)
			}
			return err
		}
		return nil
	})
	if err == nil && s.outbox && len(c.Audit) > 0 {
		select {
		case s.committed <- struct{}{}:
		default: // a signal is pending already
		}
	}
	return err
}

// writeKey creates a key, or replaces the mutable fields of a stored one,
// with its index entries.
func (s *Store) writeKey(tx *bolt.Tx, w store.KeyWrite) error {
	k := normalKey(w.Key)
	stored, ok, err := s.getKey(tx, k.ID, nil)
	if err != nil {
		return err
	}
	if w.ExpectedRevision == 0 {
		if ok {
			return fmt.Errorf("embedded: apply: key %s: %w", k.ID, store.ErrAlreadyExists)
		}
		k.Revision = 1
		if err := tx.Bucket(bTenantKeys).Put(join(k.TenantID, store.KeyOrder(k)), []byte(k.ID)); err != nil {
			return err
		}
		return s.putKey(tx, k, nil)
	}
	if !ok || stored.TenantID != k.TenantID {
		return fmt.Errorf("embedded: apply: key %s in tenant %s: %w", k.ID, k.TenantID, store.ErrNotFound)
	}
	if stored.Revision != w.ExpectedRevision {
		return fmt.Errorf("embedded: apply: key %s is at revision %d, not %d: %w", k.ID, stored.Revision, w.ExpectedRevision, store.ErrConflict)
	}
	before := stored
	// Only the mutable fields come from the caller; see store.Key.
	stored.Name = k.Name
	stored.Description = k.Description
	stored.Scopes = k.Scopes
	stored.Status = k.Status
	stored.UpdatedAt = k.UpdatedAt
	stored.NotBefore = k.NotBefore
	stored.ExpiresAt = k.ExpiresAt
	stored.RevokedAt = k.RevokedAt
	stored.AllowedIPs = k.AllowedIPs
	stored.AllowedOrigins = k.AllowedOrigins
	stored.AllowBrowserWrites = k.AllowBrowserWrites
	stored.Contact = k.Contact
	stored.RateLimit = k.RateLimit
	stored.ReplacedBy = k.ReplacedBy
	stored.Metadata = k.Metadata
	stored.Notices = k.Notices
	stored.Revision = w.ExpectedRevision + 1
	return s.putKey(tx, stored, &before)
}

// putKey stores k and moves its expiry index entry from what before had.
func (s *Store) putKey(tx *bolt.Tx, k store.Key, before *store.Key) error {
	expiry := tx.Bucket(bExpiry)
	if before != nil && expiryDue(*before) {
		if err := expiry.Delete([]byte(store.ExpiryOrder(*before))); err != nil {
			return err
		}
	}
	if expiryDue(k) {
		if err := expiry.Put([]byte(store.ExpiryOrder(k)), []byte(k.ID)); err != nil {
			return err
		}
	}
	return s.put(tx, bKeys, []byte(k.ID), k)
}

// writeTenant creates or replaces a tenant, counting the keys the same
// change creates in it.
func (s *Store) writeTenant(tx *bolt.Tx, w store.TenantWrite, created int64) error {
	t := tenantRecord{Tenant: normalTenant(w.Tenant)}
	var stored tenantRecord
	ok, err := s.get(tx, bTenants, []byte(t.ID), &stored)
	switch {
	case err != nil:
		return err
	case w.ExpectedRevision == 0 && ok:
		return fmt.Errorf("embedded: apply: tenant %s: %w", t.ID, store.ErrAlreadyExists)
	case w.ExpectedRevision != 0 && !ok:
		return fmt.Errorf("embedded: apply: tenant %s: %w", t.ID, store.ErrNotFound)
	case stored.Revision != w.ExpectedRevision:
		return fmt.Errorf("embedded: apply: tenant %s is at revision %d, not %d: %w", t.ID, stored.Revision, w.ExpectedRevision, store.ErrConflict)
	}
	t.KeyCount = stored.KeyCount + created // stored is zero on create
	t.Revision = w.ExpectedRevision + 1
	return s.put(tx, bTenants, []byte(t.ID), t)
}

// countKeys adds n created keys to an active tenant the change does not
// write.
func (s *Store) countKeys(tx *bolt.Tx, id string, n int64) error {
	var t tenantRecord
	ok, err := s.get(tx, bTenants, []byte(id), &t)
	if err != nil {
		return err
	}
	if !ok || t.Status != store.TenantActive {
		return fmt.Errorf("embedded: apply: keys created in tenant %s, which is missing or not active: %w", id, store.ErrConflict)
	}
	t.KeyCount += n
	return s.put(tx, bTenants, []byte(id), t)
}

// countMemberKeys adds n to the keys member created.
func (s *Store) countMemberKeys(tx *bolt.Tx, m store.Member, n int64) error {
	key := join(m.TenantID, m.ID)
	var count int64
	if _, err := s.get(tx, bMemberKeys, key, &count); err != nil {
		return err
	}
	return s.put(tx, bMemberKeys, key, count+n)
}

// writeAudit creates an audit entry unless an unexpired one holds its
// position, with its key index, TTL and outbox entries.
func (s *Store) writeAudit(tx *bolt.Tx, a store.AuditEntry, now time.Time) error {
	a = normalAudit(a)
	order := store.AuditOrder(a)
	key := join(a.TenantID, order)
	var old store.AuditEntry
	ok, err := s.get(tx, bAudit, key, &old)
	if err != nil {
		return err
	}
	if ok && !expired(old.ExpiresAt, now) {
		return fmt.Errorf("embedded: apply: audit entry %s/%s: %w", a.TenantID, a.ID, store.ErrAlreadyExists)
	}
	if ok {
		if err := s.forgetAudit(tx, old); err != nil {
			return err
		}
	}
	if a.KeyID != "" {
		if err := tx.Bucket(bAuditKeys).Put(join(a.TenantID, a.KeyID, order), []byte{}); err != nil {
			return err
		}
	}
	if err := s.expireLater(tx, a.ExpiresAt, bAudit, key); err != nil {
		return err
	}
	if s.outbox {
		if err := s.enqueue(tx, a); err != nil {
			return err
		}
	}
	return s.put(tx, bAudit, key, a)
}

// enqueue adds an audit entry to the outbox, after every entry there.
func (s *Store) enqueue(tx *bolt.Tx, a store.AuditEntry) error {
	n, err := tx.Bucket(bOutbox).NextSequence()
	if err != nil {
		return err
	}
	return s.put(tx, bOutbox, seq(n), a)
}

// forgetAudit deletes an audit entry's index entries.
func (s *Store) forgetAudit(tx *bolt.Tx, e store.AuditEntry) error {
	order := store.AuditOrder(e)
	if e.KeyID != "" {
		if err := tx.Bucket(bAuditKeys).Delete(join(e.TenantID, e.KeyID, order)); err != nil {
			return err
		}
	}
	return s.expireNever(tx, e.ExpiresAt, bAudit, join(e.TenantID, order))
}

// expireLater indexes an item for DropExpired; a zero time never expires.
func (s *Store) expireLater(tx *bolt.Tx, at time.Time, bucket, key []byte) error {
	if at.IsZero() {
		return nil
	}
	return tx.Bucket(bTTL).Put(join(store.SortTime(at), string(bucket), string(key)), []byte{})
}

// expireNever takes an item out of DropExpired's index.
func (s *Store) expireNever(tx *bolt.Tx, at time.Time, bucket, key []byte) error {
	if at.IsZero() {
		return nil
	}
	return tx.Bucket(bTTL).Delete(join(store.SortTime(at), string(bucket), string(key)))
}

// completeClaim completes the in-progress record r claims: ErrNotFound if
// there is none, ErrConflict if it is done or another claim's.
func (s *Store) completeClaim(tx *bolt.Tx, r store.Idempotency, now time.Time) error {
	key := join(r.TenantID, r.Key)
	var stored store.Idempotency
	ok, err := s.get(tx, bIdempotency, key, &stored)
	switch {
	case err != nil:
		return err
	case !ok || expired(stored.ExpiresAt, now):
		return fmt.Errorf("embedded: complete idempotency record %s/%s: %w", r.TenantID, r.Key, store.ErrNotFound)
	case stored.Done || !stored.CreatedAt.Equal(r.CreatedAt) || stored.RequestHash != r.RequestHash:
		return fmt.Errorf("embedded: complete idempotency record %s/%s: done already or another claim's: %w", r.TenantID, r.Key, store.ErrConflict)
	}
	stored.Done, stored.StatusCode, stored.Body = true, r.StatusCode, r.Body
	return s.put(tx, bIdempotency, key, stored)
}

// TouchKey implements store.Store.
func (s *Store) TouchKey(ctx context.Context, id string, at time.Time, minInterval time.Duration) (bool, error) {
	touched := false
	err := s.update(ctx, func(tx *bolt.Tx) error {
		k, ok, err := s.getKey(tx, id, nil)
		switch {
		case err != nil:
			return err
		case !ok:
			return fmt.Errorf("embedded: touch key %s: %w", id, store.ErrNotFound)
		case !k.LastUsedAt.IsZero() && !k.LastUsedAt.Before(at.Add(-minInterval)):
			return nil
		}
		k.LastUsedAt, touched = at.UTC(), true
		return s.put(tx, bKeys, []byte(id), k)
	})
	return touched, err
}

// RehashKey implements store.Store.
func (s *Store) RehashKey(ctx context.Context, id string, hash []byte, toVersion int) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		k, ok, err := s.getKey(tx, id, nil)
		switch {
		case err != nil:
			return err
		case !ok:
			return fmt.Errorf("embedded: rehash key %s: %w", id, store.ErrNotFound)
		case k.PepperVersion >= toVersion:
			return fmt.Errorf("embedded: rehash key %s: pepper version is %d, not older than %d: %w", id, k.PepperVersion, toVersion, store.ErrConflict)
		}
		k.Hash, k.PepperVersion = hash, toVersion
		return s.put(tx, bKeys, []byte(id), k)
	})
}

// CreatePepper implements store.Store.
func (s *Store) CreatePepper(ctx context.Context, p store.Pepper) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		key := seq(uint64(p.Version))
		if tx.Bucket(bPeppers).Get(key) != nil {
			return fmt.Errorf("embedded: create pepper %d: %w", p.Version, store.ErrAlreadyExists)
		}
		return s.put(tx, bPeppers, key, normalPepper(p))
	})
}

// RetirePepper implements store.Store. A zero at is refused: it would
// leave the version looking unretired.
func (s *Store) RetirePepper(ctx context.Context, version int, at time.Time) error {
	if at.IsZero() {
		return fmt.Errorf("embedded: retire pepper %d: zero retirement time", version)
	}
	return s.update(ctx, func(tx *bolt.Tx) error {
		key := seq(uint64(version))
		var p store.Pepper
		ok, err := s.get(tx, bPeppers, key, &p)
		switch {
		case err != nil:
			return err
		case !ok:
			return fmt.Errorf("embedded: retire pepper %d: %w", version, store.ErrNotFound)
		case !p.RetiredAt.IsZero():
			return fmt.Errorf("embedded: retire pepper %d: retired already: %w", version, store.ErrConflict)
		}
		p.RetiredAt = at.UTC()
		return s.put(tx, bPeppers, key, p)
	})
}

// PutCheckpoint implements store.Store.
func (s *Store) PutCheckpoint(ctx context.Context, job, cursor string) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		if cursor == "" {
			return tx.Bucket(bCheckpoints).Delete([]byte(job))
		}
		return s.put(tx, bCheckpoints, []byte(job), cursor)
	})
}

// PutIdempotency implements store.Store.
func (s *Store) PutIdempotency(ctx context.Context, r store.Idempotency) error {
	r = normalIdem(r)
	key := join(r.TenantID, r.Key)
	return s.update(ctx, func(tx *bolt.Tx) error {
		var old store.Idempotency
		ok, err := s.get(tx, bIdempotency, key, &old)
		if err != nil {
			return err
		}
		if ok && !expired(old.ExpiresAt, s.now()) {
			return fmt.Errorf("embedded: put idempotency %s/%s: %w", r.TenantID, r.Key, store.ErrAlreadyExists)
		}
		if ok {
			if err := s.expireNever(tx, old.ExpiresAt, bIdempotency, key); err != nil {
				return err
			}
		}
		if err := s.expireLater(tx, r.ExpiresAt, bIdempotency, key); err != nil {
			return err
		}
		return s.put(tx, bIdempotency, key, r)
	})
}

// CompleteIdempotency implements store.Store.
func (s *Store) CompleteIdempotency(ctx context.Context, r store.Idempotency) error {
	return s.update(ctx, func(tx *bolt.Tx) error { return s.completeClaim(tx, r, s.now()) })
}

// DeleteIdempotency implements store.Store.
func (s *Store) DeleteIdempotency(ctx context.Context, r store.Idempotency) error {
	key := join(r.TenantID, r.Key)
	return s.update(ctx, func(tx *bolt.Tx) error {
		var stored store.Idempotency
		ok, err := s.get(tx, bIdempotency, key, &stored)
		switch {
		case err != nil:
			return err
		case !ok:
			return nil
		case !stored.CreatedAt.Equal(r.CreatedAt) || stored.RequestHash != r.RequestHash || stored.Done:
			return fmt.Errorf("embedded: delete idempotency record: another request holds the key, or the request is done: %w", store.ErrConflict)
		}
		if err := s.expireNever(tx, stored.ExpiresAt, bIdempotency, key); err != nil {
			return err
		}
		return tx.Bucket(bIdempotency).Delete(key)
	})
}
