// Package conformance is the one test suite every store backend must pass,
// in the manner of Dex's storage conformance tests: the DynamoDB backend
// runs it against DynamoDB Local, the embedded backend in memory and on
// disk. A behaviour that is not tested here is not part of the contract.
package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/clock"
	"github.com/keyward/keyward/pkg/store"
)

// Opener returns a new, empty store whose TTL filtering reads time from now.
type Opener func(t *testing.T, now func() time.Time) store.Store

// Run runs every conformance test against stores made by open.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(t *testing.T, e *env)
	}{
		{"TenantLifecycle", testTenantLifecycle},
		{"KeyCreateAndGet", testKeyCreateAndGet},
		{"KeyCreateNeedsActiveTenant", testKeyCreateNeedsActiveTenant},
		{"KeyUpdate", testKeyUpdate},
		{"KeyUpdatePreconditions", testKeyUpdatePreconditions},
		{"ChangeIsAtomic", testChangeIsAtomic},
		{"ChangeValidation", testChangeValidation},
		{"TenantWriteWithKeys", testTenantWriteWithKeys},
		{"ListKeysPagination", testListKeysPagination},
		{"ListKeysFilters", testListKeysFilters},
		{"ListKeysCursor", testListKeysCursor},
		{"ListKeysExaminesBoundedly", testListKeysExaminesBoundedly},
		{"Audit", testAudit},
		{"AuditEnvironment", testAuditEnvironment},
		{"AuditTTL", testAuditTTL},
		{"TouchKey", testTouchKey},
		{"RehashKey", testRehashKey},
		{"Peppers", testPeppers},
		{"Idempotency", testIdempotency},
		{"IdempotentChange", testIdempotentChange},
		{"IdempotencyTTL", testIdempotencyTTL},
		{"ConcurrentRevokeAndRotate", testConcurrentRevokeAndRotate},
		{"ConcurrentCreateSameID", testConcurrentCreateSameID},
		{"ConcurrentIdempotency", testConcurrentIdempotency},
		{"TenantIsolation", testTenantIsolation},
		{"ListExpiring", testListExpiring},
		{"ListingsBeforeSettling", testListingsBeforeSettling},
		{"ScanKeys", testScanKeys},
		{"RetirePepper", testRetirePepper},
		{"Checkpoints", testCheckpoints},
		{"Usage", testUsage},
		{"UsageConcurrent", testUsageConcurrent},
		{"UsageExpiry", testUsageExpiry},
		{"KeyWatch", testKeyWatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := clock.NewManual(time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC))
			tc.fn(t, &env{s: open(t, c.Now), clk: c, ctx: t.Context()})
		})
	}
}

type env struct {
	s   store.Store
	clk *clock.Manual
	ctx context.Context
}

// Settler is a store whose listings may lag its writes, as DynamoDB's
// indexes do; Settle waits until they show every write made so far. The
// suite lists what it just wrote only after settling: the contract's
// listings are eventually complete, and its other reads immediately.
type Settler interface{ Settle() }

// Pauser is a store whose lagging listings can be held mid-lag:
// PauseIndexes keeps every write from showing in them until resume.
type Pauser interface{ PauseIndexes() (resume func()) }

func (e *env) settle() {
	if s, ok := e.s.(Settler); ok {
		s.Settle()
	}
}

