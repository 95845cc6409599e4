package keyevents_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	lambdaevents "github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	streamtypes "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"

	"github.com/keyward/keyward/internal/dynamolocal"
	"github.com/keyward/keyward/internal/storetest"
	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/keyevents"
	"github.com/keyward/keyward/pkg/lifecycle"
	"github.com/keyward/keyward/pkg/store/dynamo"
)

func TestMain(m *testing.M) { dynamolocal.Main(m) }

// flakyBus accepts events except those it is told to refuse once.
type flakyBus struct {
	mu        sync.Mutex
	refuse    map[string]bool
	published map[string]keyevents.Event
	times     map[string]int
}

func (b *flakyBus) Publish(_ context.Context, evs []keyevents.Event) ([]string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var failed []string
	for _, ev := range evs {
		if b.refuse[ev.Type] {
			delete(b.refuse, ev.Type)
			failed = append(failed, ev.ID)
			continue
		}
		b.published[ev.ID] = ev
		b.times[ev.ID]++
	}
	if failed != nil {
		return failed, errors.New("InternalFailure")
	}
	return nil, nil
}

// TestOutboxSurvivesACrashBeforePublishing writes changes to DynamoDB
// Local and publishes nothing, as if the function crashed right after its
// write; the table's stream still holds every audit entry, and the
// publisher delivers each event at least once, retrying what failed.
func TestOutboxSurvivesACrashBeforePublishing(t *testing.T) {
	ctx := t.Context()
	actor := lifecycle.Actor{ID: "operator", RequestID: "req-1"}
	client, table, svc, o := onboarded(t, actor)
	admin := o.Live
	if _, err := svc.Revoke(ctx, actor, "acme", admin.Key.ID); err != nil {
		t.Fatal(err)
	}
	// The "crash": the writes are acknowledged and nothing was published.

	records := readStream(t, client, dynamolocal.StreamsClient(t), table)
	bus := &flakyBus{refuse: map[string]bool{"key.revoked": true}, published: map[string]keyevents.Event{}, times: map[string]int{}}
	h := keyevents.StreamHandler{Decode: dynamo.AuditFromStream, Publisher: bus, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))}
	resp, err := h.Handle(ctx, lambdaevents.DynamoDBEvent{Records: records})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.BatchItemFailures) != 1 {
		t.Fatalf("batch item failures %+v, want the revocation's record", resp.BatchItemFailures)
	}
	// Lambda redelivers the failed record.
	var retry []lambdaevents.DynamoDBEventRecord
	for _, r := range records {
		if r.Change.SequenceNumber == resp.BatchItemFailures[0].ItemIdentifier {
			retry = append(retry, r)
		}
	}
	if resp, err := h.Handle(ctx, lambdaevents.DynamoDBEvent{Records: retry}); err != nil || len(resp.BatchItemFailures) != 0 {
		t.Fatalf("retry: %+v %v", resp, err)
	}

	types := map[string]int{}
	for _, ev := range bus.published {
		types[ev.Type]++
		if ev.TenantID != "acme" || ev.Actor != "operator" || ev.RequestID != "req-1" || !strings.HasPrefix(ev.ID, "evt_") {
			t.Errorf("event %+v", ev)
		}
		if ev.KeyID != "" && (ev.KeyID != apikey.PublicID(admin.Key.ID) || ev.KeyDisplay != admin.Token.Display()) &&
			(ev.KeyID != apikey.PublicID(o.Test.Key.ID) || ev.KeyDisplay != o.Test.Token.Display()) {
			t.Errorf("event names the key as %s %s", ev.KeyID, ev.KeyDisplay)
		}
		raw, _ := json.Marshal(ev)
		if strings.Contains(string(raw), admin.Token.Plain()[20:52]) {
			t.Fatal("an event carries the secret")
		}
	}
	if types["tenant.created"] != 1 || types["key.created"] != 2 || types["key.revoked"] != 1 || len(types) != 3 {
		t.Fatalf("published %v", types)
	}
}

