package embedded

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/keyward/keyward/pkg/store"
)

// GetTenant implements store.Store.
func (s *Store) GetTenant(ctx context.Context, id string) (store.Tenant, error) {
	var t tenantRecord
	var ok bool
	err := s.view(ctx, func(tx *bolt.Tx) (err error) {
		ok, err = s.get(tx, bTenants, []byte(id), &t)
		return err
	})
	if err == nil && !ok {
		err = fmt.Errorf("embedded: tenant %s: %w", id, store.ErrNotFound)
	}
	return normalTenant(t.Tenant), err
}

// KeyCount implements store.Store.
func (s *Store) KeyCount(ctx context.Context, tenantID string) (int64, error) {
	var t tenantRecord
	err := s.view(ctx, func(tx *bolt.Tx) error {
		_, err := s.get(tx, bTenants, []byte(tenantID), &t)
		return err
	})
	return t.KeyCount, err
}

// MemberKeyCount implements store.Store.
func (s *Store) MemberKeyCount(ctx context.Context, tenantID, member string) (int64, error) {
	var n int64
	err := s.view(ctx, func(tx *bolt.Tx) error {
		_, err := s.get(tx, bMemberKeys, join(tenantID, member), &n)
		return err
	})
	return n, err
}

// GetKey implements store.Store.
func (s *Store) GetKey(ctx context.Context, id string) (store.Key, error) {
	if err := s.usable(ctx); err != nil {
		return store.Key{}, err
	}
	// This process is the file's only writer (bbolt locks it): with no
	// write since the key was cached, the cached key is the stored one,
	// and the authorizer's read on every decision needs no transaction.
	writes := s.writes.Load()
	if k, ok := s.keys.unchanged(id, writes); ok {
		return k, nil
	}
	var k store.Key
	var ok bool
	err := s.view(ctx, func(tx *bolt.Tx) (err error) {
		k, ok, err = s.getKey(tx, id, &writes)
		return err
	})
	if err == nil && !ok {
		err = fmt.Errorf("embedded: key %s: %w", id, store.ErrNotFound)
	}
	return k, err
}

// descend positions c on the last key below from (or, without from, the
// last key with prefix) and returns it.
func descend(c *bolt.Cursor, prefix, from []byte) ([]byte, []byte) {
	if from == nil {
		from = append(bytes.Clone(prefix[:len(prefix)-1]), prefix[len(prefix)-1]+1)
	}
	if k, _ := c.Seek(from); k == nil {
		return c.Last()
	}
	return c.Prev()
}

// ascend positions c on the first key above from (or, without from, the
// first key with prefix) and returns it.
func ascend(c *bolt.Cursor, prefix, from []byte) ([]byte, []byte) {
	if from == nil {
		return c.Seek(prefix)
	}
	k, v := c.Seek(from)
	if bytes.Equal(k, from) {
		return c.Next()
	}
	return k, v
}

// position is a page's cursor as the position of its last item in its
// order, within prefix; nil for no cursor.
func position(prefix []byte, cursor string) ([]byte, error) {
	if cursor == "" {
		return nil, nil
	}
	pos, err := store.DecodeCursor(cursor)
	if err != nil {
		return nil, err
	}
	return append(bytes.Clone(prefix), pos...), nil
}

// ListKeys implements store.Store: a reverse range read of the tenant's
// index, newest first.
func (s *Store) ListKeys(ctx context.Context, tenantID string, q store.KeyQuery) (store.KeyPage, error) {
	if err := store.CheckLimit(q.Limit); err != nil {
		return store.KeyPage{}, fmt.Errorf("embedded: list keys of %s: %w", tenantID, err)
	}
	prefix := join(tenantID, "")
	from, err := position(prefix, q.Cursor)
	if err != nil {
		return store.KeyPage{}, fmt.Errorf("embedded: list keys of %s: %w", tenantID, err)
	}
	var page store.KeyPage
	err = s.view(ctx, func(tx *bolt.Tx) error {
		c := tx.Bucket(bTenantKeys).Cursor()
		examined := 0
		for ik, id := descend(c, prefix, from); ik != nil && bytes.HasPrefix(ik, prefix); ik, id = c.Prev() {
			if full(&page, q.Limit, func(k store.Key) string { return store.EncodeCursor(store.KeyOrder(k)) }) {
				return nil
			}
			if examined == store.MaxExamined {
				// A filter passing over most keys: a short page, and a
				// cursor after the last entry looked at.
				last, _ := c.Next()
				page.NextCursor = store.EncodeCursor(string(last[len(prefix):]))
				return nil
			}
			examined++
			k, use, err := s.indexedKey(tx, &page, ik, id, func(k store.Key) bool {
				return k.TenantID == tenantID && store.KeyOrder(k) == string(ik[len(prefix):])
			})
			if err != nil {
				return err
			}
			if !use || (q.Environment != "" && k.Environment != q.Environment) || (q.Status != "" && k.Status != q.Status) ||
				(q.CreatedBy != "" && k.CreatedBy != q.CreatedBy) {
				continue
			}
			page.Keys = append(page.Keys, k)
		}
		return nil
	})
	return page, err
}

