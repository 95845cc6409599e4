package embedded

import (
	"bytes"
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/keyward/keyward/pkg/store"
)

// usageKey is an hour's key in bUsage: by key, then in time order.
func usageKey(keyID string, hour time.Time) []byte {
	return join(keyID, store.SortTime(hour))
}

// AddUsage implements store.UsageStore.
func (s *Store) AddUsage(ctx context.Context, m store.UsageMinute) (store.UsageHour, error) {
	if err := store.CheckUsageMinute(m); err != nil {
		return store.UsageHour{}, err
	}
	hour := m.Minute.UTC().Truncate(time.Hour)
	key := usageKey(m.KeyID, hour)
	var written store.UsageHour
	err := s.update(ctx, func(tx *bolt.Tx) error {
		var h store.UsageHour
		ok, err := s.get(tx, bUsage, key, &h)
		if err != nil {
			return err
		}
		if ok && h.TenantID != m.TenantID {
			return fmt.Errorf("embedded: usage of key %s is tenant %s's, not %s: %w", m.KeyID, h.TenantID, m.TenantID, store.ErrConflict)
		}
		if !ok {
			if err := s.expireLater(tx, store.UsageExpiry(hour), bUsage, key); err != nil {
				return err
			}
		}
		written = store.AddToHour(h, m)
		return s.put(tx, bUsage, key, written)
	})
	return written, err
}

// ListUsage implements store.UsageStore.
func (s *Store) ListUsage(ctx context.Context, keyID string, from, to time.Time) ([]store.UsageHour, error) {
	var out []store.UsageHour
	now := s.now()
	start, end := usageKey(keyID, from.UTC().Truncate(time.Hour)), usageKey(keyID, to.UTC())
	err := s.view(ctx, func(tx *bolt.Tx) error {
		out = nil
		c := tx.Bucket(bUsage).Cursor()
		for k, raw := c.Seek(start); k != nil && bytes.Compare(k, end) < 0 && len(out) < store.MaxUsageHours; k, raw = c.Next() {
			var h store.UsageHour
			if err := s.decode(bUsage, k, raw, &h); err != nil {
				return err
			}
			if !expired(store.UsageExpiry(h.Hour), now) {
				out = append(out, h)
			}
		}
		return nil
	})
	return out, err
}

// GetKeyWatch implements store.KeyWatches.
func (s *Store) GetKeyWatch(ctx context.Context, keyID string) (store.KeyWatch, error) {
	var w store.KeyWatch
	var ok bool
	err := s.view(ctx, func(tx *bolt.Tx) (err error) {
		ok, err = s.get(tx, bKeyWatch, []byte(keyID), &w)
		return err
	})
	if err == nil && !ok {
		err = fmt.Errorf("embedded: watch of key %s: %w", keyID, store.ErrNotFound)
	}
	return w, err
}

// PutKeyWatch implements store.KeyWatches.
func (s *Store) PutKeyWatch(ctx context.Context, w store.KeyWatch) error {
	if err := store.CheckKeyWatch(w); err != nil {
		return err
	}
	return s.update(ctx, func(tx *bolt.Tx) error {
		var stored store.KeyWatch
		ok, err := s.get(tx, bKeyWatch, []byte(w.KeyID), &stored)
		switch {
		case err != nil:
			return err
		case ok && stored.Revision != w.Revision, !ok && w.Revision != 0:
			return fmt.Errorf("embedded: watch of key %s is not at revision %d: %w", w.KeyID, w.Revision, store.ErrConflict)
		case ok && stored.TenantID != w.TenantID:
			return fmt.Errorf("embedded: watch of key %s is tenant %s's: %w", w.KeyID, stored.TenantID, store.ErrConflict)
		}
		w.Revision++
		return s.put(tx, bKeyWatch, []byte(w.KeyID), w)
	})
}