// TestStreamFilter: the publisher's event filter (dynamo.StreamFilterPattern,
// deployed on its stream mapping) lets through every record the publisher
// publishes, an audit entry's INSERT, and nothing else, on the records a
// real stream delivers.
func TestStreamFilter(t *testing.T) {
	ctx := t.Context()
	client, table, svc, o := onboarded(t, lifecycle.Actor{ID: "operator"})
	st := dynamo.New(client, table)
	if _, err := st.TouchKey(ctx, o.Live.Key.ID, time.Now(), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Revoke(ctx, lifecycle.Actor{ID: "operator"}, "acme", o.Live.Key.ID); err != nil {
		t.Fatal(err)
	}
	var pattern map[string]any
	if err := json.Unmarshal([]byte(dynamo.StreamFilterPattern()), &pattern); err != nil {
		t.Fatalf("the pattern is not JSON: %v", err)
	}
	passed, held := 0, 0
	for _, r := range readStream(t, client, dynamolocal.StreamsClient(t), table) {
		raw, _ := json.Marshal(r)
		var record map[string]any
		if err := json.Unmarshal(raw, &record); err != nil {
			t.Fatal(err)
		}
		_, audit, _ := dynamo.AuditFromStream(r.Change.NewImage)
		want := audit && r.EventName == "INSERT"
		if got := matches(pattern, record); got != want {
			t.Errorf("filter lets %s through: %v, want %v\n%s", r.EventName, got, want, raw)
		}
		if want {
			passed++
		} else {
			held++
		}
	}
	if passed < 4 || held < 3 {
		t.Fatalf("%d records through, %d held back: the stream lacks the cases", passed, held)
	}
}

// matches evaluates a Lambda event filter pattern on an event, for the
// part of the syntax the pattern uses: nested fields, lists of exact
// values, and {"prefix": …}.
func matches(pattern, event map[string]any) bool {
	for field, want := range pattern {
		got, ok := event[field]
		if !ok {
			return false
		}
		switch want := want.(type) {
		case map[string]any:
			sub, ok := got.(map[string]any)
			if !ok || !matches(want, sub) {
				return false
			}
		case []any:
			if !slices.ContainsFunc(want, func(alt any) bool {
				if rule, ok := alt.(map[string]any); ok {
					prefix, _ := rule["prefix"].(string)
					s, isString := got.(string)
					return isString && strings.HasPrefix(s, prefix)
				}
				return alt == got
			}) {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// onboarded is a DynamoDB Local table with its stream and tenant acme
// onboarded by actor, and the service that did it.
func onboarded(t *testing.T, actor lifecycle.Actor) (*dynamodb.Client, string, *lifecycle.Service, lifecycle.Onboarded) {
	t.Helper()
	client, table := dynamolocal.NewTableWithStream(t)
	st := dynamo.New(client, table)
	_, ring := storetest.Peppers(t, st, time.Now())
	format, _ := apikey.NewFormat("sk")
	svc := lifecycle.New(st, ring, format)
	o, err := svc.Onboard(t.Context(), actor, lifecycle.OnboardParams{TenantID: "acme", Name: "Acme"})
	if err != nil {
		t.Fatal(err)
	}
	return client, table, svc, o
}

// readStream reads every record of the table's stream from the start, as
// Lambda's event source mapping would deliver them.
func readStream(t *testing.T, db *dynamodb.Client, streams *dynamodbstreams.Client, table string) []lambdaevents.DynamoDBEventRecord {
	t.Helper()
	ctx := t.Context()
	desc, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)})
	if err != nil || desc.Table.LatestStreamArn == nil {
		t.Fatalf("table has no stream: %v", err)
	}
	sd, err := streams.DescribeStream(ctx, &dynamodbstreams.DescribeStreamInput{StreamArn: desc.Table.LatestStreamArn})
	if err != nil {
		t.Fatal(err)
	}
	var out []lambdaevents.DynamoDBEventRecord
	for _, shard := range sd.StreamDescription.Shards {
		it, err := streams.GetShardIterator(ctx, &dynamodbstreams.GetShardIteratorInput{StreamArn: desc.Table.LatestStreamArn,
			ShardId: shard.ShardId, ShardIteratorType: streamtypes.ShardIteratorTypeTrimHorizon})
		if err != nil {
			t.Fatal(err)
		}
		iter := it.ShardIterator
		for range 20 {
			if iter == nil {
				break
			}
			recs, err := streams.GetRecords(ctx, &dynamodbstreams.GetRecordsInput{ShardIterator: iter})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs.Records {
				out = append(out, lambdaevents.DynamoDBEventRecord{
					EventName: string(r.EventName),
					Change: lambdaevents.DynamoDBStreamRecord{
						SequenceNumber: aws.ToString(r.Dynamodb.SequenceNumber),
						NewImage:       toLambda(r.Dynamodb.NewImage),
					},
				})
			}
			if len(recs.Records) == 0 {
				break
			}
			iter = recs.NextShardIterator
		}
	}
	if len(out) == 0 {
		t.Fatal("the stream is empty")
	}
	return out
}

// toLambda converts a Streams API image to the form Lambda delivers.
func toLambda(img map[string]streamtypes.AttributeValue) map[string]lambdaevents.DynamoDBAttributeValue {
	out := map[string]lambdaevents.DynamoDBAttributeValue{}
	for k, v := range img {
		out[k] = toLambdaValue(v)
	}
	return out
}

func toLambdaValue(v streamtypes.AttributeValue) lambdaevents.DynamoDBAttributeValue {
	switch v := v.(type) {
	case *streamtypes.AttributeValueMemberS:
		return lambdaevents.NewStringAttribute(v.Value)
	case *streamtypes.AttributeValueMemberN:
		return lambdaevents.NewNumberAttribute(v.Value)
	case *streamtypes.AttributeValueMemberB:
		return lambdaevents.NewBinaryAttribute(v.Value)
	case *streamtypes.AttributeValueMemberBOOL:
		return lambdaevents.NewBooleanAttribute(v.Value)
	case *streamtypes.AttributeValueMemberSS:
		return lambdaevents.NewStringSetAttribute(v.Value)
	case *streamtypes.AttributeValueMemberL:
		var l []lambdaevents.DynamoDBAttributeValue
		for _, e := range v.Value {
			l = append(l, toLambdaValue(e))
		}
		return lambdaevents.NewListAttribute(l)
	case *streamtypes.AttributeValueMemberM:
		return lambdaevents.NewMapAttribute(toLambda(v.Value))
	}
	return lambdaevents.NewNullAttribute()
}
