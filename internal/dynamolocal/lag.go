package dynamolocal

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/keyward/keyward/pkg/store/dynamo"
)

type item = map[string]types.AttributeValue

// LaggingIndexes wraps a client so that its global secondary indexes lag
// the table as DynamoDB's do, which DynamoDB Local's never do. For lag
// after an item's last write, an index query answers from a mix of the
// item's versions: a new item is missing, and a changed one is listed at
// its old index keys as well as, where they differ, its new ones (the
// index has put the new entry but not yet deleted the old). Base-table
// reads are unaffected, as strongly consistent reads are on the service.
// https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/GSI.html#GSI.Writes
type LaggingIndexes struct {
	dynamo.API
	lag time.Duration

	mu        sync.Mutex
	pending   map[string]pending // pk \0 sk → the item before its recent writes
	lastWrite time.Time
	paused    bool
}

// pending is an item the indexes have not caught up with: old is how they
// last saw it (nil: absent) until until.
type pending struct {
	old   item
	until time.Time
}

// NewLaggingIndexes wraps client with indexes lag behind the table.
func NewLaggingIndexes(client dynamo.API, lag time.Duration) *LaggingIndexes {
	return &LaggingIndexes{API: client, lag: lag, pending: map[string]pending{}}
}

// Settle waits until every write made so far shows in the indexes.
func (l *LaggingIndexes) Settle() {
	l.mu.Lock()
	until := l.lastWrite.Add(l.lag)
	l.mu.Unlock()
	time.Sleep(time.Until(until))
}

// Pause stops the indexes catching up until the returned func is called,
// so that a test can look at them mid-lag however slowly it runs.
func (l *LaggingIndexes) Pause() (resume func()) {
	l.mu.Lock()
	now := time.Now()
	for key, p := range l.pending {
		if !p.until.After(now) {
			delete(l.pending, key) // caught up before the pause
		}
	}
	l.paused = true
	l.mu.Unlock()
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.paused = false
		now := time.Now()
		for key, p := range l.pending {
			p.until = now.Add(l.lag)
			l.pending[key] = p
		}
		l.lastWrite = now
	}
}

// current reports whether p still holds back the indexes.
func (l *LaggingIndexes) current(p pending, now time.Time) bool {
	return l.paused || p.until.After(now)
}

func attrString(it item, name string) string {
	if v, ok := it[name].(*types.AttributeValueMemberS); ok {
		return v.Value
	}
	return ""
}

func itemKey(it item) string {
	return attrString(it, dynamo.AttrPK) + "\x00" + attrString(it, dynamo.AttrSK)
}

// write applies a write of the items with the given primary keys, first
// reading how each looks before it, for the indexes to go on showing.
func (l *LaggingIndexes) write(ctx context.Context, table *string, keys []item, do func() error) error {
	// One read for them all (a transaction's items are distinct, at most
	// 100); DynamoDB Local processes every key of a small batch.
	out, err := l.API.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: map[string]types.KeysAndAttributes{
		*table: {Keys: keys, ConsistentRead: aws.Bool(true)},
	}})
	if err != nil {
		return fmt.Errorf("lagging indexes: read before write: %w", err)
	}
	if len(out.UnprocessedKeys) > 0 {
		return fmt.Errorf("lagging indexes: read before write: keys left unprocessed")
	}
	found := map[string]item{}
	for _, it := range out.Responses[*table] {
		found[itemKey(it)] = it
	}
	if err := do(); err != nil {
		return err
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		key := itemKey(k)
		p, ok := l.pending[key]
		if !ok || !l.current(p, now) {
			// The indexes still show the version seen before this write; an
			// earlier pending one they may show for longer.
			p.old = found[key]
		}
		p.until = now.Add(l.lag)
		l.pending[key] = p
	}
	l.lastWrite = now
	return nil
}

func (l *LaggingIndexes) PutItem(ctx context.Context, in *dynamodb.PutItemInput, opts ...func(*dynamodb.Options)) (out *dynamodb.PutItemOutput, err error) {
	key := item{dynamo.AttrPK: in.Item[dynamo.AttrPK], dynamo.AttrSK: in.Item[dynamo.AttrSK]}
	err = l.write(ctx, in.TableName, []item{key}, func() error {
		out, err = l.API.PutItem(ctx, in, opts...)
		return err
	})
	return out, err
}

func (l *LaggingIndexes) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (out *dynamodb.UpdateItemOutput, err error) {
	err = l.write(ctx, in.TableName, []item{in.Key}, func() error {
		out, err = l.API.UpdateItem(ctx, in, opts...)
		return err
	})
	return out, err
}

func (l *LaggingIndexes) DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, opts ...func(*dynamodb.Options)) (out *dynamodb.DeleteItemOutput, err error) {
	err = l.write(ctx, in.TableName, []item{in.Key}, func() error {
		out, err = l.API.DeleteItem(ctx, in, opts...)
		return err
	})
	return out, err
}

func (l *LaggingIndexes) TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, opts ...func(*dynamodb.Options)) (out *dynamodb.TransactWriteItemsOutput, err error) {
	var table *string
	var keys []item
	for _, w := range in.TransactItems {
		switch {
		case w.Put != nil:
			table = w.Put.TableName
			keys = append(keys, item{dynamo.AttrPK: w.Put.Item[dynamo.AttrPK], dynamo.AttrSK: w.Put.Item[dynamo.AttrSK]})
		case w.Update != nil:
			table = w.Update.TableName
			keys = append(keys, w.Update.Key)
		case w.Delete != nil:
			table = w.Delete.TableName
			keys = append(keys, w.Delete.Key)
		}
	}
	err = l.write(ctx, table, keys, func() error {
		out, err = l.API.TransactWriteItems(ctx, in, opts...)
		return err
	})
	return out, err
}

