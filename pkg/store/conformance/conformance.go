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
	"sync"
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

// concurrently runs fn(0..n-1) in n goroutines released at once, to make
// races likely, and returns their errors by index.
func concurrently(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = fn(i)
		}()
	}
	close(start)
	wg.Wait()
	return errs
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
		ID:             id,
		TenantID:       tenant,
		Name:           "key " + id,
		Description:    "for the " + id + " integration",
		Prefix:         "sk",
		Environment:    "live",
		Last4:          "ab" + id[len(id)-2:],
		Scopes:         []string{"invoices:read", "customers:write"},
		Status:         store.KeyActive,
		Hash:           bytes.Repeat([]byte{byte(len(id))}, 32),
		PepperVersion:  1,
		CreatedAt:      now,
		CreatedBy:      "mem_alice",
		UpdatedAt:      now,
		NotBefore:      now.Add(-time.Minute),
		ExpiresAt:      now.Add(90 * 24 * time.Hour),
		AllowedIPs:     []string{"203.0.113.0/24", "2001:db8::/32"},
		AllowedOrigins: []string{"https://app.example.com"},
		RateLimit:      store.RateLimit{RequestsPerMinute: 60, Burst: 10},
		Metadata:       map[string]string{"team": "billing"},
		Notices:        []string{store.NoticeExpiring7d},
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

func testTenantLifecycle(t *testing.T, e *env) {
	got := e.tenant(t, "acme")
	want := store.Tenant{ID: "acme", Name: "Tenant acme", Status: store.TenantActive, CreatedAt: e.clk.Now(), Revision: 1}
	got.CreatedAt = got.CreatedAt.UTC().Round(0)
	wantEqual(t, "tenant", got, want)

	_, err := e.s.GetTenant(e.ctx, "nobody")
	wantErr(t, err, store.ErrNotFound)
	wantErr(t, e.s.Apply(e.ctx, store.Change{Tenant: &store.TenantWrite{Tenant: want}}), store.ErrAlreadyExists)

	off := got
	off.Status, off.OffboardedAt = store.TenantOffboarded, e.clk.Now()
	e.apply(t, store.Change{Tenant: &store.TenantWrite{Tenant: off, ExpectedRevision: 1}})
	got, _ = e.s.GetTenant(e.ctx, "acme")
	if got.Status != store.TenantOffboarded || got.Revision != 2 || !got.OffboardedAt.Equal(off.OffboardedAt) {
		t.Fatalf("after offboard: %+v", got)
	}
	wantErr(t, e.s.Apply(e.ctx, store.Change{Tenant: &store.TenantWrite{Tenant: off, ExpectedRevision: 1}}), store.ErrConflict)
	ghost := store.Tenant{ID: "ghost", Status: store.TenantActive}
	wantErr(t, e.s.Apply(e.ctx, store.Change{Tenant: &store.TenantWrite{Tenant: ghost, ExpectedRevision: 3}}), store.ErrNotFound)
}

func testKeyCreateAndGet(t *testing.T, e *env) {
	e.tenant(t, "acme")
	want := e.key("acme", "k00000000001")
	got := e.createKey(t, want)
	want.Revision = 1
	wantEqual(t, "key round trip", normal(got), normal(want))

	_, err := e.s.GetKey(e.ctx, "k00000000999")
	wantErr(t, err, store.ErrNotFound)

	dup := e.key("acme", "k00000000001")
	dup.Name = "other"
	wantErr(t, e.s.Apply(e.ctx, store.Change{Keys: []store.KeyWrite{{Key: dup}}}), store.ErrAlreadyExists)
	if k := e.getKey(t, "k00000000001"); k.Name != want.Name {
		t.Fatalf("duplicate create overwrote the key: name %q", k.Name)
	}

	// A minimal key: empty optional fields round-trip as empty.
	minimal := store.Key{ID: "k00000000002", TenantID: "acme", Name: "m", Prefix: "sk", Environment: "test",
		Last4: "wxyz", Scopes: []string{"*"}, Status: store.KeyActive, Hash: []byte{1, 2, 3}, PepperVersion: 7,
		CreatedAt: e.clk.Now(), UpdatedAt: e.clk.Now()}
	got = e.createKey(t, minimal)
	minimal.Revision = 1
	wantEqual(t, "minimal key round trip", normal(got), normal(minimal))

	// Returned values are copies: mutating them does not reach the store.
	got.Scopes[0] = "mutated"
	got.Hash[0] = 99
	again := e.getKey(t, "k00000000002")
	if again.Scopes[0] != "*" || again.Hash[0] != 1 {
		t.Fatalf("store shares memory with its callers: %+v", again)
	}

	e.wantKeyCount(t, "acme", 2)
}

// wantKeyCount checks a tenant's KeyCount.
func (e *env) wantKeyCount(t *testing.T, tenant string, want int64) {
	t.Helper()
	if n, err := e.s.KeyCount(e.ctx, tenant); err != nil || n != want {
		t.Fatalf("KeyCount(%s) = %d, %v; want %d", tenant, n, err, want)
	}
}

func testKeyCreateNeedsActiveTenant(t *testing.T, e *env) {
	wantErr(t, e.s.Apply(e.ctx, store.Change{Keys: []store.KeyWrite{{Key: e.key("ghost", "k00000000001")}}}), store.ErrConflict)

	tn := e.tenant(t, "acme")
	tn.Status = store.TenantOffboarded
	e.apply(t, store.Change{Tenant: &store.TenantWrite{Tenant: tn, ExpectedRevision: tn.Revision}})
	wantErr(t, e.s.Apply(e.ctx, store.Change{Keys: []store.KeyWrite{{Key: e.key("acme", "k00000000002")}}}), store.ErrConflict)
	for _, id := range []string{"k00000000001", "k00000000002"} {
		_, err := e.s.GetKey(e.ctx, id)
		wantErr(t, err, store.ErrNotFound)
	}
}

func testKeyUpdate(t *testing.T, e *env) {
	e.tenant(t, "acme")
	orig := e.createKey(t, e.key("acme", "k00000000001"))

	e.clk.Advance(time.Hour)
	upd := orig
	upd.Name = "renamed"
	upd.Description = ""
	upd.Scopes = []string{"invoices:read"}
	upd.Status = store.KeyRevoked
	upd.RevokedAt = e.clk.Now()
	upd.UpdatedAt = e.clk.Now()
	upd.NotBefore = time.Time{}
	upd.ExpiresAt = e.clk.Now().Add(time.Hour)
	upd.AllowedIPs = nil
	upd.AllowedOrigins = []string{"https://a.example", "https://b.example:8443"}
	upd.RateLimit = store.RateLimit{RequestsPerMinute: 600}
	upd.ReplacedBy = "k00000000002"
	upd.Metadata = nil
	upd.Notices = []string{store.NoticeExpiring7d, store.NoticeExpiring1d}
	// Store-managed and immutable fields are ignored on update.
	tampered := upd
	tampered.Hash = []byte("tampered")
	tampered.PepperVersion = 9
	tampered.LastUsedAt = e.clk.Now()
	tampered.Prefix, tampered.Environment, tampered.Last4 = "xx", "test", "0000"
	tampered.CreatedAt, tampered.CreatedBy, tampered.Replaces = time.Time{}, "mallory", "k00000000000"
	e.apply(t, store.Change{Keys: []store.KeyWrite{{Key: tampered, ExpectedRevision: orig.Revision}}})

	got := e.getKey(t, orig.ID)
	upd.Revision = orig.Revision + 1
	wantEqual(t, "updated key", normal(got), normal(upd))
}

