package dynamo_test

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/keyward/keyward/internal/dynamolocal"
	"github.com/keyward/keyward/internal/storetest"
	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/lifecycle"
	"github.com/keyward/keyward/pkg/store"
	"github.com/keyward/keyward/pkg/store/conformance"
	"github.com/keyward/keyward/pkg/store/dynamo"
)

func TestMain(m *testing.M) { dynamolocal.Main(m) }

func TestConformance(t *testing.T) {
	conformance.Run(t, func(t *testing.T, now func() time.Time) store.Store {
		client, table := dynamolocal.NewTable(t)
		return dynamo.New(client, table, dynamo.WithClock(now))
	})
}

// TestConformanceLaggingIndexes runs the suite with indexes that lag the
// table as the service's do (storetest.Lagging).
func TestConformanceLaggingIndexes(t *testing.T) {
	conformance.Run(t, func(t *testing.T, now func() time.Time) store.Store {
		return storetest.Lagging(t, now)
	})
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)

func tenant(id string, status store.TenantStatus) store.Tenant {
	return store.Tenant{ID: id, Name: id, Status: status, CreatedAt: t0}
}

func key(tenant string, i int) store.Key {
	return store.Key{
		ID: fmt.Sprintf("%s%06d", tenant, i), TenantID: tenant, Name: "k", Prefix: "sk",
		Environment: "live", Last4: "abcd", Scopes: []string{"*"}, Status: store.KeyActive,
		Hash: []byte{1}, PepperVersion: 1, CreatedAt: t0.Add(time.Duration(i) * time.Millisecond), UpdatedAt: t0,
	}
}

func apply(t *testing.T, s store.Store, c store.Change) {
	t.Helper()
	if err := s.Apply(t.Context(), c); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

// A change that writes one tenant and creates keys in another counts them
// in the other, which must be active: a path the suite does not combine.
func TestApplyCountsKeysOfOtherTenants(t *testing.T) {
	client, table := dynamolocal.NewTable(t)
	s := dynamo.New(client, table)
	ctx := t.Context()
	apply(t, s, store.Change{Tenant: &store.TenantWrite{Tenant: tenant("bravo", store.TenantActive)}})
	apply(t, s, store.Change{Tenant: &store.TenantWrite{Tenant: tenant("gone", store.TenantOffboarded)}})

	apply(t, s, store.Change{
		Tenant: &store.TenantWrite{Tenant: tenant("alpha", store.TenantActive)},
		Keys:   []store.KeyWrite{{Key: key("alpha", 1)}, {Key: key("bravo", 1)}, {Key: key("bravo", 2)}},
	})
	for id, want := range map[string]int64{"alpha": 1, "bravo": 2} {
		n, _ := s.KeyCount(ctx, id)
		if got, err := s.GetTenant(ctx, id); err != nil || n != want || got.Revision != 1 {
			t.Fatalf("tenant %s: %v %+v and %d keys, want %d keys, revision 1", id, err, got, n, want)
		}
	}

	a, _ := s.GetTenant(ctx, "alpha")
	a.Name = "renamed"
	err := s.Apply(ctx, store.Change{
		Tenant: &store.TenantWrite{Tenant: a, ExpectedRevision: a.Revision},
		Keys:   []store.KeyWrite{{Key: key("alpha", 2)}, {Key: key("gone", 1)}},
	})
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("create in an offboarded tenant: %v, want ErrConflict", err)
	}
	if got, _ := s.GetTenant(ctx, "alpha"); got.Name != "alpha" {
		t.Fatalf("failed change wrote alpha: %+v", got)
	}
	if n, _ := s.KeyCount(ctx, "alpha"); n != 1 {
		t.Fatalf("failed change counted alpha's keys: %d", n)
	}
	if _, err := s.GetKey(ctx, key("alpha", 2).ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("failed change created a key: %v", err)
	}
}