// indexedKey reads key id for a listing, where an index entry (or, for a
// scan, the key's own record) names it. A key that does not decode is
// added to page.Skipped and not used, as the DynamoDB backend skips one, so
// that one damaged key does not stop a revocation of all the others; an
// entry that names no key, or a key it does not match (names), is damage.
func (s *Store) indexedKey(tx *bolt.Tx, page *store.KeyPage, entry, id []byte, names func(store.Key) bool) (k store.Key, use bool, err error) {
	k, ok, err := s.getKey(tx, string(id), nil)
	switch {
	case errors.Is(err, store.ErrCorrupt):
		page.Skipped = append(page.Skipped, string(id))
		return store.Key{}, false, nil
	case err != nil:
		return store.Key{}, false, err
	case !ok || !names(k):
		return store.Key{}, false, s.damagedFile(fmt.Sprintf("index entry %q does not name its key", entry))
	}
	return k, true, nil
}

// full reports whether page holds limit keys already, with another entry
// to come; then it sets the page's cursor to the one after its last key.
// Checked before an entry is read, so that a key passed over (Skipped) is
// always before the cursor and no two pages report it.
func full(page *store.KeyPage, limit int, cursorAfter func(store.Key) string) bool {
	if len(page.Keys) < limit {
		return false
	}
	page.NextCursor = cursorAfter(page.Keys[limit-1])
	return true
}

// ListAudit implements store.Store: a reverse range read of the tenant's
// entries, or of one key's through its index.
func (s *Store) ListAudit(ctx context.Context, tenantID string, q store.AuditQuery) (store.AuditPage, error) {
	if err := store.CheckLimit(q.Limit); err != nil {
		return store.AuditPage{}, fmt.Errorf("embedded: list audit of %s: %w", tenantID, err)
	}
	bucket, prefix := bAudit, join(tenantID, "")
	if q.KeyID != "" {
		bucket, prefix = bAuditKeys, join(tenantID, q.KeyID, "")
	}
	from, err := position(prefix, q.Cursor)
	if err != nil {
		return store.AuditPage{}, fmt.Errorf("embedded: list audit of %s: %w", tenantID, err)
	}
	now := s.now()
	var page store.AuditPage
	err = s.view(ctx, func(tx *bolt.Tx) error {
		c := tx.Bucket(bucket).Cursor()
		examined := 0
		for ik, _ := descend(c, prefix, from); ik != nil && bytes.HasPrefix(ik, prefix); ik, _ = c.Prev() {
			if examined == store.MaxExamined && len(page.Entries) < q.Limit {
				// Entries passed over (expired, another environment's):
				// a short page, and a cursor after the last one looked at.
				last, _ := c.Next()
				page.NextCursor = store.EncodeCursor(string(last[len(prefix):]))
				return nil
			}
			examined++
			order := string(ik[len(prefix):])
			var e store.AuditEntry
			ok, err := s.get(tx, bAudit, join(tenantID, order), &e)
			if err != nil {
				return err
			}
			if !ok || e.TenantID != tenantID || store.AuditOrder(e) != order || (q.KeyID != "" && e.KeyID != q.KeyID) {
				return s.damagedFile(fmt.Sprintf("audit entry %q is not where its index says", ik))
			}
			if expired(e.ExpiresAt, now) || !store.InEnvironment(e, q.Environment) {
				continue
			}
			if len(page.Entries) == q.Limit {
				page.NextCursor = store.EncodeCursor(store.AuditOrder(page.Entries[q.Limit-1]))
				return nil
			}
			page.Entries = append(page.Entries, normalAudit(e))
		}
		return nil
	})
	return page, err
}

// expiryDue reports whether k belongs in the expiry index: it is active or
// expiring and has an expiry.
func expiryDue(k store.Key) bool {
	return (k.Status == store.KeyActive || k.Status == store.KeyExpiring) && !k.ExpiresAt.IsZero()
}

