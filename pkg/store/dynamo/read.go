package dynamo

import (
	"context"
	"fmt"
	"strings"

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

// GetTenant reads a tenant by id.
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

// ListKeys pages through a tenant's keys on gsi1, newest first.
func (s *Store) ListKeys(ctx context.Context, tenantID string, q store.KeyQuery) (store.KeyPage, error) {
	l := listing{index: IndexGSI1, partition: tenantKeysPK(tenantID)}
	var filters []string
	for _, f := range []struct{ attr, value string }{
		{"environment", q.Environment},
		{attrStatus, string(q.Status)},
		{"created_by", q.CreatedBy},
	} {
		if f.value != "" {
			filters = append(filters, l.cmp(f.attr, "=", str(f.value)))
		}
	}
	l.filter = strings.Join(filters, " AND ")
	keys, next, err := list(ctx, s, l, q.Limit, q.Cursor, decodeKey, store.KeyOrder)
	if err != nil {
		return store.KeyPage{}, fmt.Errorf("dynamo: list keys of tenant %s: %w", tenantID, err)
	}
	return store.KeyPage{Keys: keys, NextCursor: next}, nil
}

// ListAudit pages through a tenant's unexpired audit entries, newest first:
// its partition of the table, or of gsi1 for one key's entries.
func (s *Store) ListAudit(ctx context.Context, tenantID string, q store.AuditQuery) (store.AuditPage, error) {
	l := listing{partition: auditPK(tenantID)}
	if q.KeyID != "" {
		l.index, l.partition = IndexGSI1, auditKeyPK(tenantID, q.KeyID)
	}
	l.filter = l.notExists(attrExpiresAt) + " OR " + l.cmp(attrExpiresAt, ">", str(store.SortTime(s.now())))
	entries, next, err := list(ctx, s, l, q.Limit, q.Cursor, decodeAudit, store.AuditOrder)
	if err != nil {
		return store.AuditPage{}, fmt.Errorf("dynamo: list audit of tenant %s: %w", tenantID, err)
	}
	return store.AuditPage{Entries: entries, NextCursor: next}, nil
}

// listing is a newest-first query of one partition of the table or of
// gsi1, whose sort key is the items' order (KeyOrder or AuditOrder).
type listing struct {
	expr
	index     string // empty for the table itself
	partition string
	filter    string // optional filter expression, with placeholders in expr
}

// list returns up to limit items of l strictly before cursor's position,
// and a cursor for the rest if any remain.
func list[T any](ctx context.Context, s *Store, l listing, limit int, cursor string, decode func(item) (T, error), order func(T) string) ([]T, string, error) {
	if err := store.CheckLimit(limit); err != nil {
		return nil, "", err
	}
	in := &dynamodb.QueryInput{
		TableName:        s.table,
		ScanIndexForward: aws.Bool(false),
		// One item past the page tells whether another page exists.
		Limit: aws.Int32(int32(limit + 1)),
	}
	pk, sk := AttrPK, AttrSK
	if l.index != "" {
		in.IndexName = aws.String(l.index)
		pk, sk = AttrGSI1PK, AttrGSI1SK
	} else {
		in.ConsistentRead = aws.Bool(true)
	}
	cond := l.cmp(pk, "=", str(l.partition))
	if cursor != "" {
		position, err := store.DecodeCursor(cursor)
		if err != nil {
			return nil, "", err
		}
		cond += " AND " + l.cmp(sk, "<", str(position))
	}
	in.KeyConditionExpression = aws.String(cond)
	if l.filter != "" {
		in.FilterExpression = aws.String(l.filter)
		// Limit counts items before the filter drops any: read full pages
		// rather than many small ones.
		in.Limit = aws.Int32(store.MaxPageSize + 1)
	}
	in.ExpressionAttributeNames, in.ExpressionAttributeValues = l.names, l.values

	var out []T
	pages := dynamodb.NewQueryPaginator(s.client, in)
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, "", err
		}
		for _, it := range page.Items {
			if len(out) == limit {
				return out, store.EncodeCursor(order(out[limit-1])), nil
			}
			v, err := decode(it)
			if err != nil {
				return nil, "", err
			}
			out = append(out, v)
		}
	}
	return out, "", nil
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
