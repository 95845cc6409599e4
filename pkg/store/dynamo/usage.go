package dynamo

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/keyward/keyward/pkg/clock"
	"github.com/keyward/keyward/pkg/store"
)

// A key's usage is one item per hour in the key's own usage partition,
// apart from the key item so that the usage writes never contend with the
// key's, and outside the stream filter's audit prefix.
func usagePK(keyID string) string   { return "USAGE#" + keyID }
func usageSK(hour time.Time) string { return "H#" + store.SortTime(hour) }

// attrUsage holds the hour as JSON: read, added to and written whole
// (store.AddToHour), which keeps both backends' arithmetic one.
const attrUsage = "usage"

// usageAttempts bounds AddUsage's optimistic retries: processes adding
// the same key's minute at once. The waits between them grow to
// maxUsageBackoff, each drawn at random from half to one and a half of
// its step, so that writers who collided spread out: some 4 s in all at
// most.
const (
	usageAttempts   = 14
	maxUsageBackoff = 400 * time.Millisecond
)

// AddUsage implements store.UsageStore: a strongly consistent read, the
// minute added, and a write conditional on the revision read. One write
// per key and minute per process (package usage), whose size is the
// hour's: a few KB at most (store.MaxRecent, store.MaxHourNetworks).
func (s *Store) AddUsage(ctx context.Context, m store.UsageMinute) (store.UsageHour, error) {
	if err := store.CheckUsageMinute(m); err != nil {
		return store.UsageHour{}, err
	}
	hour := m.Minute.UTC().Truncate(time.Hour)
	key := primaryKey(usagePK(m.KeyID), usageSK(hour))
	for attempt := range usageAttempts {
		if attempt > 0 {
			step := min(5*time.Millisecond<<attempt, maxUsageBackoff)
			if err := clock.Sleep(ctx, step/2+rand.N(step)); err != nil {
				return store.UsageHour{}, fmt.Errorf("dynamo: add usage of key %s: %w", m.KeyID, err)
			}
		}
		it, err := s.get(ctx, key)
		if err != nil {
			return store.UsageHour{}, fmt.Errorf("dynamo: add usage of key %s: %w", m.KeyID, err)
		}
		var h store.UsageHour
		var rev int64
		var x expr
		var cond string
		if it == nil {
			cond = x.notExists(AttrPK)
		} else {
			if h, rev, err = decodeUsage(it); err != nil {
				return store.UsageHour{}, fmt.Errorf("dynamo: add usage of key %s: %w", m.KeyID, err)
			}
			if h.TenantID != m.TenantID {
				return store.UsageHour{}, fmt.Errorf("dynamo: usage of key %s is tenant %s's, not %s: %w", m.KeyID, h.TenantID, m.TenantID, store.ErrConflict)
			}
			cond = x.cmp(attrRevision, "=", num(rev))
		}
		written := store.AddToHour(h, m)
		raw, err := json.Marshal(written)
		if err != nil {
			return store.UsageHour{}, fmt.Errorf("dynamo: add usage of key %s: %w", m.KeyID, err)
		}
		e := encoder(primaryKey(usagePK(m.KeyID), usageSK(hour))) // not key, which GetItem reads again
		e.str(attrTenantID, m.TenantID)
		e.str(attrUsage, string(raw))
		e.int(attrRevision, rev+1)
		e[AttrTTL] = ttl(store.UsageExpiry(hour))
		failed, err := s.putItem(ctx, item(e), &x, cond)
		if err != nil {
			return store.UsageHour{}, fmt.Errorf("dynamo: add usage of key %s: %w", m.KeyID, err)
		}
		if !failed {
			return written, nil
		}
	}
	return store.UsageHour{}, fmt.Errorf("dynamo: add usage of key %s: %d attempts lost to concurrent writers: %w", m.KeyID, usageAttempts, store.ErrConflict)
}

func decodeUsage(it item) (store.UsageHour, int64, error) {
	var h store.UsageHour
	rev, err := decodeJSONItem(it, &h)
	return h, rev, err
}