// Filters run after DynamoDB's Limit, so sparse matches need several
// query pages; the suite's small data sets fit in one (the conformance
// suite's ListKeysExaminesBoundedly does the same for keys, in both
// backends).
func TestAuditAcrossQueryPages(t *testing.T) {
	client, table := dynamolocal.NewTable(t)
	now := t0.Add(time.Hour)
	s := dynamo.New(client, table, dynamo.WithClock(func() time.Time { return now }))
	ctx := t.Context()
	apply(t, s, store.Change{Tenant: &store.TenantWrite{Tenant: tenant("acme", store.TenantActive)}})

	const n = 1100
	var audit []store.AuditEntry
	for i := range n {
		a := store.AuditEntry{TenantID: "acme", ID: fmt.Sprintf("a%04d", i), Time: t0.Add(time.Duration(i) * time.Second), Action: "x"}
		if i >= 3 { // all but the three oldest have expired
			a.ExpiresAt = now
		}
		audit = append(audit, a)
	}
	for batch := range slices.Chunk(audit, 90) {
		apply(t, s, store.Change{Audit: batch})
	}
	page, err := s.ListAudit(ctx, "acme", store.AuditQuery{Limit: 3})
	if err != nil || len(page.Entries) != 3 || page.Entries[0].ID != "a0002" || page.NextCursor != "" {
		t.Fatalf("live audit entries behind expired ones: %v %+v", err, page)
	}
}

// DynamoDB deletes by the ttl attribute: it must be epoch seconds, never
// before ExpiresAt.
func TestTTLAttribute(t *testing.T) {
	client, table := dynamolocal.NewTable(t)
	s := dynamo.New(client, table, dynamo.WithClock(func() time.Time { return t0 }))
	ctx := t.Context()
	expires := t0.Add(time.Hour) // has a fraction of a second
	if err := s.PutIdempotency(ctx, store.Idempotency{TenantID: "acme", Key: "k", RequestHash: "h", CreatedAt: t0, ExpiresAt: expires}); err != nil {
		t.Fatalf("PutIdempotency: %v", err)
	}
	apply(t, s, store.Change{Audit: []store.AuditEntry{{TenantID: "acme", ID: "a1", Time: t0, ExpiresAt: expires}}})
	out, err := client.Scan(ctx, &dynamodb.ScanInput{
		TableName:                 aws.String(table),
		FilterExpression:          aws.String("begins_with(pk, :p)"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":p": &types.AttributeValueMemberS{Value: "AUDIT#acme#"}},
	})
	if err != nil || len(out.Items) != 1 {
		t.Fatalf("raw audit query: %v, %d items", err, len(out.Items))
	}
	idem, err := client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(table),
		Key: map[string]types.AttributeValue{
			dynamo.AttrPK: &types.AttributeValueMemberS{Value: "IDEM#acme#k"},
			dynamo.AttrSK: &types.AttributeValueMemberS{Value: "IDEM"},
		},
	})
	if err != nil {
		t.Fatalf("raw GetItem: %v", err)
	}
	want := strconv.FormatInt(expires.Unix()+1, 10)
	for what, it := range map[string]map[string]types.AttributeValue{"audit": out.Items[0], "idempotency": idem.Item} {
		if n, ok := it[dynamo.AttrTTL].(*types.AttributeValueMemberN); !ok || n.Value != want {
			t.Fatalf("%s ttl = %#v, want N %s", what, it[dynamo.AttrTTL], want)
		}
	}
}

// contended cancels the first transactions it sees as DynamoDB does when
// another transaction holds an item (or, with reason ThrottlingError, when
// an item's partition is throttled), which DynamoDB Local never does.
type contended struct {
	dynamo.API
	cancels int
	reason  string // default TransactionConflict
	calls   int
	seen    []*dynamodb.TransactWriteItemsInput
}

func (c *contended) TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, opts ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error) {
	c.calls++
	c.seen = append(c.seen, in)
	if c.calls <= c.cancels {
		reasons := make([]types.CancellationReason, len(in.TransactItems))
		for i := range reasons {
			reasons[i].Code = aws.String("None")
		}
		reasons[len(reasons)-1].Code = aws.String(cmp.Or(c.reason, "TransactionConflict"))
		return nil, &types.TransactionCanceledException{CancellationReasons: reasons}
	}
	return c.API.TransactWriteItems(ctx, in, opts...)
}

