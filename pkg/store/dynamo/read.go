package dynamo

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/keyward/keyward/pkg/store"
)

// get reads one item with a strongly consistent read; nil if missing.
func (s *Store) get(ctx context.Context, key item) (item, error) {
	out, err := s.client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      s.table,
		Key:            key,
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return nil, err
	}
	if len(out.Item) == 0 {
		return nil, nil
	}
	return out.Item, nil
}

// GetKey reads a key by id.
func (s *Store) GetKey(ctx context.Context, id string) (store.Key, error) {
	it, err := s.get(ctx, primaryKey(keyPK(id), keySK))
	if err != nil {
		return store.Key{}, fmt.Errorf("dynamo: get key %s: %w", id, err)
	}
	if it == nil {
		return store.Key{}, fmt.Errorf("dynamo: get key %s: %w", id, store.ErrNotFound)
	}
	k, err := decodeKey(it)
	if err != nil {
		return store.Key{}, fmt.Errorf("dynamo: get key %s: %w", id, err)
	}
	return k, nil
}

// GetTenant reads a tenant by id, strongly consistent.
func (s *Store) GetTenant(ctx context.Context, id string) (store.Tenant, error) {
	it, err := s.get(ctx, primaryKey(tenantPK(id), tenantSK))
	if err != nil {
		return store.Tenant{}, fmt.Errorf("dynamo: get tenant %s: %w", id, err)
	}
	if it == nil {
		return store.Tenant{}, fmt.Errorf("dynamo: get tenant %s: %w", id, store.ErrNotFound)
	}
	t, err := decodeTenant(it)
	if err != nil {
		return store.Tenant{}, fmt.Errorf("dynamo: get tenant %s: %w", id, err)
	}
	return t, nil
}

// ListKeys pages through a tenant's keys, newest first: the shards of the
// tenant's gsi1 partition, or of the member's gsi3 partition when the
// query names who created them.
func (s *Store) ListKeys(ctx context.Context, tenantID string, q store.KeyQuery) (store.KeyPage, error) {
	l := listing{index: IndexGSI1, partitions: shards(PartitionShards, func(n int) string { return tenantKeysPK(tenantID, n) })}
	if q.CreatedBy != "" {
		l = listing{index: IndexGSI3, partitions: shards(PartitionShards, func(n int) string { return memberKeysPK(tenantID, q.CreatedBy, n) })}
	}
	keep := func(entry string, k store.Key) bool {
		return k.TenantID == tenantID && store.KeyOrder(k) == entry &&
			(q.Environment == "" || k.Environment == q.Environment) && (q.Status == "" || k.Status == q.Status) &&
			(q.CreatedBy == "" || k.CreatedBy == q.CreatedBy)
	}
	keys, next, skipped, err := list(ctx, s, l, q.Limit, q.Cursor, decodeKey, keep)
	if err != nil {
		return store.KeyPage{}, fmt.Errorf("dynamo: list keys of tenant %s: %w", tenantID, err)
	}
	return store.KeyPage{Keys: keys, NextCursor: next, Skipped: skipped}, nil
}