// decodeJSONItem reads an item holding a value as JSON (attrUsage) and
// its revision: a usage hour or a key's watch.
func decodeJSONItem(it item, v any) (int64, error) {
	d := decoder{it: it}
	raw, rev := d.str(attrUsage), d.int(attrRevision)
	if d.err == nil {
		d.err = json.Unmarshal([]byte(raw), v)
	}
	if d.err != nil {
		return 0, fmt.Errorf("%w: %s item: %v", store.ErrCorrupt, d.str(AttrSK), d.err)
	}
	return rev, nil
}

// ListUsage implements store.UsageStore with one query of the key's usage
// partition. DynamoDB deletes expired items only eventually (TTL), so
// expired hours are left out here.
func (s *Store) ListUsage(ctx context.Context, keyID string, from, to time.Time) ([]store.UsageHour, error) {
	var x expr
	cond := x.cmp(AttrPK, "=", str(usagePK(keyID))) + " AND " + x.name(AttrSK) + " BETWEEN " +
		x.value(str(usageSK(from.UTC().Truncate(time.Hour)))) + " AND " + x.value(str(usageSK(to.UTC())))
	pages := dynamodb.NewQueryPaginator(s.client, &dynamodb.QueryInput{
		TableName:                 s.table,
		KeyConditionExpression:    aws.String(cond),
		ExpressionAttributeNames:  x.names,
		ExpressionAttributeValues: x.values,
		ConsistentRead:            aws.Bool(true),
	})
	now := s.now()
	var out []store.UsageHour
	for pages.HasMorePages() && len(out) < store.MaxUsageHours {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("dynamo: list usage of key %s: %w", keyID, err)
		}
		for _, it := range page.Items {
			h, _, err := decodeUsage(it)
			if err != nil {
				return nil, fmt.Errorf("dynamo: list usage of key %s: %w", keyID, err)
			}
			if !h.Hour.Before(to) || !store.UsageExpiry(h.Hour).After(now) || len(out) == store.MaxUsageHours {
				continue
			}
			out = append(out, h)
		}
	}
	return out, nil
}

// A key's watch is one item beside its usage hours.
const watchSK = "WATCH"

// watchRetention is how long DynamoDB keeps the watch of a key no process
// has written since: past the rules' memory (30 days of networks).
const watchRetention = 90 * 24 * time.Hour

// GetKeyWatch implements store.KeyWatches.
func (s *Store) GetKeyWatch(ctx context.Context, keyID string) (store.KeyWatch, error) {
	it, err := s.get(ctx, primaryKey(usagePK(keyID), watchSK))
	if err != nil {
		return store.KeyWatch{}, fmt.Errorf("dynamo: watch of key %s: %w", keyID, err)
	}
	if it == nil {
		return store.KeyWatch{}, fmt.Errorf("dynamo: watch of key %s: %w", keyID, store.ErrNotFound)
	}
	var w store.KeyWatch
	rev, err := decodeJSONItem(it, &w)
	if err != nil {
		return store.KeyWatch{}, fmt.Errorf("dynamo: watch of key %s: %w", keyID, err)
	}
	w.Revision = rev
	return w, nil
}

// PutKeyWatch implements store.KeyWatches.
func (s *Store) PutKeyWatch(ctx context.Context, w store.KeyWatch) error {
	if err := store.CheckKeyWatch(w); err != nil {
		return err
	}
	var x expr
	var cond string
	if w.Revision == 0 {
		cond = x.notExists(AttrPK)
	} else {
		cond = x.cmp(attrRevision, "=", num(w.Revision)) + " AND " + x.cmp(attrTenantID, "=", str(w.TenantID))
	}
	raw, err := json.Marshal(w)
	if err != nil {
		return fmt.Errorf("dynamo: watch of key %s: %w", w.KeyID, err)
	}
	e := encoder(primaryKey(usagePK(w.KeyID), watchSK))
	e.str(attrTenantID, w.TenantID)
	e.str(attrUsage, string(raw))
	e.int(attrRevision, w.Revision+1)
	e[AttrTTL] = ttl(s.now().Add(watchRetention))
	failed, err := s.putItem(ctx, item(e), &x, cond)
	switch {
	case err != nil:
		return fmt.Errorf("dynamo: watch of key %s: %w", w.KeyID, err)
	case failed:
		return fmt.Errorf("dynamo: watch of key %s is not at revision %d: %w", w.KeyID, w.Revision, store.ErrConflict)
	}
	return nil
}