func (e *env) apply(t *testing.T, c store.Change) {
	t.Helper()
	if err := e.s.Apply(e.ctx, c); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

func (e *env) tenant(t *testing.T, id string) store.Tenant {
	t.Helper()
	tn := store.Tenant{ID: id, Name: "Tenant " + id, Status: store.TenantActive, CreatedAt: e.clk.Now()}
	e.apply(t, store.Change{Tenant: &store.TenantWrite{Tenant: tn}})
	got, err := e.s.GetTenant(e.ctx, id)
	if err != nil {
		t.Fatalf("GetTenant(%s): %v", id, err)
	}
	return got
}

// key builds a key with every field set, so round trips check them all.
func (e *env) key(tenant, id string) store.Key {
	now := e.clk.Now()
	return store.Key{
		ID:                 id,
		TenantID:           tenant,
		Name:               "key " + id,
		Description:        "for the " + id + " integration",
		Prefix:             "sk",
		Environment:        "live",
		Last4:              "ab" + id[len(id)-2:],
		Scopes:             []string{"invoices:read", "customers:write"},
		Status:             store.KeyActive,
		Hash:               bytes.Repeat([]byte{byte(len(id))}, 32),
		PepperVersion:      1,
		CreatedAt:          now,
		CreatedBy:          "mem_alice",
		UpdatedAt:          now,
		NotBefore:          now.Add(-time.Minute),
		ExpiresAt:          now.Add(90 * 24 * time.Hour),
		AllowedIPs:         []string{"203.0.113.0/24", "2001:db8::/32"},
		AllowedOrigins:     []string{"https://app.example.com"},
		AllowBrowserWrites: true,
		Contact:            "billing-oncall@example.com",
		RateLimit:          store.RateLimit{RequestsPerMinute: 60, Burst: 10},
		Metadata:           map[string]string{"team": "billing"},
		Notices:            []string{store.NoticeExpiring7d},
	}
}

func (e *env) createKey(t *testing.T, k store.Key) store.Key {
	t.Helper()
	e.apply(t, store.Change{Keys: []store.KeyWrite{{Key: k}}})
	return e.getKey(t, k.ID)
}

func (e *env) getKey(t *testing.T, id string) store.Key {
	t.Helper()
	k, err := e.s.GetKey(e.ctx, id)
	if err != nil {
		t.Fatalf("GetKey(%s): %v", id, err)
	}
	return k
}

// wantKeyCount checks a tenant's KeyCount.
func (e *env) wantKeyCount(t *testing.T, tenant string, want int64) {
	t.Helper()
	if n, err := e.s.KeyCount(e.ctx, tenant); err != nil || n != want {
		t.Fatalf("KeyCount(%s) = %d, %v; want %d", tenant, n, err, want)
	}
}

// createKeys makes n keys in tenant, one per millisecond; ids sort with time.
func (e *env) createKeys(t *testing.T, tenant string, n int, edit func(i int, k *store.Key)) []store.Key {
	t.Helper()
	var keys []store.Key
	for i := range n {
		k := e.key(tenant, fmt.Sprintf("%s%09d", tenant[:3], i))
		if edit != nil {
			edit(i, &k)
		}
		keys = append(keys, e.createKey(t, k))
		e.clk.Advance(time.Millisecond)
	}
	return keys
}

func (e *env) listAll(t *testing.T, tenant string, q store.KeyQuery) []string {
	t.Helper()
	var ids []string
	for pages := 0; ; pages++ {
		if pages > 100 {
			t.Fatal("pagination does not end")
		}
		e.settle()
		page, err := e.s.ListKeys(e.ctx, tenant, q)
		if err != nil {
			t.Fatalf("ListKeys(%+v): %v", q, err)
		}
		if len(page.Keys) > q.Limit {
			t.Fatalf("page of %d keys, limit %d", len(page.Keys), q.Limit)
		}
		for _, k := range page.Keys {
			if k.TenantID != tenant {
				t.Fatalf("listing %s returned key of %s", tenant, k.TenantID)
			}
			ids = append(ids, k.ID)
		}
		if page.NextCursor == "" {
			return ids
		}
		q.Cursor = page.NextCursor
	}
}

func reversedIDs(keys []store.Key) []string {
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[len(keys)-1-i] = k.ID
	}
	return ids
}

func (e *env) audit(tenant, id, keyID string) store.AuditEntry {
	return store.AuditEntry{
		TenantID: tenant, ID: id, Time: e.clk.Now(), Actor: "key_admin0000001",
		Action: "key.updated", KeyID: keyID, KeyDisplay: "sk_live_…" + id[len(id)-min(len(id), 4):], RequestID: "req-" + id,
		Details: map[string]string{"field": "name"},
	}
}

func wantErr(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error = %v, want %v", err, want)
	}
}

func wantEqual(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got %#v\nwant %#v", what, got, want)
	}
}

// normal makes times comparable with DeepEqual (UTC, no monotonic reading)
// and treats nil and empty collections alike: backends may return either.
func normal(k store.Key) store.Key {
	for _, tp := range []*time.Time{&k.CreatedAt, &k.UpdatedAt, &k.NotBefore, &k.ExpiresAt, &k.RevokedAt, &k.LastUsedAt} {
		if !tp.IsZero() {
			*tp = tp.UTC().Round(0)
		}
	}
	if len(k.Scopes) == 0 {
		k.Scopes = nil
	}
	if len(k.AllowedIPs) == 0 {
		k.AllowedIPs = nil
	}
	if len(k.AllowedOrigins) == 0 {
		k.AllowedOrigins = nil
	}
	if len(k.Metadata) == 0 {
		k.Metadata = nil
	}
	if len(k.Hash) == 0 {
		k.Hash = nil
	}
	if len(k.Notices) == 0 {
		k.Notices = nil
	}
	return k
}

func normalAudit(a store.AuditEntry) store.AuditEntry {
	a.Time = a.Time.UTC().Round(0)
	if !a.ExpiresAt.IsZero() {
		a.ExpiresAt = a.ExpiresAt.UTC().Round(0)
	}
	if len(a.Details) == 0 {
		a.Details = nil
	}
	return a
}
