package dynamo

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/keyward/keyward/pkg/store"
)

// ApplyAttempts bounds the tries of a transaction cancelled only because
// another transaction held one of its items, or its partition was
// throttled: enough that a bulk import into one tenant, whose creations
// meet on its counter items, almost never fails (docs/scale.md). The
// backoff between tries adds up to under a second.
const ApplyAttempts = 10

// op is one item of a transaction, with the error its failed condition
// means given the item as it was (nil if missing).
type op struct {
	write  types.TransactWriteItem
	failed func(old item) error
}

// Apply writes c in one TransactWriteItems call. A tenant update first
// gives the tenant's counters its status, one at a time (setCounterStatus);
// if the transaction then definitely fails, they get the stored tenant's
// status back.
func (s *Store) Apply(ctx context.Context, c store.Change) error {
	if err := c.Validate(); err != nil {
		return fmt.Errorf("dynamo: apply: %w", err)
	}
	w := c.Tenant
	if w == nil || w.ExpectedRevision == 0 {
		return s.transact(ctx, c)
	}
	if err := s.setCounterStatus(ctx, w.Tenant.ID, w.Tenant.Status); err != nil {
		return s.restoreCounterStatus(ctx, w.Tenant.ID, err)
	}
	err := s.transact(ctx, c)
	if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
		err = s.restoreCounterStatus(ctx, w.Tenant.ID, err)
	}
	return err
}

// restoreCounterStatus gives a tenant's counters the stored tenant's
// status again after a tenant update failed with err.
func (s *Store) restoreCounterStatus(ctx context.Context, tenant string, err error) error {
	if stored, getErr := s.GetTenant(ctx, tenant); getErr == nil {
		err = errors.Join(err, s.setCounterStatus(ctx, tenant, stored.Status))
	}
	return err
}

// transact writes c in one TransactWriteItems call, retried on conflicts
// and throttling.
func (s *Store) transact(ctx context.Context, c store.Change) error {
	for attempt := 1; ; attempt++ {
		// Each attempt is built afresh: a cancelled transaction applied
		// nothing, so the next may add to other counter items (those the
		// last one met a conflict on are likely still busy) under a token
		// of its own; the SDK's own retries of one attempt keep its token,
		// so DynamoDB applies an attempt whose answer was lost once.
		ops, err := s.changeOps(c, attempt)
		if err != nil {
			return err
		}
		writes := make([]types.TransactWriteItem, len(ops))
		for i, o := range ops {
			writes[i] = o.write
		}
		token, err := requestToken(*s.table, c, attempt)
		if err != nil {
			return fmt.Errorf("dynamo: apply: %w", err)
		}
		_, err = s.client.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: writes, ClientRequestToken: token})
		if err == nil {
			return nil
		}
		var cancelled *types.TransactionCanceledException
		if !errors.As(err, &cancelled) {
			return fmt.Errorf("dynamo: apply: %w", err)
		}
		// Another transaction holding an item, and throttling of an item's
		// partition, pass: retry both with backoff. The cancellation
		// reasons are documented under TransactWriteItems' errors.
		contended, throttled := false, false
		for i, r := range cancelled.CancellationReasons {
			switch aws.ToString(r.Code) {
			case "ConditionalCheckFailed":
				return ops[i].failed(r.Item)
			case "TransactionConflict":
				contended = true
			case "ThrottlingError", "ProvisionedThroughputExceeded":
				throttled = true
			}
		}
		switch {
		case !contended && !throttled:
			return fmt.Errorf("dynamo: apply: %w", err)
		case attempt == ApplyAttempts && throttled:
			return fmt.Errorf("dynamo: apply: throttled: %w", err)
		case attempt == ApplyAttempts:
			return fmt.Errorf("dynamo: apply: concurrent transactions: %w", store.ErrConflict)
		}
		backoff := time.Duration(attempt) * 10 * time.Millisecond
		select {
		case <-ctx.Done():
			return fmt.Errorf("dynamo: apply: %w", ctx.Err())
		case <-time.After(backoff + rand.N(backoff)):
		}
	}
}

