// Package dynamo is the DynamoDB backend of store.Store, in one table
// (layout.go; <s> is a shard, 00 to 15 by the id's hash, <c> a counter
// shard, 00 to 63 for a tenant, 00 to 255 for a member):
//
//	item            pk                            sk                  gsi1pk / gsi2pk / gsi3pk                 gsi1sk / gsi2sk / gsi3sk
//	key             KEY#<id>                      KEY                 TENANT#<tenant>#KEYS#<s>                 store.KeyOrder
//	                                                                  EXPIRY#<s> (gsi2, sparse)                store.ExpiryOrder
//	                                                                  MEMBER#<tenant>#<member>#KEYS#<s> (gsi3) store.KeyOrder
//	tenant          TENANT#<id>                   TENANT
//	tenant counter  TENANT#<id>#COUNT#<c>         COUNT
//	member counter  MEMBER#<tenant>#<member>#COUNT#<c>  COUNT
//	pepper          PEPPER                        V#<version, %010d>
//	audit entry     AUDIT#<tenant>#<s>            store.AuditOrder    AUDITKEY#<tenant>#<key id> (gsi1)        store.AuditOrder
//	idempotency     IDEM#<tenant>#<key>           IDEM
//	checkpoint      JOB#<job>                     CHECKPOINT
//
// gsi2 is sparse: a key is in it only while it is active or expiring and
// has an expiry; gsi3 only if a member created it. Every index projects
// its keys only, and listings read the items themselves (listing.go).
//
// Audit entries and idempotency records carry a TTL attribute; reads skip
// expired items that DynamoDB has not deleted yet.
package dynamo

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

	"github.com/keyward/keyward/pkg/store"
)

// API is the part of *dynamodb.Client that Store uses.
type API interface {
	GetItem(context.Context, *dynamodb.GetItemInput, ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	BatchGetItem(context.Context, *dynamodb.BatchGetItemInput, ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error)
	PutItem(context.Context, *dynamodb.PutItemInput, ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(context.Context, *dynamodb.UpdateItemInput, ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	DeleteItem(context.Context, *dynamodb.DeleteItemInput, ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
	Query(context.Context, *dynamodb.QueryInput, ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
	Scan(context.Context, *dynamodb.ScanInput, ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error)
	TransactWriteItems(context.Context, *dynamodb.TransactWriteItemsInput, ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error)
}

// Store implements store.Store on one DynamoDB table.
type Store struct {
	client API
	table  *string
	now    func() time.Time
}

var _ store.Store = (*Store)(nil)

// Option configures a Store.
type Option func(*Store)

// WithClock sets the clock that decides which TTL items have expired
// (default time.Now).
func WithClock(now func() time.Time) Option {
	return func(s *Store) { s.now = now }
}

// New returns a Store on table, which must have the layout CreateTable makes.
func New(client API, table string, opts ...Option) *Store {
	s := &Store{client: client, table: aws.String(table), now: time.Now}
	for _, o := range opts {
		o(s)
	}
	return s
}

// TableStream asks CreateTable for the table's stream, the delivery half
// of the event outbox (stream.go). It is a choice because DynamoDB Local
// slows every request by each stream it has ever had, deleted tables'
// included (over four times slower after 40 tables), so tests that do not
// read the stream go without.
type TableStream bool

// The two answers to TableStream.
const (
	WithoutStream TableStream = false
	WithStream    TableStream = true
)

// CreateTable creates table name with the layout Store expects, with its
// stream if asked (the deployed table always has it), waits until it is
// active and enables TTL.
func CreateTable(ctx context.Context, client *dynamodb.Client, name string, stream TableStream) error {
	str := types.ScalarAttributeTypeS
	attrs := []types.AttributeDefinition{
		{AttributeName: aws.String(AttrPK), AttributeType: str},
		{AttributeName: aws.String(AttrSK), AttributeType: str},
	}
	var gsis []types.GlobalSecondaryIndex
	for _, ix := range Indexes {
		attrs = append(attrs,
			types.AttributeDefinition{AttributeName: aws.String(ix.PK), AttributeType: str},
			types.AttributeDefinition{AttributeName: aws.String(ix.SK), AttributeType: str})
		gsis = append(gsis, types.GlobalSecondaryIndex{
			IndexName: aws.String(ix.Name),
			KeySchema: []types.KeySchemaElement{
				{AttributeName: aws.String(ix.PK), KeyType: types.KeyTypeHash},
				{AttributeName: aws.String(ix.SK), KeyType: types.KeyTypeRange},
			},
			Projection: &types.Projection{ProjectionType: types.ProjectionTypeKeysOnly},
		})
	}
	in := &dynamodb.CreateTableInput{
		TableName:            aws.String(name),
		BillingMode:          types.BillingModePayPerRequest,
		AttributeDefinitions: attrs,
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String(AttrPK), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String(AttrSK), KeyType: types.KeyTypeRange},
		},
		GlobalSecondaryIndexes: gsis,
	}
	if stream {
		in.StreamSpecification = &types.StreamSpecification{StreamEnabled: aws.Bool(true), StreamViewType: types.StreamViewTypeNewImage}
	}
	if _, err := client.CreateTable(ctx, in); err != nil {
		return fmt.Errorf("dynamo: create table %s: %w", name, err)
	}
	waiter := dynamodb.NewTableExistsWaiter(client, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay = time.Second
	})
	if err := waiter.Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)}, 10*time.Minute); err != nil {
		return fmt.Errorf("dynamo: wait for table %s: %w", name, err)
	}
	_, err := client.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{
		TableName: aws.String(name),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{
			AttributeName: aws.String(AttrTTL),
			Enabled:       aws.Bool(true),
		},
	})
	// Emulators without TTL still work: reads filter expired items anyway.
	var apiErr smithy.APIError
	if err != nil && !(errors.As(err, &apiErr) && apiErr.ErrorCode() == "UnknownOperationException") {
		return fmt.Errorf("dynamo: enable TTL on %s: %w", name, err)
	}
	return nil
}
