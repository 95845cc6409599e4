package dynamo

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/keyward/keyward/pkg/store"
)

// updateItem runs a conditional UpdateItem. On a failed condition it
// returns failed=true and the item as it was (nil if missing).
func (s *Store) updateItem(ctx context.Context, key item, u *update, cond string) (failed bool, old item, err error) {
	_, err = s.client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                           s.table,
		Key:                                 key,
		UpdateExpression:                    aws.String(u.String()),
		ConditionExpression:                 aws.String(cond),
		ExpressionAttributeNames:            u.names,
		ExpressionAttributeValues:           u.values,
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	})
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		return true, ccf.Item, nil
	}
	return false, nil, err
}

// putItem runs a conditional PutItem and reports whether the condition
// failed.
func (s *Store) putItem(ctx context.Context, it item, x *expr, cond string) (failed bool, err error) {
	_, err = s.client.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:                 s.table,
		Item:                      it,
		ConditionExpression:       aws.String(cond),
		ExpressionAttributeNames:  x.names,
		ExpressionAttributeValues: x.values,
	})
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		return true, nil
	}
	return false, err
}

// TouchKey records a use of a key unless one was recorded less than
// minInterval before at.
func (s *Store) TouchKey(ctx context.Context, id string, at time.Time, minInterval time.Duration) (bool, error) {
	var u update
	u.setAttr(attrLastUsedAt, str(store.SortTime(at)))
	cond := u.exists(AttrPK) + " AND (" + u.notExists(attrLastUsedAt) + " OR " +
		u.cmp(attrLastUsedAt, "<", str(store.SortTime(at.Add(-minInterval)))) + ")"
	failed, old, err := s.updateItem(ctx, primaryKey(keyPK(id), keySK), &u, cond)
	switch {
	case err != nil:
		return false, fmt.Errorf("dynamo: touch key %s: %w", id, err)
	case failed && len(old) == 0:
		return false, fmt.Errorf("dynamo: touch key %s: %w", id, store.ErrNotFound)
	}
	return !failed, nil
}

// RehashKey moves a key's hash to pepper toVersion, only ever forward.
func (s *Store) RehashKey(ctx context.Context, id string, hash []byte, toVersion int) error {
	var u update
	u.setAttr(attrHash, &types.AttributeValueMemberB{Value: hash})
	u.setAttr(attrPepperVersion, num(int64(toVersion)))
	cond := u.exists(AttrPK) + " AND " + u.cmp(attrPepperVersion, "<", num(int64(toVersion)))
	failed, old, err := s.updateItem(ctx, primaryKey(keyPK(id), keySK), &u, cond)
	switch {
	case err != nil:
		return fmt.Errorf("dynamo: rehash key %s: %w", id, err)
	case failed && len(old) == 0:
		return fmt.Errorf("dynamo: rehash key %s: %w", id, store.ErrNotFound)
	case failed:
		return fmt.Errorf("dynamo: rehash key %s: pepper version is not older than %d: %w", id, toVersion, store.ErrConflict)
	}
	return nil
}

// CreatePepper stores a new pepper version.
func (s *Store) CreatePepper(ctx context.Context, p store.Pepper) error {
	var x expr
	cond := x.notExists(AttrPK)
	failed, err := s.putItem(ctx, pepperItem(p), &x, cond)
	switch {
	case err != nil:
		return fmt.Errorf("dynamo: create pepper %d: %w", p.Version, err)
	case failed:
		return fmt.Errorf("dynamo: create pepper %d: %w", p.Version, store.ErrAlreadyExists)
	}
	return nil
}

// RetirePepper marks a pepper version retired, once.
func (s *Store) RetirePepper(ctx context.Context, version int, at time.Time) error {
	var u update
	u.setAttr(attrRetiredAt, str(store.SortTime(at)))
	cond := u.exists(AttrPK) + " AND " + u.notExists(attrRetiredAt)
	failed, old, err := s.updateItem(ctx, primaryKey(pepperPK, pepperSK(version)), &u, cond)
	switch {
	case err != nil:
		return fmt.Errorf("dynamo: retire pepper %d: %w", version, err)
	case failed && len(old) == 0:
		return fmt.Errorf("dynamo: retire pepper %d: %w", version, store.ErrNotFound)
	case failed:
		return fmt.Errorf("dynamo: retire pepper %d: retired already: %w", version, store.ErrConflict)
	}
	return nil
}

