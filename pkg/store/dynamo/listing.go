package dynamo

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/keyward/keyward/pkg/store"
)

// listing is an ordered read of one collection, spread over the shards
// of its partition key (layout.go), in the table or in an index. The sort
// key is the items' order (KeyOrder, AuditOrder or ExpiryOrder), unique
// across shards, so one position is a cursor for the merged order.
type listing struct {
	expr
	index      string   // empty for the table itself
	partitions []string // the collection's partition key in each shard
	filter     string   // table only: a filter expression, placeholders in expr
	ascending  bool     // oldest first; else newest first
	upper      string   // ascending only, optional: sort keys are below it
}

// indexKeys are the partition and sort key attributes of the table (index
// "") and of each index.
var indexKeys = func() map[string][2]string {
	m := map[string][2]string{"": {AttrPK, AttrSK}}
	for _, ix := range Indexes {
		m[ix.Name] = [2]string{ix.PK, ix.SK}
	}
	return m
}()

// maxExamined is store.MaxExamined: the entries one call of list looks at.
const maxExamined = store.MaxExamined

// list returns up to limit items of l past cursor's position that keep
// accepts (nil accepts all), a cursor for the rest if any remain, and the
// ids of the items it passed over because they do not decode
// (store.ErrCorrupt), each before the cursor, so that no page reports one
// another page reports too. An index gives only primary keys (KEYS_ONLY):
// the items are read from the table, strongly consistent, and keep judges
// the item as it is now, never the index's lagging copy; an entry whose
// item is gone is passed over.
func list[T any](ctx context.Context, s *Store, l listing, limit int, cursor string, decode func(item) (T, error), keep func(entry string, v T) bool) ([]T, string, []string, error) {
	if err := store.CheckLimit(limit); err != nil {
		return nil, "", nil, err
	}
	var position string
	if cursor != "" {
		var err error
		if position, err = store.DecodeCursor(cursor); err != nil {
			return nil, "", nil, err
		}
	}
	m, err := s.merge(ctx, l, position, limit)
	if err != nil {
		return nil, "", nil, err
	}
	var out []T
	var skipped []string
	last, examined, rejected := "", 0, false // the sort key of the last entry looked at
	for len(out) < limit && examined < maxExamined {
		// As many entries as the page has room for, or more once a filter
		// has passed some over.
		want := limit - len(out)
		if rejected {
			want = maxBatchGet
		}
		batch, err := m.next(ctx, min(want, maxBatchGet, maxExamined-examined))
		if err != nil {
			return nil, "", nil, err
		}
		if len(batch) == 0 {
			return out, "", skipped, nil
		}
		items := batch
		if l.index != "" {
			if items, err = s.batchGet(ctx, batch); err != nil {
				return nil, "", nil, err
			}
		}
		for i, it := range items {
			if len(out) == limit {
				// The rest of the batch is the next page's.
				return out, store.EncodeCursor(last), skipped, nil
			}
			last = m.sortKey(batch[i])
			examined++
			if it == nil {
				continue // deleted since the index listed it
			}
			v, err := decode(it)
			switch {
			case errors.Is(err, store.ErrCorrupt):
				skipped = append(skipped, (&decoder{it: it}).str("id"))
			case err != nil:
				return nil, "", nil, err
			case keep == nil || keep(last, v):
				out = append(out, v)
			default:
				rejected = true
			}
		}
	}
	if !m.more() {
		return out, "", skipped, nil
	}
	return out, store.EncodeCursor(last), skipped, nil
}

// merger yields the items of every shard of a listing in the listing's
// order, reading each shard's query a page at a time as it is needed.
type merger struct {
	sk        string
	ascending bool
	shards    []*shardQuery
}

type shardQuery struct {
	pages *dynamodb.QueryPaginator
	buf   []item
	skip  string // a position the key condition includes, to pass over
}

// merge starts the query of every shard, each past position, fetching
// their first pages concurrently.
func (s *Store) merge(ctx context.Context, l listing, position string, limit int) (*merger, error) {
	keys, ok := indexKeys[l.index]
	if !ok {
		return nil, fmt.Errorf("unknown index %q", l.index)
	}
	pk, sk := keys[0], keys[1]
	m := &merger{sk: sk, ascending: l.ascending}
	if l.ascending && l.upper != "" && position >= l.upper {
		return m, nil
	}
	// A shard gives about its share of a page; more pages are read only
	// for the shards the merge draws on.
	pageSize := limit + 1
	if len(l.partitions) > 1 && l.index == "" {
		pageSize = min(limit+1, 2*(limit+1)/len(l.partitions)+2)
	}
	if l.filter != "" {
		// Limit counts items before the filter drops any: read full pages
		// rather than many small ones.
		pageSize = store.MaxPageSize + 1
	}
	for _, partition := range l.partitions {
		x := l.expr.clone()
		in := &dynamodb.QueryInput{
			TableName:        s.table,
			ScanIndexForward: aws.Bool(l.ascending),
			Limit:            aws.Int32(int32(pageSize)),
		}
		if l.index != "" {
			in.IndexName = aws.String(l.index)
		} else {
			in.ConsistentRead = aws.Bool(true)
		}
		q := &shardQuery{}
		cond := x.cmp(pk, "=", str(partition))
		switch {
		case l.ascending && l.upper != "" && position != "":
			// A key condition has one sort key test, and BETWEEN includes
			// both ends: the position's own item is passed over.
			cond += " AND " + x.name(sk) + " BETWEEN " + x.value(str(position)) + " AND " + x.value(str(l.upper))
			q.skip = position
		case l.ascending && l.upper != "":
			cond += " AND " + x.cmp(sk, "<", str(l.upper))
		case l.ascending && position != "":
			cond += " AND " + x.cmp(sk, ">", str(position))
		case position != "":
			cond += " AND " + x.cmp(sk, "<", str(position))
		}
		in.KeyConditionExpression = aws.String(cond)
		if l.filter != "" {
			in.FilterExpression = aws.String(l.filter)
		}
		in.ExpressionAttributeNames, in.ExpressionAttributeValues = x.names, x.values
		q.pages = dynamodb.NewQueryPaginator(s.client, in)
		m.shards = append(m.shards, q)
	}
	errs := make([]error, len(m.shards))
	var wg sync.WaitGroup
	for i, q := range m.shards {
		wg.Go(func() { errs[i] = q.fill(ctx, sk) })
	}
	wg.Wait()
	return m, errors.Join(errs...)
}