func TestApplyRetriesTransactionConflict(t *testing.T) {
	client, table := dynamolocal.NewTable(t)
	change := store.Change{Tenant: &store.TenantWrite{Tenant: tenant("acme", store.TenantActive)}}

	c := &contended{API: client, cancels: 2}
	if err := dynamo.New(c, table).Apply(t.Context(), change); err != nil || c.calls != 3 {
		t.Fatalf("after two conflicts: %v, %d calls", err, c.calls)
	}

	c = &contended{API: client, cancels: 100}
	change.Tenant.Tenant.ID = "other"
	err := dynamo.New(c, table).Apply(t.Context(), change)
	if !errors.Is(err, store.ErrConflict) || c.calls < 2 || c.calls == c.cancels {
		t.Fatalf("under constant conflict: %v after %d calls, want ErrConflict after a few", err, c.calls)
	}
}

// TestConflictRetryMovesToAnotherCounter: a creation cancelled by a
// conflict is tried again on another of the tenant's counter items (the
// one it met is likely still busy), under a token of its own.
func TestConflictRetryMovesToAnotherCounter(t *testing.T) {
	client, table := dynamolocal.NewTable(t)
	s := dynamo.New(client, table)
	apply(t, s, store.Change{Tenant: &store.TenantWrite{Tenant: tenant("acme", store.TenantActive)}})
	c := &contended{API: client, cancels: 2}
	k := key("acme", 1)
	now := t0
	claim := store.Idempotency{TenantID: "acme", Key: "r1", RequestHash: "h", CreatedAt: now}
	if err := s.PutIdempotency(t.Context(), claim); err != nil {
		t.Fatal(err)
	}
	done := claim
	done.Done, done.StatusCode, done.Body = true, 201, []byte("{}")
	if err := dynamo.New(c, table).Apply(t.Context(), store.Change{Keys: []store.KeyWrite{{Key: k}}, Idempotency: &done}); err != nil || c.calls != 3 {
		t.Fatalf("after two conflicts: %v, %d calls", err, c.calls)
	}
	counters := map[string]bool{}
	tokens := map[string]bool{}
	for _, in := range c.seen {
		tokens[aws.ToString(in.ClientRequestToken)] = true
		for _, w := range in.TransactItems {
			if w.Update != nil {
				if pk := w.Update.Key[dynamo.AttrPK].(*types.AttributeValueMemberS).Value; strings.Contains(pk, "#COUNT#") {
					counters[pk] = true
				}
			}
		}
	}
	if len(counters) != 3 || len(tokens) != 3 {
		t.Fatalf("three tries used counters %v and %d tokens", counters, len(tokens))
	}
}

// TestApplyRetriesThrottling: a transaction cancelled because an item's
// partition was throttled is retried like a conflict; under constant
// throttling it fails, but not as a conflict (which would tell the client
// the request itself was at odds with the data).
func TestApplyRetriesThrottling(t *testing.T) {
	client, table := dynamolocal.NewTable(t)
	change := store.Change{Tenant: &store.TenantWrite{Tenant: tenant("acme", store.TenantActive)}}
	c := &contended{API: client, cancels: 2, reason: "ThrottlingError"}
	if err := dynamo.New(c, table).Apply(t.Context(), change); err != nil || c.calls != 3 {
		t.Fatalf("after two throttled attempts: %v, %d calls", err, c.calls)
	}
	c = &contended{API: client, cancels: 100, reason: "ThrottlingError"}
	change.Tenant.Tenant.ID = "other"
	err := dynamo.New(c, table).Apply(t.Context(), change)
	if err == nil || errors.Is(err, store.ErrConflict) || c.calls < 2 || c.calls == c.cancels {
		t.Fatalf("under constant throttling: %v after %d calls", err, c.calls)
	}
}