// changeOps turns c into transaction items, for the attempt-th try: key
// writes, then the tenant write or counter updates, then audit entries.
func (s *Store) changeOps(c store.Change, attempt int) ([]op, error) {
	creates := c.CreatesByTenant()
	var ops []op
	for _, w := range c.Keys {
		if w.ExpectedRevision == 0 {
			ops = append(ops, s.keyCreate(w.Key))
		} else {
			ops = append(ops, s.keyUpdate(w))
		}
	}
	if w := c.Tenant; w != nil {
		n := creates[w.Tenant.ID]
		// Its stored status does not matter: this write replaces it.
		if n > 0 && w.Tenant.Status != store.TenantActive {
			return nil, fmt.Errorf("dynamo: apply: keys created in tenant %s, written as %s: %w", w.Tenant.ID, w.Tenant.Status, store.ErrConflict)
		}
		shard := counterShard(c, w.Tenant.ID, "", attempt)
		if w.ExpectedRevision == 0 {
			ops = append(ops, s.tenantCreate(w.Tenant))
			ops = append(ops, s.tenantCounters(w.Tenant, shard, n)...)
		} else {
			// Its counters already carry its status (Apply).
			ops = append(ops, s.tenantUpdate(*w))
			if n > 0 {
				ops = append(ops, s.tenantCount(w.Tenant.ID, shard, n))
			}
		}
	}
	for _, tenant := range slices.Sorted(maps.Keys(creates)) {
		if c.Tenant == nil || c.Tenant.Tenant.ID != tenant {
			ops = append(ops, s.tenantCount(tenant, counterShard(c, tenant, "", attempt), creates[tenant]))
		}
	}
	members := c.CreatesByMember()
	for _, m := range slices.SortedFunc(maps.Keys(members), func(a, b store.Member) int {
		return cmp.Or(cmp.Compare(a.TenantID, b.TenantID), cmp.Compare(a.ID, b.ID))
	}) {
		ops = append(ops, s.memberCount(m, counterShard(c, m.TenantID, m.ID, attempt), members[m]))
	}
	for _, a := range c.Audit {
		ops = append(ops, s.auditCreate(a))
	}
	if r := c.Idempotency; r != nil {
		ops = append(ops, s.idemComplete(*r))
	}
	return ops, nil
}

// requestToken is the ClientRequestToken of a change that completes an
// idempotency record: derived from the table, the record (tenant,
// Idempotency-Key and the claim) and the change itself, so that the SDK's
// retries, and Apply's own, of a transaction whose answer was lost cannot
// apply it twice within DynamoDB's ten-minute window, and a different
// transaction never meets IdempotentParameterMismatch (tokens are the
// account's, not the table's: two stages in one account share them). Nil
// for other changes, which the SDK gives a token per call.
// https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html#DDB-TransactWriteItems-request-ClientRequestToken
func requestToken(table string, c store.Change, attempt int) (*string, error) {
	r := c.Idempotency
	if r == nil {
		return nil, nil
	}
	content, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(table + "\x00" + strconv.Itoa(attempt) + "\x00" + r.TenantID + "\x00" + r.Key + "\x00" + store.SortTime(r.CreatedAt) + "\x00" + string(content)))
	// At most 36 characters.
	return aws.String(base64.RawURLEncoding.EncodeToString(sum[:27])), nil
}

// idemComplete completes an in-progress, unexpired idempotency record of
// the same claim (store.Change.Idempotency).
func (s *Store) idemComplete(r store.Idempotency) op {
	u, cond := s.completion(r)
	return op{
		write: types.TransactWriteItem{Update: s.update(primaryKey(idemPK(r.TenantID, r.Key), idemSK), u, cond)},
		failed: func(item) error {
			return fmt.Errorf("dynamo: complete idempotency record %s/%s: not this request's claim, in progress: %w", r.TenantID, r.Key, store.ErrConflict)
		},
	}
}

// completion is the update that completes the in-progress, unexpired
// record of r's claim with r's answer, and its condition.
func (s *Store) completion(r store.Idempotency) (*update, string) {
	e := encoder{}
	e.bool(attrDone, true)
	e.int(attrStatusCode, int64(r.StatusCode))
	e.bytes(attrBody, r.Body)
	u := &update{}
	u.copyFrom(item(e), []string{attrDone, attrStatusCode, attrBody})
	cond := u.exists(AttrPK) + " AND " + u.cmp(attrDone, "=", &types.AttributeValueMemberBOOL{Value: false}) +
		" AND " + u.cmp(attrCreatedAt, "=", str(store.SortTime(r.CreatedAt))) +
		" AND " + u.cmp(attrRequestHash, "=", str(r.RequestHash)) + " AND " + s.unexpired(&u.expr)
	return u, cond
}