// ListAudit pages through a tenant's unexpired audit entries, newest first:
// the shards of its partition of the table, or one key's gsi1 partition.
func (s *Store) ListAudit(ctx context.Context, tenantID string, q store.AuditQuery) (store.AuditPage, error) {
	now := store.SortTime(s.now())
	keep := func(entry string, a store.AuditEntry) bool {
		return a.TenantID == tenantID && (a.ExpiresAt.IsZero() || store.SortTime(a.ExpiresAt) > now) &&
			(q.Environment == "" || store.InEnvironment(a, q.Environment))
	}
	l := listing{partitions: shards(PartitionShards, func(n int) string { return auditPK(tenantID, n) })}
	if q.KeyID != "" {
		l = listing{index: IndexGSI1, partitions: []string{auditKeyPK(tenantID, q.KeyID)}}
	} else {
		// The same test as keep, in the query: expired entries and other
		// environments' cost no transfer.
		l.filter = "(" + l.notExists(attrExpiresAt) + " OR " + l.cmp(attrExpiresAt, ">", str(now)) + ")"
		if env := q.Environment; env != "" {
			// store.InEnvironment, including its fallback for entries written
			// before they carried their environment.
			l.filter += " AND (" + l.notExists(attrKeyID) + " OR " + l.cmp(attrEnvironment, "=", str(env)) +
				" OR (" + l.notExists(attrEnvironment) + " AND contains(" + l.name(attrKeyDisplay) + ", " + l.value(str("_"+env+"_")) + ")))"
		}
	}
	entries, next, skipped, err := list(ctx, s, l, q.Limit, q.Cursor, decodeAudit, keep)
	if err == nil && len(skipped) > 0 {
		err = fmt.Errorf("%w: audit entries %v", store.ErrCorrupt, skipped)
	}
	if err != nil {
		return store.AuditPage{}, fmt.Errorf("dynamo: list audit of tenant %s: %w", tenantID, err)
	}
	return store.AuditPage{Entries: entries, NextCursor: next}, nil
}

// ListExpiring pages through the keys of every tenant that are due to
// expire by q.Before, on the shards of the sparse gsi2, soonest first.
func (s *Store) ListExpiring(ctx context.Context, q store.ExpiryQuery) (store.KeyPage, error) {
	before := store.SortTime(q.Before)
	l := listing{
		index: IndexGSI2, partitions: shards(PartitionShards, expiryPK), ascending: true,
		// Every position at Before sorts below it: '$' follows '#'.
		upper: before + "$",
	}
	// The index lags the table: the key as read now must still be due, at
	// the position the index lists it.
	keep := func(entry string, k store.Key) bool {
		return expiryDue(k) && store.SortTime(k.ExpiresAt) <= before && store.ExpiryOrder(k) == entry
	}
	keys, next, skipped, err := list(ctx, s, l, q.Limit, q.Cursor, decodeKey, keep)
	if err != nil {
		return store.KeyPage{}, fmt.Errorf("dynamo: list expiring keys: %w", err)
	}
	return store.KeyPage{Keys: keys, NextCursor: next, Skipped: skipped}, nil
}

// ListPeppers reads every pepper version, oldest first.
func (s *Store) ListPeppers(ctx context.Context) ([]store.Pepper, error) {
	var x expr
	cond := x.cmp(AttrPK, "=", str(pepperPK))
	pages := dynamodb.NewQueryPaginator(s.client, &dynamodb.QueryInput{
		TableName:                 s.table,
		KeyConditionExpression:    aws.String(cond),
		ExpressionAttributeNames:  x.names,
		ExpressionAttributeValues: x.values,
		ConsistentRead:            aws.Bool(true),
	})
	var peppers []store.Pepper
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("dynamo: list peppers: %w", err)
		}
		for _, it := range page.Items {
			p, err := decodePepper(it)
			if err != nil {
				return nil, fmt.Errorf("dynamo: list peppers: %w", err)
			}
			peppers = append(peppers, p)
		}
	}
	return peppers, nil
}

// scanRequests bounds the Scan requests of one ScanKeys call, so that a
// stretch of the table without keys (a large audit log) ends a call with
// a short page rather than running it into its caller's deadline.
const scanRequests = 8