// PutCheckpoint records where a job stopped; "" deletes the checkpoint.
func (s *Store) PutCheckpoint(ctx context.Context, job, cursor string) error {
	key := primaryKey(jobPK(job), checkpointSK)
	var err error
	if cursor == "" {
		_, err = s.client.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: s.table, Key: key})
	} else {
		it := encoder(key)
		it.str(attrCursor, cursor)
		_, err = s.client.PutItem(ctx, &dynamodb.PutItemInput{TableName: s.table, Item: item(it)})
	}
	if err != nil {
		return fmt.Errorf("dynamo: put checkpoint of %s: %w", job, err)
	}
	return nil
}

// PutIdempotency creates a record, replacing an expired one.
func (s *Store) PutIdempotency(ctx context.Context, r store.Idempotency) error {
	var x expr
	// expires_at, not the TTL's whole seconds, decides expiry exactly as
	// GetIdempotency does; a record without it never expires.
	cond := x.notExists(AttrPK) + " OR " + x.cmp(attrExpiresAt, "<=", str(store.SortTime(s.now())))
	failed, err := s.putItem(ctx, idemItem(r), &x, cond)
	switch {
	case err != nil:
		return fmt.Errorf("dynamo: put idempotency record: %w", err)
	case failed:
		return fmt.Errorf("dynamo: put idempotency record: %w", store.ErrAlreadyExists)
	}
	return nil
}

// GetIdempotency reads an unexpired record.
func (s *Store) GetIdempotency(ctx context.Context, tenantID, key string) (store.Idempotency, error) {
	it, err := s.get(ctx, primaryKey(idemPK(tenantID, key), idemSK))
	if err != nil {
		return store.Idempotency{}, fmt.Errorf("dynamo: get idempotency record: %w", err)
	}
	if it == nil {
		return store.Idempotency{}, fmt.Errorf("dynamo: get idempotency record: %w", store.ErrNotFound)
	}
	r, err := decodeIdem(it)
	if err != nil {
		return store.Idempotency{}, fmt.Errorf("dynamo: get idempotency record: %w", err)
	}
	if !r.ExpiresAt.IsZero() && !r.ExpiresAt.After(s.now()) {
		return store.Idempotency{}, fmt.Errorf("dynamo: get idempotency record: expired: %w", store.ErrNotFound)
	}
	return r, nil
}

// CompleteIdempotency stores the response of the unfinished record r
// claims.
func (s *Store) CompleteIdempotency(ctx context.Context, r store.Idempotency) error {
	now := s.now()
	u, cond := s.completion(r)
	failed, old, err := s.updateItem(ctx, primaryKey(idemPK(r.TenantID, r.Key), idemSK), u, cond)
	if err != nil {
		return fmt.Errorf("dynamo: complete idempotency record: %w", err)
	}
	if !failed {
		return nil
	}
	if len(old) == 0 {
		return fmt.Errorf("dynamo: complete idempotency record: %w", store.ErrNotFound)
	}
	stored, err := decodeIdem(old)
	if err != nil {
		return fmt.Errorf("dynamo: complete idempotency record: %w", err)
	}
	if !stored.ExpiresAt.IsZero() && !stored.ExpiresAt.After(now) {
		return fmt.Errorf("dynamo: complete idempotency record: expired: %w", store.ErrNotFound)
	}
	return fmt.Errorf("dynamo: complete idempotency record: done already or another request: %w", store.ErrConflict)
}

// DeleteIdempotency removes the record r describes, if it is still that
// one and in progress.
func (s *Store) DeleteIdempotency(ctx context.Context, r store.Idempotency) error {
	var x expr
	cond := x.notExists(AttrPK) + " OR (" + x.cmp(attrCreatedAt, "=", str(store.SortTime(r.CreatedAt))) +
		" AND " + x.cmp(attrRequestHash, "=", str(r.RequestHash)) + " AND " + x.cmp(attrDone, "=", &types.AttributeValueMemberBOOL{Value: false}) + ")"
	_, err := s.client.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName:                 s.table,
		Key:                       primaryKey(idemPK(r.TenantID, r.Key), idemSK),
		ConditionExpression:       aws.String(cond),
		ExpressionAttributeNames:  x.names,
		ExpressionAttributeValues: x.values,
	})
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		return fmt.Errorf("dynamo: delete idempotency record: another request holds the key, or the request is done: %w", store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("dynamo: delete idempotency record: %w", err)
	}
	return nil
}
