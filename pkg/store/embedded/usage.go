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

// usageExpiry is when an hour's usage expires.
func usageExpiry(hour time.Time) time.Time {
	return hour.Add(time.Hour + store.UsageRetention)
}

// AddUsage implements store.UsageStore.
func (s *Store) AddUsage(ctx context.Context, m store.UsageMinute) error {
	if err := store.CheckUsageMinute(m); err != nil {
		return err
	}
	hour := m.Minute.UTC().Truncate(time.Hour)
	key := usageKey(m.KeyID, hour)
	return s.update(ctx, func(tx *bolt.Tx) error {
		var h store.UsageHour
		ok, err := s.get(tx, bUsage, key, &h)
		if err != nil {
			return err
		}
		if ok && h.TenantID != m.TenantID {
			return fmt.Errorf("embedded: usage of key %s is tenant %s's, not %s: %w", m.KeyID, h.TenantID, m.TenantID, store.ErrConflict)
		}
		if !ok {
			if err := s.expireLater(tx, usageExpiry(hour), bUsage, key); err != nil {
				return err
			}
		}
		return s.put(tx, bUsage, key, store.AddToHour(h, m))
	})
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
			if !expired(usageExpiry(h.Hour), now) {
				out = append(out, h)
			}
		}
		return nil
	})
	return out, err
}