func testKeyUpdatePreconditions(t *testing.T, e *env) {
	e.tenant(t, "acme")
	e.tenant(t, "other")
	k := e.createKey(t, e.key("acme", "k00000000001"))

	stale := k
	stale.Name = "first"
	e.apply(t, store.Change{Keys: []store.KeyWrite{{Key: stale, ExpectedRevision: 1}}})
	stale.Name = "second"
	wantErr(t, e.s.Apply(e.ctx, store.Change{Keys: []store.KeyWrite{{Key: stale, ExpectedRevision: 1}}}), store.ErrConflict)

	stolen := k
	stolen.TenantID = "other"
	stolen.Name = "stolen"
	wantErr(t, e.s.Apply(e.ctx, store.Change{Keys: []store.KeyWrite{{Key: stolen, ExpectedRevision: 2}}}), store.ErrNotFound)

	missing := e.key("acme", "k00000000404")
	wantErr(t, e.s.Apply(e.ctx, store.Change{Keys: []store.KeyWrite{{Key: missing, ExpectedRevision: 1}}}), store.ErrNotFound)

	got := e.getKey(t, k.ID)
	if got.Name != "first" || got.TenantID != "acme" || got.Revision != 2 {
		t.Fatalf("failed updates changed the key: %+v", got)
	}
}

func testChangeIsAtomic(t *testing.T, e *env) {
	e.tenant(t, "acme")
	old := e.createKey(t, e.key("acme", "k00000000001"))
	bumped := old
	bumped.Name = "bumped"
	e.apply(t, store.Change{Keys: []store.KeyWrite{{Key: bumped, ExpectedRevision: old.Revision}}})

	// A rotation written against a stale revision: the new key, the old
	// key's update and the audit entries must all fail together.
	rotated := old
	rotated.Status, rotated.ReplacedBy = store.KeyExpiring, "k00000000002"
	newKey := e.key("acme", "k00000000002")
	newKey.Replaces = old.ID
	err := e.s.Apply(e.ctx, store.Change{
		Keys:  []store.KeyWrite{{Key: newKey}, {Key: rotated, ExpectedRevision: old.Revision}},
		Audit: []store.AuditEntry{e.audit("acme", "a1", old.ID), e.audit("acme", "a2", newKey.ID)},
	})
	wantErr(t, err, store.ErrConflict)
	_, err = e.s.GetKey(e.ctx, newKey.ID)
	wantErr(t, err, store.ErrNotFound)
	if got := e.getKey(t, old.ID); got.Status != store.KeyActive || got.Name != "bumped" {
		t.Fatalf("old key changed by a failed change: %+v", got)
	}
	e.settle()
	page, err := e.s.ListAudit(e.ctx, "acme", store.AuditQuery{Limit: 10})
	if err != nil || len(page.Entries) != 0 {
		t.Fatalf("audit after failed change: %v, %+v", err, page.Entries)
	}
	e.wantKeyCount(t, "acme", 1)

	// A taken audit id fails the whole change too.
	e.apply(t, store.Change{Audit: []store.AuditEntry{e.audit("acme", "a1", old.ID)}})
	err = e.s.Apply(e.ctx, store.Change{
		Keys:  []store.KeyWrite{{Key: newKey}},
		Audit: []store.AuditEntry{e.audit("acme", "a1", newKey.ID)},
	})
	wantErr(t, err, store.ErrAlreadyExists)
	_, err = e.s.GetKey(e.ctx, newKey.ID)
	wantErr(t, err, store.ErrNotFound)
}

func testChangeValidation(t *testing.T, e *env) {
	e.tenant(t, "acme")
	if err := e.s.Apply(e.ctx, store.Change{}); err == nil {
		t.Fatal("empty change accepted")
	}

	k := e.key("acme", "k00000000001")
	if err := e.s.Apply(e.ctx, store.Change{Keys: []store.KeyWrite{{Key: k}, {Key: k}}}); err == nil {
		t.Fatal("change writing one key twice accepted")
	}
	a := e.audit("acme", "a1", k.ID)
	if err := e.s.Apply(e.ctx, store.Change{Audit: []store.AuditEntry{a, a}}); err == nil {
		t.Fatal("change writing one audit entry twice accepted")
	}
	// A status no reader would recognise is corrupt data, never stored.
	for _, status := range []store.KeyStatus{"", "revokdd", "REVOKED", "disabled"} {
		bad := k
		bad.Status = status
		wantErr(t, e.s.Apply(e.ctx, store.Change{Keys: []store.KeyWrite{{Key: bad}}}), store.ErrCorrupt)
	}
	// Backends compose item keys from tenant ids with '#'.
	hashed := store.Tenant{ID: "ac#me", Status: store.TenantActive, CreatedAt: e.clk.Now()}
	if err := e.s.Apply(e.ctx, store.Change{Tenant: &store.TenantWrite{Tenant: hashed}}); err == nil {
		t.Fatal("tenant id with '#' accepted")
	}

	// 98 audit entries plus one key create, its tenant counter and its
	// member's counter: 101 items.
	var audit []store.AuditEntry
	for i := range store.MaxChangeItems - 2 {
		audit = append(audit, e.audit("acme", fmt.Sprintf("a%03d", i), k.ID))
	}
	wantErr(t, e.s.Apply(e.ctx, store.Change{Keys: []store.KeyWrite{{Key: k}}, Audit: audit}), store.ErrChangeTooLarge)
	_, err := e.s.GetKey(e.ctx, k.ID)
	wantErr(t, err, store.ErrNotFound)

	// Exactly the limit is fine.
	e.apply(t, store.Change{Keys: []store.KeyWrite{{Key: k}}, Audit: audit[:store.MaxChangeItems-3]})
	e.settle()
	page, err := e.s.ListAudit(e.ctx, "acme", store.AuditQuery{Limit: store.MaxPageSize})
	if err != nil || len(page.Entries) != store.MaxChangeItems-3 {
		t.Fatalf("audit entries after full change: %v, %d", err, len(page.Entries))
	}

	// A tenant write is the tenant and its key counters.
	other := store.Tenant{ID: "other", Name: "Other", Status: store.TenantActive, CreatedAt: e.clk.Now()}
	tooMany := audit[:store.MaxChangeItems-store.TenantWriteItems+1]
	for i := range tooMany {
		tooMany[i].TenantID = "other"
	}
	wantErr(t, e.s.Apply(e.ctx, store.Change{Tenant: &store.TenantWrite{Tenant: other}, Audit: tooMany}), store.ErrChangeTooLarge)
	e.apply(t, store.Change{Tenant: &store.TenantWrite{Tenant: other}, Audit: tooMany[1:]})
}