// fill reads pages until the shard has an item buffered or is done.
func (q *shardQuery) fill(ctx context.Context, sk string) error {
	for len(q.buf) == 0 && q.pages.HasMorePages() {
		page, err := q.pages.NextPage(ctx)
		if err != nil {
			return err
		}
		for _, it := range page.Items {
			if at, ok := it[sk].(*types.AttributeValueMemberS); q.skip != "" && ok && at.Value == q.skip {
				continue
			}
			q.buf = append(q.buf, it)
		}
	}
	return nil
}

func (m *merger) sortKey(it item) string {
	v, _ := it[m.sk].(*types.AttributeValueMemberS)
	if v == nil {
		return ""
	}
	return v.Value
}

// next returns up to n more items, in order.
func (m *merger) next(ctx context.Context, n int) ([]item, error) {
	var out []item
	for len(out) < n {
		best := -1
		for i, q := range m.shards {
			if len(q.buf) == 0 {
				continue
			}
			if best < 0 || m.before(m.sortKey(q.buf[0]), m.sortKey(m.shards[best].buf[0])) {
				best = i
			}
		}
		if best < 0 {
			return out, nil
		}
		q := m.shards[best]
		out = append(out, q.buf[0])
		q.buf = q.buf[1:]
		// The shard's next item must be known before another is chosen.
		if err := q.fill(ctx, m.sk); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// more reports whether an entry is left (every shard keeps its next one
// buffered).
func (m *merger) more() bool {
	for _, q := range m.shards {
		if len(q.buf) > 0 {
			return true
		}
	}
	return false
}

func (m *merger) before(a, b string) bool {
	if m.ascending {
		return a < b
	}
	return a > b
}

// maxBatchGet is BatchGetItem's limit of keys per call.
const maxBatchGet = 100

// batchGetAttempts bounds the calls that retry a batch's unprocessed keys
// (DynamoDB returns some unread under throttling).
const batchGetAttempts = 8

// batchGet reads, strongly consistent, the table items whose primary keys
// the index entries hold, in the entries' order; nil where the item is
// gone.
func (s *Store) batchGet(ctx context.Context, entries []item) ([]item, error) {
	keyOf := func(it item) string {
		d := decoder{it: it}
		return d.str(AttrPK) + "\x00" + d.str(AttrSK)
	}
	want := make([]map[string]types.AttributeValue, 0, len(entries))
	seen := map[string]bool{}
	for _, e := range entries {
		if k := keyOf(e); !seen[k] {
			seen[k] = true
			want = append(want, item{AttrPK: e[AttrPK], AttrSK: e[AttrSK]})
		}
	}
	found := make(map[string]item, len(want))
	for chunk := range slices.Chunk(want, maxBatchGet) {
		if err := s.batchGetChunk(ctx, chunk, keyOf, found); err != nil {
			return nil, err
		}
	}
	items := make([]item, len(entries))
	for i, e := range entries {
		items[i] = found[keyOf(e)]
	}
	return items, nil
}

// batchGetChunk reads up to maxBatchGet items into found, retrying the
// keys DynamoDB leaves unprocessed.
func (s *Store) batchGetChunk(ctx context.Context, want []map[string]types.AttributeValue, keyOf func(item) string, found map[string]item) error {
	pending := map[string]types.KeysAndAttributes{*s.table: {Keys: want, ConsistentRead: aws.Bool(true)}}
	for attempt := 0; len(pending) > 0; attempt++ {
		if attempt == batchGetAttempts {
			return fmt.Errorf("dynamo: batch get: %d keys still unprocessed after %d attempts", len(pending[*s.table].Keys), attempt)
		}
		if attempt > 0 {
			backoff := time.Duration(1<<attempt) * 10 * time.Millisecond
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(backoff):
			}
		}
		out, err := s.client.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: pending})
		if err != nil {
			return fmt.Errorf("dynamo: batch get: %w", err)
		}
		for _, it := range out.Responses[*s.table] {
			found[keyOf(it)] = it
		}
		pending = out.UnprocessedKeys
	}
	return nil
}
