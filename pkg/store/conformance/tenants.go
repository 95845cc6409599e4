package conformance

import (
	"testing"

	"github.com/keyward/keyward/pkg/store"
)

func testTenantLifecycle(t *testing.T, e *env) {
	got := e.tenant(t, "acme")
	want := store.Tenant{ID: "acme", Name: "Tenant acme", Status: store.TenantActive, CreatedAt: e.clk.Now(), Revision: 1}
	got.CreatedAt = got.CreatedAt.UTC().Round(0)
	wantEqual(t, "tenant", got, want)

	_, err := e.s.GetTenant(e.ctx, "nobody")
	wantErr(t, err, store.ErrNotFound)
	wantErr(t, e.s.Apply(e.ctx, store.Change{Tenant: &store.TenantWrite{Tenant: want}}), store.ErrAlreadyExists)

	off := got
	off.Status, off.OffboardedAt, off.Contact = store.TenantOffboarded, e.clk.Now(), "ops@example.com"
	e.apply(t, store.Change{Tenant: &store.TenantWrite{Tenant: off, ExpectedRevision: 1}})
	got, _ = e.s.GetTenant(e.ctx, "acme")
	if got.Status != store.TenantOffboarded || got.Revision != 2 || !got.OffboardedAt.Equal(off.OffboardedAt) || got.Contact != "ops@example.com" {
		t.Fatalf("after offboard: %+v", got)
	}
	wantErr(t, e.s.Apply(e.ctx, store.Change{Tenant: &store.TenantWrite{Tenant: off, ExpectedRevision: 1}}), store.ErrConflict)
	ghost := store.Tenant{ID: "ghost", Status: store.TenantActive}
	wantErr(t, e.s.Apply(e.ctx, store.Change{Tenant: &store.TenantWrite{Tenant: ghost, ExpectedRevision: 3}}), store.ErrNotFound)
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
