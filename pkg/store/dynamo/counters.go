package dynamo

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/keyward/keyward/pkg/clock"
	"github.com/keyward/keyward/pkg/store"
)

// Key counters. A tenant's key count is the sum of CounterShards items
// beside the tenant item, each also holding the tenant's status: a
// transaction that creates keys adds to one of them, on the condition that
// it says active, so that creations spread over many items instead of
// contending on one, and a tenant write (offboarding) sets the status of
// all of them in its own transaction. A member's count is spread the same
// way, in items made by the first key that counts in them.

// CounterShards is how many items hold one tenant's key count, as many
// as onboarding's transaction has room for beside the tenant and its
// first keys. Two transactions that write one item at the same time
// conflict (TransactionConflict) and one is tried again, on another item:
// spread over 64, a bulk import of 1,000 keys a second into one tenant
// puts about 16 a second on each (docs/scale.md).
// https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html#transaction-conflict-handling
const CounterShards = store.KeyCounterShards

// MemberCounterShards is how many items hold one member's key count.
// They carry no status, so a member's counters are made by the first key
// that counts in each, beside its transaction's other items, and can be
// more: a bulk import by one member meets on them less.
const MemberCounterShards = 256

// counterShard is the counter item a change's creations in one tenant (or
// by one member) add to on its attempt-th try: chosen by the first key
// created and the attempt, so an attempt retried under its
// ClientRequestToken adds to the same one, a new attempt after a conflict
// to another, and different changes spread evenly.
func counterShard(c store.Change, tenant, member string, attempt int) int {
	n := CounterShards
	if member != "" {
		n = MemberCounterShards
	}
	for _, w := range c.Keys {
		if w.ExpectedRevision == 0 && w.Key.TenantID == tenant && (member == "" || w.Key.CreatedBy == member) {
			return shardOf(w.Key.ID+"#"+strconv.Itoa(attempt), n)
		}
	}
	return 0
}

func counterItem(pk string, status store.TenantStatus, n int64) item {
	e := encoder(primaryKey(pk, counterSK))
	e.str(attrStatus, string(status))
	e.int(attrKeyCount, n)
	return item(e)
}

// tenantCounters puts a new tenant's counter items, created counting n
// keys in shard.
func (s *Store) tenantCounters(t store.Tenant, shard int, n int64) []op {
	ops := make([]op, CounterShards)
	for i := range ops {
		count := int64(0)
		if i == shard {
			count = n
		}
		var x expr
		ops[i] = op{
			write: types.TransactWriteItem{Put: s.put(counterItem(tenantCounterPK(t.ID, i), t.Status, count), &x, x.notExists(AttrPK))},
			failed: func(item) error {
				return fmt.Errorf("dynamo: create tenant %s: its counters exist: %w", t.ID, store.ErrAlreadyExists)
			},
		}
	}
	return ops
}

// StatusAttempts bounds the tries of setting one counter's status while
// creations hold it (TransactionConflictException).
const StatusAttempts = 20

// setCounterStatus gives every counter of a tenant the status, one item
// at a time: a creation that holds a counter blocks only that item's
// write, briefly, where one transaction over all of them would meet some
// creation on every try during a bulk import. Each creation checks only
// its own counter, so from the moment a counter says offboarded no
// creation counts there, and once all say so none can.
func (s *Store) setCounterStatus(ctx context.Context, tenant string, status store.TenantStatus) error {
	for i := range CounterShards {
		var u update
		u.setAttr(attrStatus, str(string(status)))
		for attempt := 1; ; attempt++ {
			failed, _, err := s.updateItem(ctx, primaryKey(tenantCounterPK(tenant, i), counterSK), &u, u.exists(AttrPK))
			var busy *types.TransactionConflictException
			switch {
			case failed:
				// Counters are written with the tenant: none means no tenant.
				if _, err := s.GetTenant(ctx, tenant); err != nil {
					return err
				}
				return fmt.Errorf("dynamo: tenant %s: counter %d missing: %w", tenant, i, store.ErrCorrupt)
			case errors.As(err, &busy) && attempt == StatusAttempts:
				return fmt.Errorf("dynamo: tenant %s: counter %d held by creations: %w", tenant, i, store.ErrConflict)
			case errors.As(err, &busy):
				if err := clock.Sleep(ctx, time.Duration(attempt)*10*time.Millisecond); err != nil {
					return fmt.Errorf("dynamo: tenant %s: %w", tenant, err)
				}
				continue
			case err != nil:
				return fmt.Errorf("dynamo: tenant %s: counter %d: %w", tenant, i, err)
			}
			break
		}
	}
	return nil
}

// tenantCount counts n keys created in a tenant that the change does not
// write, which must exist and be active.
func (s *Store) tenantCount(tenant string, shard int, n int64) op {
	var u update
	u.addAttr(attrKeyCount, num(n))
	cond := u.exists(AttrPK) + " AND " + u.cmp(attrStatus, "=", str(string(store.TenantActive)))
	return op{
		write: types.TransactWriteItem{Update: s.update(primaryKey(tenantCounterPK(tenant, shard), counterSK), &u, cond)},
		failed: func(item) error {
			return fmt.Errorf("dynamo: create keys in tenant %s: missing or not active: %w", tenant, store.ErrConflict)
		},
	}
}

// memberCount counts n keys a member created.
func (s *Store) memberCount(m store.Member, shard int, n int64) op {
	var u update
	u.addAttr(attrKeyCount, num(n))
	return op{
		write:  types.TransactWriteItem{Update: s.update(primaryKey(memberCounterPK(m.TenantID, m.ID, shard), counterSK), &u, "")},
		failed: func(item) error { return fmt.Errorf("dynamo: count keys of member %s: %w", m.ID, store.ErrConflict) },
	}
}

// counterKeys are the primary keys of the n counter items of one tenant or
// member.
func counterKeys(n int, pk func(shard int) string) []item {
	pks := shards(n, pk)
	out := make([]item, len(pks))
	for i, p := range pks {
		out[i] = primaryKey(p, counterSK)
	}
	return out
}

// sumCounters adds up counter items read together; a missing one counts
// nothing.
func sumCounters(items []item) (int64, error) {
	var sum int64
	for _, it := range items {
		if it == nil {
			continue
		}
		d := decoder{it: it}
		sum += d.int(attrKeyCount)
		if d.err != nil {
			return 0, fmt.Errorf("%w: counter %s: %v", store.ErrCorrupt, d.str(AttrPK), d.err)
		}
	}
	return sum, nil
}

// KeyCount sums the tenant's counter items, strongly consistent.
func (s *Store) KeyCount(ctx context.Context, tenantID string) (int64, error) {
	items, err := s.batchGet(ctx, counterKeys(CounterShards, func(i int) string { return tenantCounterPK(tenantID, i) }))
	if err == nil {
		var n int64
		if n, err = sumCounters(items); err == nil {
			return n, nil
		}
	}
	return 0, fmt.Errorf("dynamo: key count of %s: %w", tenantID, err)
}

// MemberKeyCount sums the member's counter items, strongly consistent.
func (s *Store) MemberKeyCount(ctx context.Context, tenantID, member string) (int64, error) {
	items, err := s.batchGet(ctx, counterKeys(MemberCounterShards, func(i int) string { return memberCounterPK(tenantID, member, i) }))
	if err == nil {
		var n int64
		if n, err = sumCounters(items); err == nil {
			return n, nil
		}
	}
	return 0, fmt.Errorf("dynamo: member key count of %s in %s: %w", member, tenantID, err)
}
