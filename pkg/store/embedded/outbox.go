package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/keyward/keyward/pkg/store"
)

// OutboxEntry is an audit entry a change wrote that is not yet published.
type OutboxEntry struct {
	Seq   uint64
	Entry store.AuditEntry
}

// Outbox returns up to limit unpublished entries (WithOutbox), oldest
// first: the order their changes were committed in.
func (s *Store) Outbox(ctx context.Context, limit int) ([]OutboxEntry, error) {
	var out []OutboxEntry
	err := s.view(ctx, func(tx *bolt.Tx) error {
		c := tx.Bucket(bOutbox).Cursor()
		for k, v := c.First(); k != nil && len(out) < limit; k, v = c.Next() {
			var e store.AuditEntry
			if err := s.decode(bOutbox, k, v, &e); err != nil {
				return err
			}
			if len(k) != 8 {
				return s.damagedFile(fmt.Sprintf("outbox key %q", k))
			}
			out = append(out, OutboxEntry{Seq: binary.BigEndian.Uint64(k), Entry: normalAudit(e)})
		}
		return nil
	})
	return out, err
}

// Published removes published entries from the outbox.
func (s *Store) Published(ctx context.Context, seqs []uint64) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		for _, n := range seqs {
			if err := tx.Bucket(bOutbox).Delete(seq(n)); err != nil {
				return err
			}
		}
		return nil
	})
}

// Committed is signalled after commits that add to the outbox; a publisher
// waits on it.
func (s *Store) Committed() <-chan struct{} { return s.committed }

// UsagePlans returns every rate-limit identity's tier.
func (s *Store) UsagePlans(ctx context.Context) (map[string]string, error) {
	plans := map[string]string{}
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bUsagePlans).ForEach(func(k, v []byte) error {
			var tier string
			if err := s.decode(bUsagePlans, k, v, &tier); err != nil {
				return err
			}
			plans[string(k)] = tier
			return nil
		})
	})
	return plans, err
}

// SetUsagePlan puts identity in tier's usage plan.
func (s *Store) SetUsagePlan(ctx context.Context, identity, tier string) error {
	return s.update(ctx, func(tx *bolt.Tx) error { return s.put(tx, bUsagePlans, []byte(identity), tier) })
}

// DeleteUsagePlan takes identity out of its usage plan.
func (s *Store) DeleteUsagePlan(ctx context.Context, identity string) error {
	return s.update(ctx, func(tx *bolt.Tx) error { return tx.Bucket(bUsagePlans).Delete([]byte(identity)) })
}

// expireBatch is how many expired items one transaction deletes, so that
// a large backlog does not hold the writer long.
const expireBatch = 1000

// DropExpired deletes the audit entries and idempotency records whose TTL
// has passed: no read returns them, and the file need not keep them.
// It returns how many it deleted.
func (s *Store) DropExpired(ctx context.Context) (int, error) {
	upper := []byte(store.SortTime(s.now()))
	total := 0
	for {
		n := 0
		err := s.update(ctx, func(tx *bolt.Tx) error {
			c := tx.Bucket(bTTL).Cursor()
			for k, _ := c.First(); k != nil && n < expireBatch; k, _ = c.First() {
				at, rest, ok := bytes.Cut(k, []byte{0})
				if !ok || bytes.Compare(at, upper) > 0 {
					return nil
				}
				bucket, key, ok := bytes.Cut(rest, []byte{0})
				if !ok {
					return s.damagedFile(fmt.Sprintf("TTL index entry %q", k))
				}
				if err := s.drop(tx, bucket, key); err != nil {
					return err
				}
				if err := c.Delete(); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		total += n
		if err != nil || n < expireBatch {
			return total, err
		}
	}
}

// drop deletes one expired item and what indexes it; the item must have
// expired, since the index entry may outlive it.
func (s *Store) drop(tx *bolt.Tx, bucket, key []byte) error {
	now := s.now()
	switch {
	case bytes.Equal(bucket, bAudit):
		var e store.AuditEntry
		ok, err := s.get(tx, bAudit, key, &e)
		if err != nil || !ok || !expired(e.ExpiresAt, now) {
			return err
		}
		if e.KeyID != "" {
			if err := tx.Bucket(bAuditKeys).Delete(join(e.TenantID, e.KeyID, store.AuditOrder(e))); err != nil {
				return err
			}
		}
	case bytes.Equal(bucket, bUsage):
		var h store.UsageHour
		ok, err := s.get(tx, bUsage, key, &h)
		if err != nil || !ok || !expired(store.UsageExpiry(h.Hour), now) {
			return err
		}
	case bytes.Equal(bucket, bIdempotency):
		var r store.Idempotency
		ok, err := s.get(tx, bIdempotency, key, &r)
		if err != nil || !ok || !expired(r.ExpiresAt, now) {
			return err
		}
	default:
		return s.damagedFile(fmt.Sprintf("TTL index names bucket %q", bucket))
	}
	return tx.Bucket(bucket).Delete(key)
}

// ReleaseClaims deletes every Idempotency-Key record no request completed,
// and says how many it deleted. Call it only when no request is running,
// as the local stack does at start (the file lock admits one process): each
// such claim was left by a process that died, and a retry can then run at
// once instead of waiting out the takeover delay. A change that makes keys
// completes its claim in its own transaction (lifecycle.Receipt), so an
// unfinished claim has no such change behind it; other changes are
// idempotent in effect.
func (s *Store) ReleaseClaims(ctx context.Context) (int, error) {
	released := 0
	err := s.update(ctx, func(tx *bolt.Tx) error {
		type claim struct {
			key     []byte
			expires time.Time
		}
		var unfinished []claim
		err := tx.Bucket(bIdempotency).ForEach(func(k, v []byte) error {
			var r store.Idempotency
			if err := s.decode(bIdempotency, k, v, &r); err != nil {
				return err
			}
			if !r.Done {
				unfinished = append(unfinished, claim{bytes.Clone(k), r.ExpiresAt})
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, c := range unfinished {
			if err := s.expireNever(tx, c.expires, bIdempotency, c.key); err != nil {
				return err
			}
			if err := tx.Bucket(bIdempotency).Delete(c.key); err != nil {
				return err
			}
		}
		released = len(unfinished)
		return nil
	})
	return released, err
}