// ListExpiring implements store.Store: a range read of the expiry index,
// soonest first, up to Before.
func (s *Store) ListExpiring(ctx context.Context, q store.ExpiryQuery) (store.KeyPage, error) {
	if err := store.CheckLimit(q.Limit); err != nil {
		return store.KeyPage{}, fmt.Errorf("embedded: list expiring keys: %w", err)
	}
	from, err := position(nil, q.Cursor)
	if err != nil {
		return store.KeyPage{}, fmt.Errorf("embedded: list expiring keys: %w", err)
	}
	// Every position at Before sorts below it: '$' follows '#'.
	upper := []byte(store.SortTime(q.Before) + "$")
	var page store.KeyPage
	err = s.view(ctx, func(tx *bolt.Tx) error {
		c := tx.Bucket(bExpiry).Cursor()
		for ik, id := ascend(c, nil, from); ik != nil && bytes.Compare(ik, upper) < 0; ik, id = c.Next() {
			if full(&page, q.Limit, func(k store.Key) string { return store.EncodeCursor(store.ExpiryOrder(k)) }) {
				return nil
			}
			k, use, err := s.indexedKey(tx, &page, ik, id, func(k store.Key) bool {
				return expiryDue(k) && store.ExpiryOrder(k) == string(ik)
			})
			if err != nil {
				return err
			}
			if use {
				page.Keys = append(page.Keys, k)
			}
		}
		return nil
	})
	return page, err
}

// ScanKeys implements store.Store: keys in id order, a cursor being the id
// of the last key returned.
func (s *Store) ScanKeys(ctx context.Context, cursor string, limit int) (store.KeyPage, error) {
	if err := store.CheckLimit(limit); err != nil {
		return store.KeyPage{}, fmt.Errorf("embedded: scan keys: %w", err)
	}
	var from []byte
	if cursor != "" {
		id, err := decodeScanCursor(cursor)
		if err != nil {
			return store.KeyPage{}, fmt.Errorf("embedded: scan keys: %w", err)
		}
		from = []byte(id)
	}
	var page store.KeyPage
	err := s.view(ctx, func(tx *bolt.Tx) error {
		c := tx.Bucket(bKeys).Cursor()
		for id, _ := ascend(c, nil, from); id != nil; id, _ = c.Next() {
			if full(&page, limit, func(k store.Key) string { return encodeScanCursor(k.ID) }) {
				return nil
			}
			k, use, err := s.indexedKey(tx, &page, id, id, func(k store.Key) bool { return k.ID == string(id) })
			if err != nil {
				return err
			}
			if use {
				page.Keys = append(page.Keys, k)
			}
		}
		return nil
	})
	return page, err
}

// maxScanID bounds the key id a scan cursor may carry, as store.DecodeCursor
// bounds the id of a position.
const maxScanID = 64

// encodeScanCursor turns the id of the last key of a scan page into a cursor.
func encodeScanCursor(id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(id))
}

// decodeScanCursor is the inverse of encodeScanCursor. It accepts only a key
// id of the charset of store.DecodeCursor (that of generated key ids), so
// that it refuses what ScanKeys did not issue, another query's cursor
// included.
func decodeScanCursor(cursor string) (string, error) {
	if cursor == "" || len(cursor) > base64.RawURLEncoding.EncodedLen(maxScanID) {
		return "", store.ErrInvalidCursor
	}
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return "", store.ErrInvalidCursor
	}
	for _, c := range raw {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '-') {
			return "", store.ErrInvalidCursor
		}
	}
	return string(raw), nil
}

// ListPeppers implements store.Store.
func (s *Store) ListPeppers(ctx context.Context) ([]store.Pepper, error) {
	var peppers []store.Pepper
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bPeppers).ForEach(func(k, v []byte) error {
			var p store.Pepper
			if err := s.decode(bPeppers, k, v, &p); err != nil {
				return err
			}
			peppers = append(peppers, normalPepper(p))
			return nil
		})
	})
	return peppers, err
}

// GetCheckpoint implements store.Store.
func (s *Store) GetCheckpoint(ctx context.Context, job string) (string, error) {
	var cursor string
	err := s.view(ctx, func(tx *bolt.Tx) error {
		_, err := s.get(tx, bCheckpoints, []byte(job), &cursor)
		return err
	})
	return cursor, err
}

// GetIdempotency implements store.Store.
func (s *Store) GetIdempotency(ctx context.Context, tenantID, key string) (store.Idempotency, error) {
	var r store.Idempotency
	var ok bool
	err := s.view(ctx, func(tx *bolt.Tx) (err error) {
		ok, err = s.get(tx, bIdempotency, join(tenantID, key), &r)
		return err
	})
	if err != nil {
		return store.Idempotency{}, err
	}
	if !ok || expired(r.ExpiresAt, s.now()) {
		return store.Idempotency{}, fmt.Errorf("embedded: idempotency %s/%s: %w", tenantID, key, store.ErrNotFound)
	}
	return normalIdem(r), nil
}
