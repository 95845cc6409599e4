package dynamolocal

import (
	"context"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/keyward/keyward/pkg/store/dynamo"
)

// LaggingIndexes wraps a client so that its global secondary indexes lag
// the table as DynamoDB's do, which DynamoDB Local's never do: an index
// query leaves out every item written less than lag ago (a new item not yet
// propagated, or a changed one whose entry is in flux). Base-table reads
// are unaffected, as strongly consistent reads are on the service.
// https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/GSI.html#GSI.Writes
type LaggingIndexes struct {
	dynamo.API
	lag time.Duration

	mu        sync.Mutex
	written   map[string]time.Time // pk \0 sk → last write
	lastWrite time.Time
}

// NewLaggingIndexes wraps client with indexes lag behind the table.
func NewLaggingIndexes(client dynamo.API, lag time.Duration) *LaggingIndexes {
	return &LaggingIndexes{API: client, lag: lag, written: map[string]time.Time{}}
}

// Settle waits until every write made so far shows in the indexes.
func (l *LaggingIndexes) Settle() {
	l.mu.Lock()
	until := l.lastWrite.Add(l.lag)
	l.mu.Unlock()
	time.Sleep(time.Until(until))
}

func itemKey(it map[string]types.AttributeValue) string {
	s := func(name string) string {
		if v, ok := it[name].(*types.AttributeValueMemberS); ok {
			return v.Value
		}
		return ""
	}
	return s(dynamo.AttrPK) + "\x00" + s(dynamo.AttrSK)
}

func (l *LaggingIndexes) wrote(keys ...map[string]types.AttributeValue) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		l.written[itemKey(k)] = now
	}
	l.lastWrite = now
}

func (l *LaggingIndexes) PutItem(ctx context.Context, in *dynamodb.PutItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	out, err := l.API.PutItem(ctx, in, opts...)
	if err == nil {
		l.wrote(in.Item)
	}
	return out, err
}

func (l *LaggingIndexes) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	out, err := l.API.UpdateItem(ctx, in, opts...)
	if err == nil {
		l.wrote(in.Key)
	}
	return out, err
}

func (l *LaggingIndexes) DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error) {
	out, err := l.API.DeleteItem(ctx, in, opts...)
	if err == nil {
		l.wrote(in.Key)
	}
	return out, err
}

func (l *LaggingIndexes) TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, opts ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error) {
	out, err := l.API.TransactWriteItems(ctx, in, opts...)
	if err == nil {
		for _, w := range in.TransactItems {
			switch {
			case w.Put != nil:
				l.wrote(w.Put.Item)
			case w.Update != nil:
				l.wrote(w.Update.Key)
			case w.Delete != nil:
				l.wrote(w.Delete.Key)
			}
		}
	}
	return out, err
}

// Query leaves out of an index's answer the items written within the lag.
func (l *LaggingIndexes) Query(ctx context.Context, in *dynamodb.QueryInput, opts ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error) {
	out, err := l.API.Query(ctx, in, opts...)
	if err != nil || in.IndexName == nil {
		return out, err
	}
	cutoff := time.Now().Add(-l.lag)
	l.mu.Lock()
	defer l.mu.Unlock()
	kept := out.Items[:0:0]
	for _, it := range out.Items {
		if at, ok := l.written[itemKey(it)]; ok && at.After(cutoff) {
			continue
		}
		kept = append(kept, it)
	}
	out.Items, out.Count = kept, int32(len(kept))
	return out, nil
}