// rawKey reads a key's item as stored.
func rawKey(t *testing.T, client *dynamodb.Client, table, id string) map[string]types.AttributeValue {
	t.Helper()
	out, err := client.GetItem(t.Context(), &dynamodb.GetItemInput{
		TableName: aws.String(table),
		Key: map[string]types.AttributeValue{
			dynamo.AttrPK: &types.AttributeValueMemberS{Value: "KEY#" + id},
			dynamo.AttrSK: &types.AttributeValueMemberS{Value: "KEY"},
		},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil || len(out.Item) == 0 {
		t.Fatalf("raw GetItem of key %s: %v, %d attributes", id, err, len(out.Item))
	}
	return out.Item
}

// A stored status the code does not know is corrupt data, never a key
// that readers would treat as usable.
func TestUnknownStatusRefused(t *testing.T) {
	client, table := dynamolocal.NewTable(t)
	s := dynamo.New(client, table)
	apply(t, s, store.Change{Tenant: &store.TenantWrite{Tenant: tenant("acme", store.TenantActive)}})
	k := key("acme", 1)
	apply(t, s, store.Change{Keys: []store.KeyWrite{{Key: k}}})
	for _, status := range []string{"revokdd", "REVOKED", "disabled", ""} {
		it := rawKey(t, client, table, k.ID)
		if status == "" {
			delete(it, "status")
		} else {
			it["status"] = &types.AttributeValueMemberS{Value: status}
		}
		if _, err := client.PutItem(t.Context(), &dynamodb.PutItemInput{TableName: aws.String(table), Item: it}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetKey(t.Context(), k.ID); !errors.Is(err, store.ErrCorrupt) {
			t.Fatalf("status %q: GetKey = %v, want ErrCorrupt", status, err)
		}
	}
}

// gsi2 is sparse, and ListExpiring's own check would hide a key left in it:
// the attributes themselves must follow the status and expiry.
func TestExpiryIndexAttributes(t *testing.T) {
	client, table := dynamolocal.NewTable(t)
	s := dynamo.New(client, table)
	ctx := t.Context()
	apply(t, s, store.Change{Tenant: &store.TenantWrite{Tenant: tenant("acme", store.TenantActive)}})
	k := key("acme", 1)
	apply(t, s, store.Change{Keys: []store.KeyWrite{{Key: k}}})
	wantIndexed := func(what, want string) {
		t.Helper()
		it := rawKey(t, client, table, k.ID)
		pk, hasPK := it[dynamo.AttrGSI2PK].(*types.AttributeValueMemberS)
		sk, hasSK := it[dynamo.AttrGSI2SK].(*types.AttributeValueMemberS)
		switch {
		case want == "" && (hasPK || hasSK):
			t.Fatalf("%s: key in gsi2: %#v %#v", what, it[dynamo.AttrGSI2PK], it[dynamo.AttrGSI2SK])
		case want != "" && (!hasPK || !regexp.MustCompile(`^EXPIRY#[0-9]{2}$`).MatchString(pk.Value) || !hasSK || sk.Value != want):
			t.Fatalf("%s: gsi2 %#v %#v, want EXPIRY#<shard> %s", what, it[dynamo.AttrGSI2PK], it[dynamo.AttrGSI2SK], want)
		}
	}
	wantIndexed("created without expiry", "")

	update := func(change func(*store.Key)) {
		t.Helper()
		got, err := s.GetKey(ctx, k.ID)
		if err != nil {
			t.Fatal(err)
		}
		change(&got)
		apply(t, s, store.Change{Keys: []store.KeyWrite{{Key: got, ExpectedRevision: got.Revision}}})
	}
	exp := t0.Add(time.Hour)
	update(func(k *store.Key) { k.ExpiresAt = exp })
	wantIndexed("expiry set", store.SortTime(exp)+"#"+k.ID)
	update(func(k *store.Key) { k.Status, k.ExpiresAt = store.KeyExpiring, t0 })
	wantIndexed("rotated", store.SortTime(t0)+"#"+k.ID)
	update(func(k *store.Key) { k.Status = store.KeyExpired })
	wantIndexed("expired", "")
	update(func(k *store.Key) { k.Status = store.KeyActive })
	wantIndexed("reactivated", store.SortTime(t0)+"#"+k.ID)
	update(func(k *store.Key) { k.ExpiresAt = time.Time{} })
	wantIndexed("expiry cleared", "")

	revoked := key("acme", 2)
	revoked.Status, revoked.ExpiresAt = store.KeyRevoked, exp
	apply(t, s, store.Change{Keys: []store.KeyWrite{{Key: revoked}}})
	if it := rawKey(t, client, table, revoked.ID); it[dynamo.AttrGSI2PK] != nil || it[dynamo.AttrGSI2SK] != nil {
		t.Fatalf("revoked key created in gsi2: %v", it)
	}

	// A cursor past the query's bound (from a query with a later Before)
	// ends the listing rather than failing it.
	due := key("acme", 3)
	due.ExpiresAt = exp
	apply(t, s, store.Change{Keys: []store.KeyWrite{{Key: due}}})
	page, err := s.ListExpiring(ctx, store.ExpiryQuery{Before: exp, Limit: 1})
	if err != nil || len(page.Keys) != 1 || page.Keys[0].ID != due.ID || page.NextCursor != "" {
		t.Fatalf("ListExpiring: %v %+v", err, page)
	}
	cursor := store.EncodeCursor(store.SortTime(exp) + "#" + due.ID)
	page, err = s.ListExpiring(ctx, store.ExpiryQuery{Before: t0, Limit: 1, Cursor: cursor})
	if err != nil || len(page.Keys) != 0 || page.NextCursor != "" {
		t.Fatalf("ListExpiring from past the bound: %v %+v", err, page)
	}
}

// smallScans makes every Scan read a few items, as DynamoDB does when a
// table is larger than its 1 MB pages; the suite's tables fit in one.
type smallScans struct {
	dynamo.API
	scans int
}

func (c *smallScans) Scan(ctx context.Context, in *dynamodb.ScanInput, opts ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error) {
	c.scans++
	in.Limit = aws.Int32(3)
	return c.API.Scan(ctx, in, opts...)
}

func TestScanKeysAcrossScanPages(t *testing.T) {
	client, table := dynamolocal.NewTable(t)
	apply(t, dynamo.New(client, table), store.Change{Tenant: &store.TenantWrite{Tenant: tenant("acme", store.TenantActive)}})
	var writes []store.KeyWrite
	for i := range 20 {
		writes = append(writes, store.KeyWrite{Key: key("acme", i)})
	}
	apply(t, dynamo.New(client, table), store.Change{Keys: writes})
	// A long run of other items: more than one call's Scan requests read.
	var audit []store.AuditEntry
	for i := range 60 {
		audit = append(audit, store.AuditEntry{TenantID: "acme", ID: fmt.Sprintf("a%04d", i), Time: t0, Action: "x"})
	}
	apply(t, dynamo.New(client, table), store.Change{Audit: audit})

	for _, limit := range []int{1, 2, 3, 7, 100} {
		conformance.ScanEachOnce(t, dynamo.New(&smallScans{API: client}, table), limit, 20)
	}
}

// A scan cursor must be exactly what ScanKeys issues.
func TestScanKeysCursor(t *testing.T) {
	client, table := dynamolocal.NewTable(t)
	s := dynamo.New(client, table)
	ctx := t.Context()
	apply(t, s, store.Change{Tenant: &store.TenantWrite{Tenant: tenant("acme", store.TenantActive)}})
	apply(t, s, store.Change{Keys: []store.KeyWrite{{Key: key("acme", 1)}, {Key: key("acme", 2)}}})
	page, err := s.ScanKeys(ctx, "", 1)
	if err != nil || len(page.Keys) != 1 || page.NextCursor == "" {
		t.Fatalf("first page: %v %+v", err, page)
	}
	if _, err := s.ScanKeys(ctx, page.NextCursor, 1); err != nil {
		t.Fatalf("issued cursor: %v", err)
	}
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for _, bad := range []string{
		b64(`{"pk":"KEY#x","sk":"KEY","ttl":"1"}`),
		b64(`{"pk":"KEY#x"}`),
		b64(`{"pk":"KEY#x","sk":""}`),
		b64(`{"pk":"KEY#x","sk":1}`),
		b64(`{"PK":"KEY#x","SK":"KEY"}`),
		b64(`{"sk":"KEY","pk":"KEY#x"}`),
		b64(`{"pk":"KEY#x","sk":"KEY"} `),
		b64(`["KEY#x","KEY"]`),
		page.NextCursor + "=",
	} {
		if _, err := s.ScanKeys(ctx, bad, 1); !errors.Is(err, store.ErrInvalidCursor) {
			t.Fatalf("cursor %q: %v, want ErrInvalidCursor", bad, err)
		}
	}
}

// TestRepeatedTransactionAppliesOnce: a change that completes an
// idempotency record carries a ClientRequestToken derived from the record
// and the change, so the same change applied again (a retry after its
// answer was lost, with a fresh input) succeeds without applying twice,
// rather than failing on its own first write.
func TestRepeatedTransactionAppliesOnce(t *testing.T) {
	client, table := dynamolocal.NewTable(t)
	s := dynamo.New(client, table, dynamo.WithClock(func() time.Time { return t0 }))
	apply(t, s, store.Change{Tenant: &store.TenantWrite{Tenant: tenant("acme", store.TenantActive)}})
	claim := store.Idempotency{TenantID: "acme", Key: "idem-1", RequestHash: "h", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
	if err := s.PutIdempotency(t.Context(), claim); err != nil {
		t.Fatal(err)
	}
	done := claim
	done.Done, done.StatusCode, done.Body = true, 201, []byte("{}")
	change := store.Change{Keys: []store.KeyWrite{{Key: key("acme", 1)}}, Idempotency: &done}
	for i := range 2 {
		if err := s.Apply(t.Context(), change); err != nil {
			t.Fatalf("apply %d of the same change: %v", i+1, err)
		}
	}
	if n, err := s.KeyCount(t.Context(), "acme"); err != nil || n != 1 {
		t.Fatalf("the key was counted %d times: %v", n, err)
	}
	// Without an idempotency record, each Apply is a transaction of its
	// own, which the conditions of the first refuse.
	plain := store.Change{Keys: []store.KeyWrite{{Key: key("acme", 2)}}}
	apply(t, s, plain)
	if err := s.Apply(t.Context(), plain); !errors.Is(err, store.ErrAlreadyExists) {
		t.Fatalf("the same change without a record, again: %v", err)
	}
}

// TestCorruptKeyDoesNotStopRevocation: a key whose stored status no reader
// recognises is left out of listings (and named), so offboarding still
// revokes the tenant's other keys.
func TestCorruptKeyDoesNotStopRevocation(t *testing.T) {
	client, table := dynamolocal.NewTable(t)
	s := dynamo.New(client, table)
	ctx := t.Context()
	_, ring := storetest.Peppers(t, s, t0)
	format, _ := apikey.NewFormat("sk")
	svc := lifecycle.New(s, ring, format)
	if _, err := svc.Onboard(ctx, lifecycle.Actor{ID: "op"}, lifecycle.OnboardParams{TenantID: "acme", Name: "A"}); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for range 3 {
		c, err := svc.Create(ctx, lifecycle.Actor{ID: "op"}, "acme", lifecycle.CreateParams{Name: "k", Environment: apikey.Live, Scopes: []string{"invoices:read"}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.Key.ID)
	}
	it := rawKey(t, client, table, ids[1])
	it["status"] = &types.AttributeValueMemberS{Value: "disabled"}
	if _, err := client.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: it}); err != nil {
		t.Fatal(err)
	}
	page, err := s.ListKeys(ctx, "acme", store.KeyQuery{Limit: 100})
	if err != nil || len(page.Keys) != 4 || len(page.Skipped) != 1 || page.Skipped[0] != ids[1] {
		t.Fatalf("listing with a corrupt key: %v, %d keys, skipped %v", err, len(page.Keys), page.Skipped)
	}
	if scan, err := s.ScanKeys(ctx, "", 100); err != nil || len(scan.Skipped) != 1 {
		t.Fatalf("scan with a corrupt key: %v %+v", err, scan.Skipped)
	}
	// One key a page, the damaged key just after the first page's: it is
	// reported once, not by both pages, so a revocation counting what it
	// saw counts it once.
	conformance.SkippedOnce(t, s, "acme")
	if _, err := svc.Offboard(ctx, lifecycle.Actor{ID: "op"}, "acme"); err != nil {
		t.Fatalf("offboarding: %v", err)
	}
	for _, id := range []string{ids[0], ids[2]} {
		if k, err := s.GetKey(ctx, id); err != nil || k.Status != store.KeyRevoked {
			t.Errorf("key %s after offboarding: %s %v", id, k.Status, err)
		}
	}
}

// busyCounters answers a plain UpdateItem of a tenant counter item as
// DynamoDB does while a transaction holds the item
// (TransactionConflictException), a number of times per item.
type busyCounters struct {
	dynamo.API
	busy  map[string]int // counter item's pk → conflicts left
	calls int
}

func (b *busyCounters) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	pk := in.Key[dynamo.AttrPK].(*types.AttributeValueMemberS).Value
	if strings.Contains(pk, "#COUNT") {
		b.calls++
		if b.busy[pk] > 0 {
			b.busy[pk]--
			return nil, &types.TransactionConflictException{Message: aws.String("held by a transaction")}
		}
	}
	return b.API.UpdateItem(ctx, in, opts...)
}

// counterStatuses reads the status of every counter item of a tenant.
func counterStatuses(t *testing.T, client dynamo.API, table, tenant string) map[string]int {
	t.Helper()
	out, err := client.Scan(t.Context(), &dynamodb.ScanInput{TableName: aws.String(table), ConsistentRead: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	statuses := map[string]int{}
	for _, it := range out.Items {
		if pk := it[dynamo.AttrPK].(*types.AttributeValueMemberS).Value; strings.HasPrefix(pk, "TENANT#"+tenant+"#COUNT") {
			statuses[it["status"].(*types.AttributeValueMemberS).Value]++
		}
	}
	return statuses
}

// TestOffboardingWaitsOutCreations: offboarding writes each counter's
// status on its own, retrying one that a creation holds; if one stays held
// it answers a conflict and leaves every counter as the tenant is.
func TestOffboardingWaitsOutCreations(t *testing.T) {
	client, table := dynamolocal.NewTable(t)
	s := dynamo.New(client, table)
	for _, id := range []string{"acme", "beta"} {
		apply(t, s, store.Change{Tenant: &store.TenantWrite{Tenant: tenant(id, store.TenantActive)}})
	}
	offboard := func(id string) store.Change {
		tn, err := s.GetTenant(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		tn.Status = store.TenantOffboarded
		return store.Change{Tenant: &store.TenantWrite{Tenant: tn, ExpectedRevision: tn.Revision}}
	}

	busy := &busyCounters{API: client, busy: map[string]int{}}
	for i := range dynamo.CounterShards {
		busy.busy[fmt.Sprintf("TENANT#acme#COUNT#%02d", i)] = 2
	}
	if err := dynamo.New(busy, table).Apply(t.Context(), offboard("acme")); err != nil {
		t.Fatalf("offboarding while every counter is held twice: %v", err)
	}
	if got := counterStatuses(t, client, table, "acme"); got[string(store.TenantOffboarded)] != dynamo.CounterShards {
		t.Fatalf("counter statuses after offboarding: %v", got)
	}
	wantErr := func(err, want error) {
		t.Helper()
		if !errors.Is(err, want) {
			t.Fatalf("error %v, want %v", err, want)
		}
	}
	wantErr(s.Apply(t.Context(), store.Change{Keys: []store.KeyWrite{{Key: key("acme", 1)}}}), store.ErrConflict)

	busy = &busyCounters{API: client, busy: map[string]int{"TENANT#beta#COUNT#07": 1000}}
	wantErr(dynamo.New(busy, table).Apply(t.Context(), offboard("beta")), store.ErrConflict)
	if got := counterStatuses(t, client, table, "beta"); got[string(store.TenantActive)] != dynamo.CounterShards {
		t.Fatalf("counter statuses after a failed offboarding: %v", got)
	}
	if tn, err := s.GetTenant(t.Context(), "beta"); err != nil || tn.Status != store.TenantActive {
		t.Fatalf("tenant after a failed offboarding: %+v, %v", tn, err)
	}
	apply(t, s, store.Change{Keys: []store.KeyWrite{{Key: key("beta", 1)}}})
}
