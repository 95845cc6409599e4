package dynamo

import (
	"fmt"
	"strings"

	lambdaevents "github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/keyward/keyward/pkg/store"
)

// The table's stream (new images) is the delivery half of keyward's
// outbox: every audit entry is written in the transaction of its change,
// and the stream hands each new entry to the publisher at least once.

// AuditPartitionPrefix begins the partition key of every audit entry.
const AuditPartitionPrefix = "AUDIT#"

// StreamFilterPattern is the Lambda event filter of the publisher's stream
// mapping: the INSERT records of audit entries, the only ones it
// publishes, so that key writes (a last_used_at write per active key every
// few minutes), idempotency records and TTL deletions do not invoke it.
// Lambda drops what a filter does not match, so the filter may only ever
// match more than AuditFromStream accepts, never less.
// https://docs.aws.amazon.com/lambda/latest/dg/with-ddb-filtering.html
func StreamFilterPattern() string {
	return `{"eventName":["INSERT"],"dynamodb":{"NewImage":{"` + AttrPK + `":{"S":[{"prefix":"` + AuditPartitionPrefix + `"}]}}}}`
}

// AuditFromStream decodes the audit entry in a stream record's new image,
// as Lambda delivers it; ok is false for an image of any other item.
func AuditFromStream(img map[string]lambdaevents.DynamoDBAttributeValue) (store.AuditEntry, bool, error) {
	it := make(item, len(img))
	for name, v := range img {
		av, err := fromLambda(v)
		if err != nil {
			return store.AuditEntry{}, false, fmt.Errorf("dynamo: stream image attribute %s: %w", name, err)
		}
		it[name] = av
	}
	return auditFromItem(it)
}

func auditFromItem(it item) (store.AuditEntry, bool, error) {
	pk, ok := it[AttrPK].(*types.AttributeValueMemberS)
	if !ok || !strings.HasPrefix(pk.Value, AuditPartitionPrefix) {
		return store.AuditEntry{}, false, nil
	}
	a, err := decodeAudit(it)
	return a, err == nil, err
}

func fromLambda(v lambdaevents.DynamoDBAttributeValue) (types.AttributeValue, error) {
	switch v.DataType() {
	case lambdaevents.DataTypeString:
		return &types.AttributeValueMemberS{Value: v.String()}, nil
	case lambdaevents.DataTypeNumber:
		return &types.AttributeValueMemberN{Value: v.Number()}, nil
	case lambdaevents.DataTypeBinary:
		return &types.AttributeValueMemberB{Value: v.Binary()}, nil
	case lambdaevents.DataTypeBoolean:
		return &types.AttributeValueMemberBOOL{Value: v.Boolean()}, nil
	case lambdaevents.DataTypeNull:
		return &types.AttributeValueMemberNULL{Value: true}, nil
	case lambdaevents.DataTypeStringSet:
		return &types.AttributeValueMemberSS{Value: v.StringSet()}, nil
	case lambdaevents.DataTypeNumberSet:
		return &types.AttributeValueMemberNS{Value: v.NumberSet()}, nil
	case lambdaevents.DataTypeBinarySet:
		return &types.AttributeValueMemberBS{Value: v.BinarySet()}, nil
	case lambdaevents.DataTypeList:
		var l []types.AttributeValue
		for _, e := range v.List() {
			av, err := fromLambda(e)
			if err != nil {
				return nil, err
			}
			l = append(l, av)
		}
		return &types.AttributeValueMemberL{Value: l}, nil
	case lambdaevents.DataTypeMap:
		m := map[string]types.AttributeValue{}
		for k, e := range v.Map() {
			av, err := fromLambda(e)
			if err != nil {
				return nil, err
			}
			m[k] = av
		}
		return &types.AttributeValueMemberM{Value: m}, nil
	}
	return nil, fmt.Errorf("unknown data type %v", v.DataType())
}