// unexpired is the condition that an item with an expires_at attribute
// has not expired; one without it never does (store.Idempotency).
func (s *Store) unexpired(x *expr) string {
	return "(" + x.notExists(attrExpiresAt) + " OR " + x.cmp(attrExpiresAt, ">", str(store.SortTime(s.now()))) + ")"
}

// put is a conditional Put that reports the existing item on failure.
func (s *Store) put(it item, x *expr, cond string) *types.Put {
	return &types.Put{
		TableName:                           s.table,
		Item:                                it,
		ConditionExpression:                 aws.String(cond),
		ExpressionAttributeNames:            x.names,
		ExpressionAttributeValues:           x.values,
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	}
}

// update is an Update, conditional unless cond is empty, that reports the
// existing item on failure.
func (s *Store) update(key item, u *update, cond string) *types.Update {
	up := &types.Update{
		TableName:                           s.table,
		Key:                                 key,
		UpdateExpression:                    aws.String(u.String()),
		ExpressionAttributeNames:            u.names,
		ExpressionAttributeValues:           u.values,
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	}
	if cond != "" {
		up.ConditionExpression = aws.String(cond)
	}
	return up
}

func (s *Store) keyCreate(k store.Key) op {
	k.Revision = 1
	var x expr
	return op{
		write: types.TransactWriteItem{Put: s.put(keyItem(k), &x, x.notExists(AttrPK))},
		failed: func(item) error {
			return fmt.Errorf("dynamo: create key %s: %w", k.ID, store.ErrAlreadyExists)
		},
	}
}

func (s *Store) keyUpdate(w store.KeyWrite) op {
	k := w.Key
	var u update
	it := keyItem(k)
	u.copyFrom(it, keyMutable)
	u.copyFrom(it, keyExpiryIndex)
	u.setAttr(attrRevision, num(w.ExpectedRevision+1))
	// A missing item fails the revision test too.
	cond := u.cmp(attrRevision, "=", num(w.ExpectedRevision)) + " AND " + u.cmp(attrTenantID, "=", str(k.TenantID))
	return op{
		write: types.TransactWriteItem{Update: s.update(primaryKey(keyPK(k.ID), keySK), &u, cond)},
		failed: func(old item) error {
			d := decoder{it: old}
			if len(old) == 0 || d.str(attrTenantID) != k.TenantID {
				return fmt.Errorf("dynamo: update key %s: %w", k.ID, store.ErrNotFound)
			}
			return fmt.Errorf("dynamo: update key %s: revision is %d, not %d: %w", k.ID, d.int(attrRevision), w.ExpectedRevision, store.ErrConflict)
		},
	}
}

func (s *Store) tenantCreate(t store.Tenant) op {
	t.Revision = 1
	var x expr
	return op{
		write: types.TransactWriteItem{Put: s.put(tenantItem(t), &x, x.notExists(AttrPK))},
		failed: func(item) error {
			return fmt.Errorf("dynamo: create tenant %s: %w", t.ID, store.ErrAlreadyExists)
		},
	}
}

// tenantUpdate replaces a tenant (its counters are written beside it).
func (s *Store) tenantUpdate(w store.TenantWrite) op {
	t := w.Tenant
	var u update
	u.copyFrom(tenantItem(t), tenantMutable)
	u.setAttr(attrRevision, num(w.ExpectedRevision+1))
	cond := u.cmp(attrRevision, "=", num(w.ExpectedRevision))
	return op{
		write: types.TransactWriteItem{Update: s.update(primaryKey(tenantPK(t.ID), tenantSK), &u, cond)},
		failed: func(old item) error {
			if len(old) == 0 {
				return fmt.Errorf("dynamo: update tenant %s: %w", t.ID, store.ErrNotFound)
			}
			d := decoder{it: old}
			return fmt.Errorf("dynamo: update tenant %s: revision is %d, not %d: %w", t.ID, d.int(attrRevision), w.ExpectedRevision, store.ErrConflict)
		},
	}
}

// auditCreate writes an entry unless its id is taken by one that has not
// expired yet.
func (s *Store) auditCreate(a store.AuditEntry) op {
	var x expr
	cond := x.notExists(AttrPK) + " OR " + x.cmp(attrExpiresAt, "<=", str(store.SortTime(s.now())))
	return op{
		write: types.TransactWriteItem{Put: s.put(auditItem(a), &x, cond)},
		failed: func(item) error {
			return fmt.Errorf("dynamo: create audit entry %s: %w", a.ID, store.ErrAlreadyExists)
		},
	}
}