// Query answers an index query from the lagging view: every entry the
// index holds now, less those of items still pending that were absent
// before, plus the old entries of pending items that matched the key
// condition. It pages by itself, in the index's order, so that Limit and
// ExclusiveStartKey hold over the view rather than over DynamoDB Local's
// own, up-to-date index.
func (l *LaggingIndexes) Query(ctx context.Context, in *dynamodb.QueryInput, opts ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error) {
	if in.IndexName == nil {
		return l.API.Query(ctx, in, opts...)
	}
	var ix dynamo.Index
	for _, candidate := range dynamo.Indexes {
		if candidate.Name == *in.IndexName {
			ix = candidate
		}
	}
	if ix.Name == "" {
		return nil, fmt.Errorf("lagging indexes: unknown index %q", *in.IndexName)
	}
	cond, err := parseKeyCondition(aws.ToString(in.KeyConditionExpression), in.ExpressionAttributeNames, in.ExpressionAttributeValues)
	if err != nil {
		return nil, err
	}
	// The index as it is now, whole.
	all := *in
	all.Limit, all.ExclusiveStartKey = nil, nil
	var current []item
	for pages := dynamodb.NewQueryPaginator(l.API, &all); pages.HasMorePages(); {
		page, err := pages.NextPage(ctx, opts...)
		if err != nil {
			return nil, err
		}
		current = append(current, page.Items...)
	}

	project := func(it item) item {
		return item{dynamo.AttrPK: it[dynamo.AttrPK], dynamo.AttrSK: it[dynamo.AttrSK], ix.PK: it[ix.PK], ix.SK: it[ix.SK]}
	}
	entryKey := func(it item) string { return attrString(it, ix.SK) + "\x00" + itemKey(it) }
	view := map[string]item{}
	now := time.Now()
	l.mu.Lock()
	for _, it := range current {
		if p, ok := l.pending[itemKey(it)]; ok && l.current(p, now) && p.old == nil {
			continue // not yet propagated
		}
		view[entryKey(it)] = it
	}
	for _, p := range l.pending {
		if l.current(p, now) && p.old != nil && cond.matches(p.old, ix) {
			view[entryKey(p.old)] = project(p.old)
		}
	}
	l.mu.Unlock()

	entries := make([]item, 0, len(view))
	for _, it := range view {
		entries = append(entries, it)
	}
	forward := in.ScanIndexForward == nil || *in.ScanIndexForward
	order := func(a, b item) int {
		c := cmp.Compare(entryKey(a), entryKey(b))
		if !forward {
			c = -c
		}
		return c
	}
	slices.SortFunc(entries, order)
	if start := in.ExclusiveStartKey; start != nil {
		i, _ := slices.BinarySearchFunc(entries, start, order)
		for i < len(entries) && order(entries[i], start) <= 0 {
			i++
		}
		entries = entries[i:]
	}
	out := &dynamodb.QueryOutput{}
	if in.Limit != nil && len(entries) > int(*in.Limit) {
		entries = entries[:*in.Limit]
		out.LastEvaluatedKey = project(entries[len(entries)-1])
	}
	out.Items, out.Count, out.ScannedCount = entries, int32(len(entries)), int32(len(entries))
	return out, nil
}

// keyCondition is the key condition of a query as keyward writes them:
// partition key equality and at most one sort key test (<, >, <=, >=,
// BETWEEN) on string attributes.
type keyCondition struct {
	pk        string
	skOp      string
	skValues  []string
	skPresent bool
}

func parseKeyCondition(expr string, names map[string]string, values map[string]types.AttributeValue) (keyCondition, error) {
	bad := func() (keyCondition, error) {
		return keyCondition{}, fmt.Errorf("lagging indexes: key condition %q not understood", expr)
	}
	value := func(ph string) (string, bool) {
		v, ok := values[ph].(*types.AttributeValueMemberS)
		if !ok {
			return "", false
		}
		return v.Value, true
	}
	f := strings.Fields(expr)
	if len(f) < 3 || f[1] != "=" {
		return bad()
	}
	var c keyCondition
	var ok bool
	if _, named := names[f[0]]; !named {
		return bad()
	}
	if c.pk, ok = value(f[2]); !ok {
		return bad()
	}
	switch rest := f[3:]; {
	case len(rest) == 0:
	case len(rest) == 4 && rest[0] == "AND" && slices.Contains([]string{"<", ">", "<=", ">="}, rest[2]):
		v, ok := value(rest[3])
		if !ok {
			return bad()
		}
		c.skPresent, c.skOp, c.skValues = true, rest[2], []string{v}
	case len(rest) == 6 && rest[0] == "AND" && rest[2] == "BETWEEN" && rest[4] == "AND":
		lo, ok1 := value(rest[3])
		hi, ok2 := value(rest[5])
		if !ok1 || !ok2 {
			return bad()
		}
		c.skPresent, c.skOp, c.skValues = true, "BETWEEN", []string{lo, hi}
	default:
		return bad()
	}
	return c, nil
}

// matches reports whether it has an entry in ix that the condition selects.
func (c keyCondition) matches(it item, ix dynamo.Index) bool {
	pk, okPK := it[ix.PK].(*types.AttributeValueMemberS)
	sk, okSK := it[ix.SK].(*types.AttributeValueMemberS)
	if !okPK || !okSK || pk.Value != c.pk {
		return false
	}
	if !c.skPresent {
		return true
	}
	v := sk.Value
	switch c.skOp {
	case "<":
		return v < c.skValues[0]
	case ">":
		return v > c.skValues[0]
	case "<=":
		return v <= c.skValues[0]
	case ">=":
		return v >= c.skValues[0]
	default: // BETWEEN
		return v >= c.skValues[0] && v <= c.skValues[1]
	}
}