// ScanKeys pages through the keys of every tenant in the table's scan
// order. Its cursor is the primary key the next Scan starts after.
func (s *Store) ScanKeys(ctx context.Context, cursor string, limit int) (store.KeyPage, error) {
	if err := store.CheckLimit(limit); err != nil {
		return store.KeyPage{}, fmt.Errorf("dynamo: scan keys: %w", err)
	}
	var start item
	if cursor != "" {
		var err error
		if start, err = decodeScanCursor(cursor); err != nil {
			return store.KeyPage{}, fmt.Errorf("dynamo: scan keys: %w", err)
		}
	}
	var x expr
	filter := x.cmp(AttrSK, "=", str(keySK))
	var keys []store.Key
	var skipped []string
	for range scanRequests {
		out, err := s.client.Scan(ctx, &dynamodb.ScanInput{
			TableName: s.table,
			// The jobs decide on what a scan shows (which pepper versions
			// keys still use): never on a stale copy.
			ConsistentRead:            aws.Bool(true),
			ExclusiveStartKey:         start,
			FilterExpression:          aws.String(filter),
			ExpressionAttributeNames:  x.names,
			ExpressionAttributeValues: x.values,
		})
		if err != nil {
			return store.KeyPage{}, fmt.Errorf("dynamo: scan keys: %w", err)
		}
		for i, it := range out.Items {
			k, err := decodeKey(it)
			if errors.Is(err, store.ErrCorrupt) {
				skipped = append(skipped, (&decoder{it: it}).str("id"))
				continue
			}
			if err != nil {
				return store.KeyPage{}, fmt.Errorf("dynamo: scan keys: %w", err)
			}
			keys = append(keys, k)
			if len(keys) < limit {
				continue
			}
			if i == len(out.Items)-1 && len(out.LastEvaluatedKey) == 0 {
				return store.KeyPage{Keys: keys, Skipped: skipped}, nil
			}
			// The next page starts after this key, not after the end of
			// this Scan page, whose other keys it has yet to return.
			next, err := encodeScanCursor(it)
			if err != nil {
				return store.KeyPage{}, fmt.Errorf("dynamo: scan keys: %w", err)
			}
			return store.KeyPage{Keys: keys, NextCursor: next, Skipped: skipped}, nil
		}
		if len(out.LastEvaluatedKey) == 0 {
			return store.KeyPage{Keys: keys, Skipped: skipped}, nil
		}
		start = out.LastEvaluatedKey
	}
	next, err := encodeScanCursor(start)
	if err != nil {
		return store.KeyPage{}, fmt.Errorf("dynamo: scan keys: %w", err)
	}
	return store.KeyPage{Keys: keys, NextCursor: next, Skipped: skipped}, nil
}

// scanPosition is a ScanKeys cursor: the table's primary key of the item
// the next Scan starts after.
type scanPosition struct {
	PK string `json:"pk"`
	SK string `json:"sk"`
}

// maxScanCursor bounds a cursor's length: DynamoDB's key attributes hold
// at most 2048 (pk) and 1024 (sk) bytes.
const maxScanCursor = 8192

func encodeScanCursor(it item) (string, error) {
	d := decoder{it: it}
	p := scanPosition{PK: d.str(AttrPK), SK: d.str(AttrSK)}
	if d.err != nil || p.PK == "" || p.SK == "" {
		return "", fmt.Errorf("scan position without pk and sk: %v", d.err)
	}
	raw, err := json.Marshal(p)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(raw), nil
}

// decodeScanCursor accepts only what encodeScanCursor writes: the
// cursor must decode to a position that encodes back to it exactly.
func decodeScanCursor(cursor string) (item, error) {
	if len(cursor) > maxScanCursor {
		return nil, store.ErrInvalidCursor
	}
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return nil, store.ErrInvalidCursor
	}
	var p scanPosition
	if err := json.Unmarshal(raw, &p); err != nil || p.PK == "" || p.SK == "" {
		return nil, store.ErrInvalidCursor
	}
	start := primaryKey(p.PK, p.SK)
	if again, err := encodeScanCursor(start); err != nil || again != cursor {
		return nil, store.ErrInvalidCursor
	}
	return start, nil
}

// GetCheckpoint reads where a job stopped; "" if it has no checkpoint.
func (s *Store) GetCheckpoint(ctx context.Context, job string) (string, error) {
	it, err := s.get(ctx, primaryKey(jobPK(job), checkpointSK))
	if err != nil {
		return "", fmt.Errorf("dynamo: get checkpoint of %s: %w", job, err)
	}
	d := decoder{it: it}
	cursor := d.str(attrCursor)
	if d.err != nil {
		return "", fmt.Errorf("dynamo: get checkpoint of %s: %w", job, d.err)
	}
	return cursor, nil
}