func testTenantWriteWithKeys(t *testing.T, e *env) {
	// Creating a tenant and its first key in one change, as onboarding does.
	tn := store.Tenant{ID: "acme", Name: "Acme", Status: store.TenantActive, CreatedAt: e.clk.Now()}
	e.apply(t, store.Change{
		Tenant: &store.TenantWrite{Tenant: tn},
		Keys:   []store.KeyWrite{{Key: e.key("acme", "k00000000001")}},
		Audit:  []store.AuditEntry{e.audit("acme", "a1", "k00000000001")},
	})
	got, err := e.s.GetTenant(e.ctx, "acme")
	if err != nil || got.Revision != 1 {
		t.Fatalf("tenant after onboarding: %v %+v", err, got)
	}
	e.wantKeyCount(t, "acme", 1)
	e.createKey(t, e.key("acme", "k00000000002"))

	// A tenant update keeps the stored count and adds the keys the same
	// change creates.
	got.Name = "Acme Inc"
	e.apply(t, store.Change{
		Tenant: &store.TenantWrite{Tenant: got, ExpectedRevision: got.Revision},
		Keys:   []store.KeyWrite{{Key: e.key("acme", "k00000000003")}},
	})
	got, _ = e.s.GetTenant(e.ctx, "acme")
	if got.Name != "Acme Inc" || got.Revision != 2 {
		t.Fatalf("tenant after update with a key: %+v", got)
	}
	e.wantKeyCount(t, "acme", 3)

	// Offboarding in the same change as a create: the create must fail.
	got.Status = store.TenantOffboarded
	err = e.s.Apply(e.ctx, store.Change{
		Tenant: &store.TenantWrite{Tenant: got, ExpectedRevision: got.Revision},
		Keys:   []store.KeyWrite{{Key: e.key("acme", "k00000000004")}},
	})
	wantErr(t, err, store.ErrConflict)
	if again, _ := e.s.GetTenant(e.ctx, "acme"); again.Status != store.TenantActive {
		t.Fatalf("failed change offboarded the tenant: %+v", again)
	}

	// A tenant created offboarded cannot receive its first key either.
	off := store.Tenant{ID: "gone", Status: store.TenantOffboarded, CreatedAt: e.clk.Now()}
	err = e.s.Apply(e.ctx, store.Change{Tenant: &store.TenantWrite{Tenant: off}, Keys: []store.KeyWrite{{Key: e.key("gone", "k00000000005")}}})
	wantErr(t, err, store.ErrConflict)
	_, err = e.s.GetTenant(e.ctx, "gone")
	wantErr(t, err, store.ErrNotFound)
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

func testListKeysPagination(t *testing.T, e *env) {
	e.tenant(t, "acme")
	keys := e.createKeys(t, "acme", 23, nil)
	want := reversedIDs(keys) // newest first
	for _, limit := range []int{1, 5, 23, 100} {
		wantEqual(t, fmt.Sprintf("ids with limit %d", limit), e.listAll(t, "acme", store.KeyQuery{Limit: limit}), want)
	}
	// An exact multiple of the limit ends without an empty trailing page.
	e.settle()
	page, err := e.s.ListKeys(e.ctx, "acme", store.KeyQuery{Limit: 23})
	if err != nil || len(page.Keys) != 23 || page.NextCursor != "" {
		t.Fatalf("single full page: %v, %d keys, cursor %q", err, len(page.Keys), page.NextCursor)
	}
	// Keys created in the same instant are ordered by id.
	e.tenant(t, "same")
	at := e.clk.Now()
	for _, id := range []string{"b00000000002", "b00000000001", "b00000000003"} {
		k := e.key("same", id)
		k.CreatedAt = at
		e.createKey(t, k)
	}
	wantEqual(t, "same-instant order", e.listAll(t, "same", store.KeyQuery{Limit: 2}), []string{"b00000000003", "b00000000002", "b00000000001"})

	for _, limit := range []int{0, -1, store.MaxPageSize + 1} {
		e.settle()
		if _, err := e.s.ListKeys(e.ctx, "acme", store.KeyQuery{Limit: limit}); err == nil {
			t.Fatalf("limit %d accepted", limit)
		}
	}
	e.settle()
	page, err = e.s.ListKeys(e.ctx, "empty", store.KeyQuery{Limit: 10})
	if err != nil || len(page.Keys) != 0 || page.NextCursor != "" {
		t.Fatalf("listing a tenant without keys: %v %+v", err, page)
	}
}

func testListKeysFilters(t *testing.T, e *env) {
	e.tenant(t, "acme")
	keys := e.createKeys(t, "acme", 30, func(i int, k *store.Key) {
		if i%3 == 0 {
			k.Environment = "test"
		}
		if i%5 == 0 {
			k.CreatedBy = "mem_bob"
		}
	})
	// Revoke a few so status filters have something to separate.
	for i, k := range keys {
		if i%4 == 0 {
			k.Status = store.KeyRevoked
			e.apply(t, store.Change{Keys: []store.KeyWrite{{Key: k, ExpectedRevision: k.Revision}}})
			keys[i].Status = store.KeyRevoked
		}
	}
	match := func(f func(k store.Key) bool) []string {
		var ids []string
		for i := len(keys) - 1; i >= 0; i-- {
			if f(keys[i]) {
				ids = append(ids, keys[i].ID)
			}
		}
		return ids
	}
	cases := []struct {
		q    store.KeyQuery
		want []string
	}{
		{store.KeyQuery{Environment: "test"}, match(func(k store.Key) bool { return k.Environment == "test" })},
		{store.KeyQuery{CreatedBy: "mem_bob"}, match(func(k store.Key) bool { return k.CreatedBy == "mem_bob" })},
		{store.KeyQuery{Status: store.KeyRevoked}, match(func(k store.Key) bool { return k.Status == store.KeyRevoked })},
		{store.KeyQuery{Status: store.KeyActive, Environment: "live"}, match(func(k store.Key) bool {
			return k.Status == store.KeyActive && k.Environment == "live"
		})},
		{store.KeyQuery{CreatedBy: "mem_nobody"}, nil},
	}
	for _, c := range cases {
		for _, limit := range []int{1, 2, 7, 100} {
			q := c.q
			q.Limit = limit
			wantEqual(t, fmt.Sprintf("filter %+v", q), e.listAll(t, "acme", q), c.want)
		}
	}
}

func testListKeysCursor(t *testing.T, e *env) {
	e.tenant(t, "acme")
	e.createKeys(t, "acme", 3, nil)
	for _, bad := range []string{"%%%", "bm90LWEtY3Vyc29y", store.EncodeCursor("2026-03-01T12:00:00.000000000Z#a'b"), store.EncodeCursor("yesterday#k1")} {
		e.settle()
		_, err := e.s.ListKeys(e.ctx, "acme", store.KeyQuery{Limit: 1, Cursor: bad})
		wantErr(t, err, store.ErrInvalidCursor)
	}
	// A cursor is a position, not a capability: another tenant's cursor
	// pages through the caller's own keys only.
	e.tenant(t, "evil")
	e.settle()
	page, err := e.s.ListKeys(e.ctx, "acme", store.KeyQuery{Limit: 1})
	if err != nil || page.NextCursor == "" {
		t.Fatalf("first page: %v %+v", err, page)
	}
	e.settle()
	other, err := e.s.ListKeys(e.ctx, "evil", store.KeyQuery{Limit: 10, Cursor: page.NextCursor})
	if err != nil || len(other.Keys) != 0 {
		t.Fatalf("cursor crossed tenants: %v %+v", err, other.Keys)
	}
}

func testAudit(t *testing.T, e *env) {
	e.tenant(t, "acme")
	var want []store.AuditEntry
	for i := range 12 {
		keyID := "k00000000001"
		if i%2 == 1 {
			keyID = "k00000000002"
		}
		a := e.audit("acme", fmt.Sprintf("a%02d", i), keyID)
		if i == 11 {
			a.KeyID, a.Details = "", nil // a tenant-level entry
		}
		e.apply(t, store.Change{Audit: []store.AuditEntry{a}})
		want = append([]store.AuditEntry{a}, want...)
		e.clk.Advance(time.Second)
	}
	var got []store.AuditEntry
	q := store.AuditQuery{Limit: 5}
	for {
		e.settle()
		page, err := e.s.ListAudit(e.ctx, "acme", q)
		if err != nil {
			t.Fatalf("ListAudit: %v", err)
		}
		for _, a := range page.Entries {
			got = append(got, normalAudit(a))
		}
		if page.NextCursor == "" {
			break
		}
		q.Cursor = page.NextCursor
	}
	for i := range want {
		want[i] = normalAudit(want[i])
	}
	wantEqual(t, "audit log", got, want)

	var forKey []string
	q = store.AuditQuery{KeyID: "k00000000002", Limit: 2}
	for {
		e.settle()
		page, err := e.s.ListAudit(e.ctx, "acme", q)
		if err != nil {
			t.Fatalf("ListAudit by key: %v", err)
		}
		for _, a := range page.Entries {
			forKey = append(forKey, a.ID)
		}
		if page.NextCursor == "" {
			break
		}
		q.Cursor = page.NextCursor
	}
	wantEqual(t, "audit of one key", forKey, []string{"a09", "a07", "a05", "a03", "a01"})

	e.settle()
	_, err := e.s.ListAudit(e.ctx, "acme", store.AuditQuery{Limit: 1, Cursor: "!"})
	wantErr(t, err, store.ErrInvalidCursor)
}

// testAuditEnvironment: a listing for one environment holds the entries
// about its keys and those about no key, also entries written without an
// environment (placed by their key's display form).
func testAuditEnvironment(t *testing.T, e *env) {
	e.tenant(t, "acme")
	for _, edit := range []func() store.AuditEntry{
		func() store.AuditEntry {
			a := e.audit("acme", "live1", "k00000000001")
			a.Environment = "live"
			return a
		},
		func() store.AuditEntry {
			a := e.audit("acme", "test1", "k00000000002")
			a.Environment, a.KeyDisplay = "test", "sk_test_…abcd"
			return a
		},
		func() store.AuditEntry {
			a := e.audit("acme", "tenant", "")
			a.KeyDisplay = ""
			return a
		},
		func() store.AuditEntry {
			a := e.audit("acme", "legacy", "k00000000003")
			a.KeyDisplay = "sk_test_…wxyz" // written before entries carried their environment
			return a
		},
	} {
		e.apply(t, store.Change{Audit: []store.AuditEntry{edit()}})
		e.clk.Advance(time.Second)
	}
	for env, want := range map[string][]string{
		"live": {"tenant", "live1"},
		"test": {"legacy", "tenant", "test1"},
		"":     {"legacy", "tenant", "test1", "live1"},
	} {
		var got []string
		q := store.AuditQuery{Environment: env, Limit: 1}
		for {
			e.settle()
			page, err := e.s.ListAudit(e.ctx, "acme", q)
			if err != nil {
				t.Fatalf("ListAudit(%q): %v", env, err)
			}
			for _, a := range page.Entries {
				got = append(got, a.ID)
			}
			if page.NextCursor == "" {
				break
			}
			q.Cursor = page.NextCursor
		}
		wantEqual(t, "audit of environment "+env, got, want)
	}
	e.settle()
	page, err := e.s.ListAudit(e.ctx, "acme", store.AuditQuery{Environment: "test", KeyID: "k00000000002", Limit: 10})
	if err != nil || len(page.Entries) != 1 || page.Entries[0].Environment != "test" {
		t.Fatalf("audit of a test key in the test environment: %v, %+v", err, page.Entries)
	}
}

func testAuditTTL(t *testing.T, e *env) {
	e.tenant(t, "acme")
	kept := e.audit("acme", "kept", "k00000000001")
	kept.ExpiresAt = e.clk.Now().Add(48 * time.Hour)
	forever := e.audit("acme", "forever", "k00000000001")
	soon := e.audit("acme", "soon", "k00000000001")
	soon.ExpiresAt = e.clk.Now().Add(time.Hour)
	gone := e.audit("acme", "gone", "k00000000001")
	gone.ExpiresAt = e.clk.Now().Add(-time.Second)
	e.apply(t, store.Change{Audit: []store.AuditEntry{kept, forever, soon, gone}})

	ids := func(q store.AuditQuery) []string {
		e.settle()
		page, err := e.s.ListAudit(e.ctx, "acme", q)
		if err != nil {
			t.Fatalf("ListAudit: %v", err)
		}
		var ids []string
		for _, a := range page.Entries {
			ids = append(ids, a.ID)
		}
		return ids
	}
	// Same time for all: ordered by id descending.
	wantEqual(t, "live entries", ids(store.AuditQuery{Limit: 10}), []string{"soon", "kept", "forever"})
	e.clk.Advance(2 * time.Hour)
	wantEqual(t, "after an hour", ids(store.AuditQuery{Limit: 10}), []string{"kept", "forever"})
	wantEqual(t, "by key after an hour", ids(store.AuditQuery{KeyID: "k00000000001", Limit: 10}), []string{"kept", "forever"})
	// An expired id is free again.
	gone.ExpiresAt = time.Time{}
	e.apply(t, store.Change{Audit: []store.AuditEntry{gone}})
	wantEqual(t, "reused id", ids(store.AuditQuery{Limit: 10}), []string{"kept", "gone", "forever"})
}

func testTouchKey(t *testing.T, e *env) {
	e.tenant(t, "acme")
	k := e.createKey(t, e.key("acme", "k00000000001"))
	now := e.clk.Now()
	wrote, err := e.s.TouchKey(e.ctx, k.ID, now, 5*time.Minute)
	if err != nil || !wrote {
		t.Fatalf("first touch: %v %v", wrote, err)
	}
	wrote, err = e.s.TouchKey(e.ctx, k.ID, now.Add(4*time.Minute), 5*time.Minute)
	if err != nil || wrote {
		t.Fatalf("touch within the interval: %v %v", wrote, err)
	}
	wrote, err = e.s.TouchKey(e.ctx, k.ID, now.Add(6*time.Minute), 5*time.Minute)
	if err != nil || !wrote {
		t.Fatalf("touch after the interval: %v %v", wrote, err)
	}
	got := e.getKey(t, k.ID)
	if !got.LastUsedAt.Equal(now.Add(6*time.Minute)) || got.Revision != k.Revision {
		t.Fatalf("after touches: last used %v revision %d", got.LastUsedAt, got.Revision)
	}
	// An update does not roll LastUsedAt back.
	got.Name = "renamed"
	got.LastUsedAt = time.Time{}
	e.apply(t, store.Change{Keys: []store.KeyWrite{{Key: got, ExpectedRevision: got.Revision}}})
	if again := e.getKey(t, k.ID); !again.LastUsedAt.Equal(now.Add(6 * time.Minute)) {
		t.Fatalf("update reset LastUsedAt to %v", again.LastUsedAt)
	}
	_, err = e.s.TouchKey(e.ctx, "k00000000404", now, time.Minute)
	wantErr(t, err, store.ErrNotFound)
}

func testRehashKey(t *testing.T, e *env) {
	e.tenant(t, "acme")
	k := e.createKey(t, e.key("acme", "k00000000001"))
	newHash := bytes.Repeat([]byte{0xAB}, 32)
	if err := e.s.RehashKey(e.ctx, k.ID, newHash, 3); err != nil {
		t.Fatalf("RehashKey: %v", err)
	}
	got := e.getKey(t, k.ID)
	if !bytes.Equal(got.Hash, newHash) || got.PepperVersion != 3 || got.Revision != k.Revision {
		t.Fatalf("after rehash: %+v", got)
	}
	// A second process racing with the first loses cleanly, and one whose
	// view of the peppers is stale cannot move the key back.
	wantErr(t, e.s.RehashKey(e.ctx, k.ID, []byte("other"), 3), store.ErrConflict)
	wantErr(t, e.s.RehashKey(e.ctx, k.ID, []byte("older"), 2), store.ErrConflict)
	if got := e.getKey(t, k.ID); !bytes.Equal(got.Hash, newHash) || got.PepperVersion != 3 {
		t.Fatalf("a stale rehash moved the key to version %d", got.PepperVersion)
	}
	wantErr(t, e.s.RehashKey(e.ctx, "k00000000404", newHash, 3), store.ErrNotFound)
	// An update with the pre-rehash copy keeps the new hash.
	k.Name = "renamed"
	e.apply(t, store.Change{Keys: []store.KeyWrite{{Key: k, ExpectedRevision: k.Revision}}})
	if got := e.getKey(t, k.ID); !bytes.Equal(got.Hash, newHash) || got.PepperVersion != 3 {
		t.Fatalf("update rolled the hash back: version %d", got.PepperVersion)
	}
}

func testPeppers(t *testing.T, e *env) {
	peppers, err := e.s.ListPeppers(e.ctx)
	if err != nil || len(peppers) != 0 {
		t.Fatalf("fresh store peppers: %v %v", err, peppers)
	}
	var want []store.Pepper
	for _, v := range []int{2, 1, 10} {
		p := store.Pepper{Version: v, Ciphertext: []byte{byte(v), 0, 1}, KeyID: "arn:aws:kms:eu-west-1:111122223333:key/abc", CreatedAt: e.clk.Now()}
		if err := e.s.CreatePepper(e.ctx, p); err != nil {
			t.Fatalf("CreatePepper(%d): %v", v, err)
		}
		e.clk.Advance(time.Minute)
		want = append(want, p)
	}
	want[0], want[1] = want[1], want[0]
	wantErr(t, e.s.CreatePepper(e.ctx, store.Pepper{Version: 2, Ciphertext: []byte("x"), CreatedAt: e.clk.Now()}), store.ErrAlreadyExists)
	got, err := e.s.ListPeppers(e.ctx)
	if err != nil {
		t.Fatalf("ListPeppers: %v", err)
	}
	for i := range got {
		got[i].CreatedAt = got[i].CreatedAt.UTC().Round(0)
	}
	wantEqual(t, "peppers oldest first", got, want)
}

func testIdempotency(t *testing.T, e *env) {
	r := store.Idempotency{TenantID: "acme", Key: "retry-1", RequestHash: "h1", CreatedAt: e.clk.Now(), ExpiresAt: e.clk.Now().Add(24 * time.Hour)}
	if err := e.s.PutIdempotency(e.ctx, r); err != nil {
		t.Fatalf("PutIdempotency: %v", err)
	}
	wantErr(t, e.s.PutIdempotency(e.ctx, r), store.ErrAlreadyExists)
	got, err := e.s.GetIdempotency(e.ctx, "acme", "retry-1")
	if err != nil || got.Done || got.RequestHash != "h1" {
		t.Fatalf("GetIdempotency: %v %+v", err, got)
	}
	_, err = e.s.GetIdempotency(e.ctx, "other", "retry-1")
	wantErr(t, err, store.ErrNotFound)

	bad := r
	bad.RequestHash = "h2"
	bad.StatusCode, bad.Body = 201, []byte(`{}`)
	wantErr(t, e.s.CompleteIdempotency(e.ctx, bad), store.ErrConflict)
	// Another claim of the same request (one that took over an abandoned
	// record) is not this one.
	later := r
	later.CreatedAt = r.CreatedAt.Add(time.Minute)
	later.StatusCode, later.Body = 201, []byte(`{}`)
	wantErr(t, e.s.CompleteIdempotency(e.ctx, later), store.ErrConflict)

	done := r
	done.StatusCode, done.Body = 201, []byte(`{"key":{"id":"key_x"}}`)
	if err := e.s.CompleteIdempotency(e.ctx, done); err != nil {
		t.Fatalf("CompleteIdempotency: %v", err)
	}
	wantErr(t, e.s.CompleteIdempotency(e.ctx, done), store.ErrConflict)
	got, err = e.s.GetIdempotency(e.ctx, "acme", "retry-1")
	if err != nil || !got.Done || got.StatusCode != 201 || string(got.Body) != string(done.Body) {
		t.Fatalf("completed record: %v %+v", err, got)
	}
	wantErr(t, e.s.CompleteIdempotency(e.ctx, store.Idempotency{TenantID: "acme", Key: "never", RequestHash: "h"}), store.ErrNotFound)

	// A finished request's record is never removed: its answer is
	// replayed, its effect never repeated.
	wantErr(t, e.s.DeleteIdempotency(e.ctx, r), store.ErrConflict)
	if got, err := e.s.GetIdempotency(e.ctx, "acme", "retry-1"); err != nil || !got.Done {
		t.Fatalf("deleting a done record removed it: %v %+v", err, got)
	}

	// Only the record the caller holds is removed: a newer claim of the
	// same key (another CreatedAt or request) stays.
	r = store.Idempotency{TenantID: "acme", Key: "retry-2", RequestHash: "h1", CreatedAt: e.clk.Now(), ExpiresAt: e.clk.Now().Add(24 * time.Hour)}
	if err := e.s.PutIdempotency(e.ctx, r); err != nil {
		t.Fatalf("PutIdempotency: %v", err)
	}
	other := r
	other.CreatedAt = r.CreatedAt.Add(time.Second)
	wantErr(t, e.s.DeleteIdempotency(e.ctx, other), store.ErrConflict)
	other = r
	other.RequestHash = "h9"
	wantErr(t, e.s.DeleteIdempotency(e.ctx, other), store.ErrConflict)
	if _, err := e.s.GetIdempotency(e.ctx, "acme", "retry-2"); err != nil {
		t.Fatalf("a refused delete removed the record: %v", err)
	}
	if err := e.s.DeleteIdempotency(e.ctx, r); err != nil {
		t.Fatalf("DeleteIdempotency: %v", err)
	}
	if err := e.s.DeleteIdempotency(e.ctx, r); err != nil {
		t.Fatalf("DeleteIdempotency of a missing record: %v", err)
	}
	_, err = e.s.GetIdempotency(e.ctx, "acme", "retry-2")
	wantErr(t, err, store.ErrNotFound)
	if err := e.s.PutIdempotency(e.ctx, r); err != nil {
		t.Fatalf("PutIdempotency after delete: %v", err)
	}
}

// testIdempotentChange: a change completes the record of the request
// making it in its own transaction, or fails whole: a retry finds the
// answer, or no effect.
func testIdempotentChange(t *testing.T, e *env) {
	e.tenant(t, "acme")
	claim := store.Idempotency{TenantID: "acme", Key: "create-1", RequestHash: "h1", CreatedAt: e.clk.Now(), ExpiresAt: e.clk.Now().Add(24 * time.Hour)}
	if err := e.s.PutIdempotency(e.ctx, claim); err != nil {
		t.Fatal(err)
	}
	answer := func(r store.Idempotency) *store.Idempotency {
		r.Done, r.StatusCode, r.Body = true, 201, []byte(`{"key":{"id":"key_k00000000001"}}`)
		return &r
	}
	created := func(id string) bool {
		_, err := e.s.GetKey(e.ctx, id)
		return err == nil
	}
	// Not the claim held: another CreatedAt (taken over), another request,
	// no record (released or expired), another key.
	for name, r := range map[string]store.Idempotency{
		"taken over":    func() store.Idempotency { x := claim; x.CreatedAt = x.CreatedAt.Add(time.Second); return x }(),
		"other request": func() store.Idempotency { x := claim; x.RequestHash = "h2"; return x }(),
		"no record":     func() store.Idempotency { x := claim; x.Key = "never-claimed"; return x }(),
	} {
		k := e.key("acme", "k00000000009")
		err := e.s.Apply(e.ctx, store.Change{Keys: []store.KeyWrite{{Key: k}}, Audit: []store.AuditEntry{e.audit("acme", "a-"+name[:2], k.ID)}, Idempotency: answer(r)})
		wantErr(t, err, store.ErrConflict)
		if created(k.ID) {
			t.Fatalf("%s: the change was written without its record", name)
		}
	}
	k := e.key("acme", "k00000000001")
	e.apply(t, store.Change{Keys: []store.KeyWrite{{Key: k}}, Audit: []store.AuditEntry{e.audit("acme", "a1", k.ID)}, Idempotency: answer(claim)})
	got, err := e.s.GetIdempotency(e.ctx, "acme", "create-1")
	if err != nil || !got.Done || got.StatusCode != 201 || string(got.Body) != `{"key":{"id":"key_k00000000001"}}` || !created(k.ID) {
		t.Fatalf("completed by the change: %v %+v, key written %v", err, got, created(k.ID))
	}
	// A done record completes no second change, and is not released.
	again := e.key("acme", "k00000000002")
	wantErr(t, e.s.Apply(e.ctx, store.Change{Keys: []store.KeyWrite{{Key: again}}, Idempotency: answer(claim)}), store.ErrConflict)
	wantErr(t, e.s.DeleteIdempotency(e.ctx, claim), store.ErrConflict)
	if created(again.ID) {
		t.Fatal("a done record completed a second change")
	}
	// An expired claim completes nothing.
	late := store.Idempotency{TenantID: "acme", Key: "late", RequestHash: "h", CreatedAt: e.clk.Now(), ExpiresAt: e.clk.Now().Add(time.Minute)}
	if err := e.s.PutIdempotency(e.ctx, late); err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(time.Minute)
	wantErr(t, e.s.Apply(e.ctx, store.Change{Keys: []store.KeyWrite{{Key: again}}, Idempotency: answer(late)}), store.ErrConflict)
	if created(again.ID) {
		t.Fatal("an expired claim completed a change")
	}
}

func testIdempotencyTTL(t *testing.T, e *env) {
	r := store.Idempotency{TenantID: "acme", Key: "k", RequestHash: "h1", CreatedAt: e.clk.Now(), ExpiresAt: e.clk.Now().Add(time.Hour)}
	if err := e.s.PutIdempotency(e.ctx, r); err != nil {
		t.Fatalf("PutIdempotency: %v", err)
	}
	e.clk.Advance(time.Hour)
	_, err := e.s.GetIdempotency(e.ctx, "acme", "k")
	wantErr(t, err, store.ErrNotFound)
	wantErr(t, e.s.CompleteIdempotency(e.ctx, r), store.ErrNotFound)
	// An expired record no longer blocks its key.
	r.RequestHash, r.CreatedAt, r.ExpiresAt = "h2", e.clk.Now(), e.clk.Now().Add(time.Hour)
	if err := e.s.PutIdempotency(e.ctx, r); err != nil {
		t.Fatalf("PutIdempotency over an expired record: %v", err)
	}
	got, err := e.s.GetIdempotency(e.ctx, "acme", "k")
	if err != nil || got.RequestHash != "h2" {
		t.Fatalf("replaced record: %v %+v", err, got)
	}

	// A zero ExpiresAt never expires.
	forever := store.Idempotency{TenantID: "acme", Key: "forever", RequestHash: "h", CreatedAt: e.clk.Now()}
	if err := e.s.PutIdempotency(e.ctx, forever); err != nil {
		t.Fatalf("PutIdempotency without expiry: %v", err)
	}
	e.clk.Advance(10 * 365 * 24 * time.Hour)
	if got, err := e.s.GetIdempotency(e.ctx, "acme", "forever"); err != nil || !got.ExpiresAt.IsZero() {
		t.Fatalf("a record without expiry read back: %v %+v", err, got)
	}
	wantErr(t, e.s.PutIdempotency(e.ctx, forever), store.ErrAlreadyExists)
	forever.Done, forever.StatusCode = true, 200
	if err := e.s.CompleteIdempotency(e.ctx, forever); err != nil {
		t.Fatalf("CompleteIdempotency without expiry: %v", err)
	}
}

// testConcurrentRevokeAndRotate races a revoke against a rotation of the
// same key revision, many times: exactly one may win each race, and the
// loser leaves nothing behind.
func testConcurrentRevokeAndRotate(t *testing.T, e *env) {
	e.tenant(t, "acme")
	for round := range 8 {
		old := e.createKey(t, e.key("acme", fmt.Sprintf("r%011d", round)))
		newKey := e.key("acme", fmt.Sprintf("n%011d", round))
		newKey.Replaces = old.ID
		rotated := old
		rotated.Status, rotated.ReplacedBy = store.KeyExpiring, newKey.ID
		revoked := old
		revoked.Status, revoked.RevokedAt = store.KeyRevoked, e.clk.Now()

		changes := []store.Change{
			{Keys: []store.KeyWrite{{Key: newKey}, {Key: rotated, ExpectedRevision: old.Revision}},
				Audit: []store.AuditEntry{e.audit("acme", fmt.Sprintf("rot%d", round), old.ID)}},
			{Keys: []store.KeyWrite{{Key: revoked, ExpectedRevision: old.Revision}},
				Audit: []store.AuditEntry{e.audit("acme", fmt.Sprintf("rev%d", round), old.ID)}},
		}
		errs := concurrently(len(changes), func(i int) error { return e.s.Apply(e.ctx, changes[i]) })

		rotateWon, revokeWon := errs[0] == nil, errs[1] == nil
		if rotateWon == revokeWon {
			t.Fatalf("round %d: rotate err %v, revoke err %v: want exactly one winner", round, errs[0], errs[1])
		}
		for _, err := range errs {
			if err != nil && !errors.Is(err, store.ErrConflict) {
				t.Fatalf("round %d: loser failed with %v, want ErrConflict", round, err)
			}
		}
		got := e.getKey(t, old.ID)
		_, newErr := e.s.GetKey(e.ctx, newKey.ID)
		if rotateWon {
			if got.Status != store.KeyExpiring || got.ReplacedBy != newKey.ID || newErr != nil {
				t.Fatalf("round %d: rotation won but old=%+v new err=%v", round, got, newErr)
			}
		} else {
			if got.Status != store.KeyRevoked || got.ReplacedBy != "" || !errors.Is(newErr, store.ErrNotFound) {
				t.Fatalf("round %d: revoke won but old=%+v new err=%v", round, got, newErr)
			}
		}
		if got.Revision != old.Revision+1 {
			t.Fatalf("round %d: revision %d, want %d", round, got.Revision, old.Revision+1)
		}
		e.settle()
		page, err := e.s.ListAudit(e.ctx, "acme", store.AuditQuery{KeyID: old.ID, Limit: 10})
		if err != nil || len(page.Entries) != 1 {
			t.Fatalf("round %d: audit entries for the key: %v %+v", round, err, page.Entries)
		}
	}
}

func testConcurrentCreateSameID(t *testing.T, e *env) {
	e.tenant(t, "acme")
	errs := concurrently(6, func(i int) error {
		k := e.key("acme", "k00000000001")
		k.Name = fmt.Sprintf("writer %d", i)
		return e.s.Apply(e.ctx, store.Change{Keys: []store.KeyWrite{{Key: k}}})
	})
	winners := 0
	for _, err := range errs {
		switch {
		case err == nil:
			winners++
		case errors.Is(err, store.ErrAlreadyExists), errors.Is(err, store.ErrConflict):
		default:
			t.Fatalf("concurrent create failed with %v", err)
		}
	}
	if winners != 1 {
		t.Fatalf("%d concurrent creates of one id succeeded, want 1 (%v)", winners, errs)
	}
	e.wantKeyCount(t, "acme", 1)
}

func testConcurrentIdempotency(t *testing.T, e *env) {
	errs := concurrently(6, func(int) error {
		return e.s.PutIdempotency(e.ctx, store.Idempotency{TenantID: "acme", Key: "same", RequestHash: "h",
			CreatedAt: e.clk.Now(), ExpiresAt: e.clk.Now().Add(time.Hour)})
	})
	winners := 0
	for _, err := range errs {
		if err == nil {
			winners++
		} else if !errors.Is(err, store.ErrAlreadyExists) {
			t.Fatalf("concurrent PutIdempotency failed with %v", err)
		}
	}
	if winners != 1 {
		t.Fatalf("%d concurrent PutIdempotency succeeded, want 1", winners)
	}
}

func testTenantIsolation(t *testing.T, e *env) {
	e.tenant(t, "alpha")
	e.tenant(t, "bravo")
	a := e.createKeys(t, "alpha", 4, nil)
	b := e.createKeys(t, "bravo", 3, nil)
	e.apply(t, store.Change{Audit: []store.AuditEntry{e.audit("alpha", "x1", a[0].ID), e.audit("bravo", "x1", b[0].ID)}})

	wantEqual(t, "alpha keys", e.listAll(t, "alpha", store.KeyQuery{Limit: 2}), reversedIDs(a))
	wantEqual(t, "bravo keys", e.listAll(t, "bravo", store.KeyQuery{Limit: 2}), reversedIDs(b))

	// Asking alpha's audit for bravo's key finds nothing.
	e.settle()
	page, err := e.s.ListAudit(e.ctx, "alpha", store.AuditQuery{KeyID: b[0].ID, Limit: 10})
	if err != nil || len(page.Entries) != 0 {
		t.Fatalf("alpha's audit returned bravo's entries: %v %+v", err, page.Entries)
	}
	e.settle()
	page, err = e.s.ListAudit(e.ctx, "bravo", store.AuditQuery{Limit: 10})
	if err != nil || len(page.Entries) != 1 || page.Entries[0].TenantID != "bravo" || page.Entries[0].KeyID != b[0].ID {
		t.Fatalf("bravo's audit: %v %+v", err, page.Entries)
	}

	// Alpha cannot write bravo's key by naming itself as the tenant.
	hijack := b[0]
	hijack.TenantID = "alpha"
	hijack.Scopes = []string{"*"}
	wantErr(t, e.s.Apply(e.ctx, store.Change{Keys: []store.KeyWrite{{Key: hijack, ExpectedRevision: hijack.Revision}}}), store.ErrNotFound)
	if got := e.getKey(t, b[0].ID); got.TenantID != "bravo" || reflect.DeepEqual(got.Scopes, []string{"*"}) {
		t.Fatalf("cross-tenant write landed: %+v", got)
	}

	// Idempotency keys are per tenant.
	records := map[string]store.Idempotency{}
	for _, tenant := range []string{"alpha", "bravo"} {
		r := store.Idempotency{TenantID: tenant, Key: "shared", RequestHash: tenant, CreatedAt: e.clk.Now(), ExpiresAt: e.clk.Now().Add(time.Hour)}
		if err := e.s.PutIdempotency(e.ctx, r); err != nil {
			t.Fatalf("PutIdempotency(%s): %v", tenant, err)
		}
		records[tenant] = r
	}
	if r, err := e.s.GetIdempotency(e.ctx, "bravo", "shared"); err != nil || r.RequestHash != "bravo" {
		t.Fatalf("bravo's idempotency record: %v %+v", err, r)
	}
	if err := e.s.DeleteIdempotency(e.ctx, records["alpha"]); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.GetIdempotency(e.ctx, "bravo", "shared"); err != nil {
		t.Fatalf("deleting alpha's record removed bravo's: %v", err)
	}
}

func testListExpiring(t *testing.T, e *env) {
	e.tenant(t, "alpha")
	e.tenant(t, "bravo")
	now := e.clk.Now()
	var want []string
	// Keys of two tenants expiring at interleaved times, some at the same
	// instant, and keys that must not appear.
	for i := range 14 {
		tenant := []string{"alpha", "bravo"}[i%2]
		k := e.key(tenant, fmt.Sprintf("x%011d", i))
		k.ExpiresAt = now.Add(time.Duration(i/2) * time.Hour)
		e.createKey(t, k)
		want = append(want, k.ID)
	}
	never := e.key("alpha", "n00000000001")
	never.ExpiresAt = time.Time{}
	e.createKey(t, never)
	later := e.key("alpha", "l00000000001")
	later.ExpiresAt = now.Add(100 * time.Hour)
	e.createKey(t, later)
	revoked := e.createKey(t, e.key("bravo", "r00000000001"))
	revoked.Status = store.KeyRevoked
	revoked.ExpiresAt = now
	e.apply(t, store.Change{Keys: []store.KeyWrite{{Key: revoked, ExpectedRevision: revoked.Revision}}})
	// An expiring (rotated) key is still due; an expired one is not.
	rotated := e.createKey(t, e.key("alpha", "o00000000001"))
	rotated.Status, rotated.ExpiresAt = store.KeyExpiring, now.Add(90*time.Minute)
	e.apply(t, store.Change{Keys: []store.KeyWrite{{Key: rotated, ExpectedRevision: rotated.Revision}}})
	gone := e.createKey(t, e.key("alpha", "g00000000001"))
	gone.Status, gone.ExpiresAt = store.KeyExpired, now
	e.apply(t, store.Change{Keys: []store.KeyWrite{{Key: gone, ExpectedRevision: gone.Revision}}})
	// Soonest first, then by id; the rotated key falls between hours 1 and 2.
	want = append(want[:4], append([]string{rotated.ID}, want[4:]...)...)

	list := func(before time.Time, limit int) []string {
		t.Helper()
		var ids []string
		q := store.ExpiryQuery{Before: before, Limit: limit}
		for pages := 0; ; pages++ {
			if pages > 50 {
				t.Fatal("ListExpiring does not end")
			}
			e.settle()
			page, err := e.s.ListExpiring(e.ctx, q)
			if err != nil {
				t.Fatalf("ListExpiring: %v", err)
			}
			for _, k := range page.Keys {
				ids = append(ids, k.ID)
			}
			if q.Cursor = page.NextCursor; q.Cursor == "" {
				return ids
			}
		}
	}
	for _, limit := range []int{1, 3, 100} {
		wantEqual(t, fmt.Sprintf("due within 7h, limit %d", limit), list(now.Add(7*time.Hour), limit), want)
	}
	wantEqual(t, "due now", list(now, 10), want[:2])
	wantEqual(t, "due within 90m", list(now.Add(90*time.Minute), 10), want[:5])
	e.settle()
	if _, err := e.s.ListExpiring(e.ctx, store.ExpiryQuery{Before: now, Limit: 1, Cursor: "%%"}); !errors.Is(err, store.ErrInvalidCursor) {
		t.Fatalf("bad cursor: %v", err)
	}
	e.settle()
	if _, err := e.s.ListExpiring(e.ctx, store.ExpiryQuery{Before: now, Limit: 0}); err == nil {
		t.Fatal("limit 0 accepted")
	}

	// A key leaves the list when it is revoked or its expiry is cleared.
	first := e.getKey(t, want[0])
	first.ExpiresAt = time.Time{}
	e.apply(t, store.Change{Keys: []store.KeyWrite{{Key: first, ExpectedRevision: first.Revision}}})
	second := e.getKey(t, want[1])
	second.Status = store.KeyRevoked
	e.apply(t, store.Change{Keys: []store.KeyWrite{{Key: second, ExpectedRevision: second.Revision}}})
	wantEqual(t, "due now after changes", list(now, 10), []string(nil))
}

// testListingsBeforeSettling lists right after writes, before a lagging
// store's indexes show them: a listing may leave out what was just
// written, but whatever it returns is the key as it is now, once, in
// order, matching the filters; and every key not written since the last
// settle is there.
func testListingsBeforeSettling(t *testing.T, e *env) {
	e.tenant(t, "acme")
	now := e.clk.Now()
	keys := e.createKeys(t, "acme", 12, func(i int, k *store.Key) {
		k.ExpiresAt = now.Add(time.Duration(i+1) * time.Hour)
	})
	e.settle()
	if p, ok := e.s.(Pauser); ok {
		defer p.PauseIndexes()()
	}
	touched := map[string]bool{}
	for i, k := range keys {
		switch i % 4 {
		case 0:
			k.Status, k.RevokedAt = store.KeyRevoked, e.clk.Now()
		case 1:
			k.ExpiresAt = k.ExpiresAt.Add(30 * time.Minute) // a later position in the expiry window
		case 2:
			k.ExpiresAt = k.ExpiresAt.Add(20 * time.Hour) // out of the window
		default:
			continue
		}
		e.apply(t, store.Change{Keys: []store.KeyWrite{{Key: k, ExpectedRevision: k.Revision}}})
		touched[k.ID] = true
	}
	for i := range 3 {
		k := e.createKey(t, e.key("acme", fmt.Sprintf("new%09d", i)))
		touched[k.ID] = true
		e.clk.Advance(time.Millisecond)
	}
	current := map[string]store.Key{}
	for _, k := range keys {
		current[k.ID] = normal(e.getKey(t, k.ID))
	}
	// check pages through a listing at once, each key judged as read now.
	check := func(what string, page func(cursor string) (store.KeyPage, error), want func(k store.Key) bool, before func(a, b store.Key) bool) {
		t.Helper()
		seen := map[string]bool{}
		var last store.Key
		cursor := ""
		for pages := 0; ; pages++ {
			if pages > 50 {
				t.Fatalf("%s: does not end", what)
			}
			p, err := page(cursor)
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			for _, k := range p.Keys {
				now := normal(e.getKey(t, k.ID))
				wantEqual(t, what+": listed key as read now", normal(k), now)
				if seen[k.ID] || !want(k) || (last.ID != "" && !before(last, k)) {
					t.Fatalf("%s: %s listed twice, out of order or against the filter", what, k.ID)
				}
				seen[k.ID], last = true, k
			}
			if cursor = p.NextCursor; cursor == "" {
				break
			}
		}
		for id, k := range current {
			if !touched[id] && want(k) && !seen[id] {
				t.Fatalf("%s: untouched key %s left out", what, id)
			}
		}
	}
	newestFirst := func(a, b store.Key) bool { return store.KeyOrder(a) > store.KeyOrder(b) }
	active := func(k store.Key) bool { return k.Status == store.KeyActive }
	for _, limit := range []int{1, 4, 100} {
		check(fmt.Sprintf("active keys, limit %d", limit), func(cursor string) (store.KeyPage, error) {
			return e.s.ListKeys(e.ctx, "acme", store.KeyQuery{Status: store.KeyActive, Limit: limit, Cursor: cursor})
		}, active, newestFirst)
		check(fmt.Sprintf("keys of mem_alice, limit %d", limit), func(cursor string) (store.KeyPage, error) {
			return e.s.ListKeys(e.ctx, "acme", store.KeyQuery{CreatedBy: "mem_alice", Limit: limit, Cursor: cursor})
		}, func(k store.Key) bool { return k.CreatedBy == "mem_alice" }, newestFirst)
		before := now.Add(12 * time.Hour)
		check(fmt.Sprintf("expiring, limit %d", limit), func(cursor string) (store.KeyPage, error) {
			return e.s.ListExpiring(e.ctx, store.ExpiryQuery{Before: before, Limit: limit, Cursor: cursor})
		}, func(k store.Key) bool {
			return active(k) && !k.ExpiresAt.IsZero() && !k.ExpiresAt.After(before)
		}, func(a, b store.Key) bool { return store.ExpiryOrder(a) < store.ExpiryOrder(b) })
	}
}

func testScanKeys(t *testing.T, e *env) {
	e.tenant(t, "alpha")
	e.tenant(t, "bravo")
	e.createKeys(t, "alpha", 9, nil)
	e.createKeys(t, "bravo", 8, nil)
	// Non-key items must not disturb the scan.
	e.apply(t, store.Change{Audit: []store.AuditEntry{e.audit("alpha", "a1", "")}})
	if err := e.s.CreatePepper(e.ctx, store.Pepper{Version: 1, Ciphertext: []byte("c"), CreatedAt: e.clk.Now()}); err != nil {
		t.Fatal(err)
	}
	for _, limit := range []int{1, 4, 100} {
		ScanEachOnce(t, e.s, limit, 17)
	}
	if _, err := e.s.ScanKeys(e.ctx, "not a cursor!", 5); !errors.Is(err, store.ErrInvalidCursor) {
		t.Fatalf("bad cursor: %v", err)
	}
	if _, err := e.s.ScanKeys(e.ctx, "", 0); err == nil {
		t.Fatal("limit 0 accepted")
	}
}

func testRetirePepper(t *testing.T, e *env) {
	for v := 1; v <= 2; v++ {
		if err := e.s.CreatePepper(e.ctx, store.Pepper{Version: v, Ciphertext: []byte{byte(v)}, CreatedAt: e.clk.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	at := e.clk.Now().Add(time.Hour)
	if err := e.s.RetirePepper(e.ctx, 1, at); err != nil {
		t.Fatalf("RetirePepper: %v", err)
	}
	wantErr(t, e.s.RetirePepper(e.ctx, 1, at), store.ErrConflict)
	wantErr(t, e.s.RetirePepper(e.ctx, 9, at), store.ErrNotFound)
	peppers, err := e.s.ListPeppers(e.ctx)
	if err != nil || len(peppers) != 2 || !peppers[0].RetiredAt.Equal(at) || !peppers[1].RetiredAt.IsZero() {
		t.Fatalf("peppers after retiring v1: %v %+v", err, peppers)
	}
}

func testCheckpoints(t *testing.T, e *env) {
	if c, err := e.s.GetCheckpoint(e.ctx, "sweep"); err != nil || c != "" {
		t.Fatalf("fresh checkpoint: %q %v", c, err)
	}
	for _, c := range []string{"abc", "def"} {
		if err := e.s.PutCheckpoint(e.ctx, "sweep", c); err != nil {
			t.Fatal(err)
		}
		if got, err := e.s.GetCheckpoint(e.ctx, "sweep"); err != nil || got != c {
			t.Fatalf("checkpoint %q, want %q (%v)", got, c, err)
		}
	}
	if got, _ := e.s.GetCheckpoint(e.ctx, "other"); got != "" {
		t.Fatalf("jobs share checkpoints: %q", got)
	}
	if err := e.s.PutCheckpoint(e.ctx, "sweep", ""); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.s.GetCheckpoint(e.ctx, "sweep"); got != "" {
		t.Fatalf("cleared checkpoint: %q", got)
	}
}

// ScanEachOnce pages through every key with ScanKeys and fails unless the
// scan ends, respects limit, and returns each of want keys exactly once.
func ScanEachOnce(t *testing.T, s store.Store, limit, want int) {
	t.Helper()
	seen := map[string]int{}
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 10*want+10 {
			t.Fatalf("limit %d: ScanKeys does not end", limit)
		}
		page, err := s.ScanKeys(t.Context(), cursor, limit)
		if err != nil {
			t.Fatalf("limit %d: ScanKeys: %v", limit, err)
		}
		if len(page.Keys) > limit {
			t.Fatalf("page of %d, limit %d", len(page.Keys), limit)
		}
		for _, k := range page.Keys {
			seen[k.ID]++
		}
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	if len(seen) != want {
		t.Fatalf("limit %d: scanned %d distinct keys, want %d", limit, len(seen), want)
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("limit %d: key %s scanned %d times", limit, id, n)
		}
	}
}
