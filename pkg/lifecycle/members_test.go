package lifecycle_test

import (
	"errors"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/lifecycle"
	"github.com/keyward/keyward/pkg/store"
)

// managementKey is a live management key with scopes, made by member
// ("" for none), as the actor it would be through the admin API.
func (f *fixture) managementKey(t *testing.T, member string, scopes ...string) lifecycle.Actor {
	t.Helper()
	c, err := f.svc.Create(f.ctx, lifecycle.Actor{ID: "operator"}, "acme", lifecycle.CreateParams{
		Name: "management", Environment: "live", Scopes: scopes, CreatedBy: member})
	if err != nil {
		t.Fatal(err)
	}
	f.tokens = append(f.tokens, c.Token.Plain())
	return lifecycle.Actor{ID: "key_" + c.Key.ID, RequestID: "req", Bounds: lifecycle.BoundsOf(c.Key)}
}

func wantRestricted(t *testing.T, err error, field string) {
	t.Helper()
	var re *lifecycle.RestrictionError
	if !errors.As(err, &re) || re.Field != field {
		t.Fatalf("error %v, want a restriction on %s", err, field)
	}
}

// TestKeysBelongToTheCallersMember: a key made by a member's management
// key is that member's, from the key, never from input; only keys:admin
// and operators name a member.
func TestKeysBelongToTheCallersMember(t *testing.T) {
	run(t, func(t *testing.T, f *fixture) {
		create := func(actor lifecycle.Actor, named string) (store.Key, error) {
			c, err := f.svc.Create(f.ctx, actor, "acme", lifecycle.CreateParams{Name: "k", Environment: "live", Scopes: []string{"invoices:read"}, CreatedBy: named})
			if err == nil {
				f.tokens = append(f.tokens, c.Token.Plain())
			}
			return c.Key, err
		}
		alice := f.managementKey(t, "mem_alice", "keys:write")
		if k, err := create(alice, ""); err != nil || k.CreatedBy != "mem_alice" {
			t.Fatalf("a developer's key: %+v %v", k.CreatedBy, err)
		}
		if k, err := create(alice, "mem_alice"); err != nil || k.CreatedBy != "mem_alice" {
			t.Fatalf("a developer naming herself: %q %v", k.CreatedBy, err)
		}
		_, err := create(alice, "mem_bob")
		wantRestricted(t, err, "created_by")

		backend := f.managementKey(t, "", "keys:write")
		if k, err := create(backend, ""); err != nil || k.CreatedBy != "" {
			t.Fatalf("a memberless keys:write key's key: %q %v", k.CreatedBy, err)
		}
		_, err = create(backend, "mem_bob")
		wantRestricted(t, err, "created_by")

		admin := f.managementKey(t, "mem_carol", "keys:admin")
		if k, err := create(admin, ""); err != nil || k.CreatedBy != "mem_carol" {
			t.Fatalf("an admin's own key: %q %v", k.CreatedBy, err)
		}
		if k, err := create(admin, "mem_bob"); err != nil || k.CreatedBy != "mem_bob" {
			t.Fatalf("an admin creating for bob: %q %v", k.CreatedBy, err)
		}
		if k, err := create(lifecycle.Actor{ID: "operator"}, "mem_bob"); err != nil || k.CreatedBy != "mem_bob" {
			t.Fatalf("an operator creating for bob: %q %v", k.CreatedBy, err)
		}
	})
}

// TestDevelopersChangeOnlyTheirOwnKeys: a member's keys:write key
// updates, rotates and revokes that member's keys and no one else's; an
// admin's changes any.
func TestDevelopersChangeOnlyTheirOwnKeys(t *testing.T) {
	run(t, func(t *testing.T, f *fixture) {
		own := f.create(t, "acme", lifecycle.CreateParams{CreatedBy: "mem_alice"}).Key
		bobs := f.create(t, "acme", lifecycle.CreateParams{CreatedBy: "mem_bob"}).Key
		alice := f.managementKey(t, "mem_alice", "keys:write")
		name := "renamed"

		_, err := f.svc.Update(f.ctx, alice, "acme", bobs.ID, lifecycle.UpdateParams{Name: &name})
		wantRestricted(t, err, "created_by")
		_, _, err = f.svc.Rotate(f.ctx, alice, "acme", bobs.ID, 0)
		wantRestricted(t, err, "created_by")
		_, err = f.svc.Revoke(f.ctx, alice, "acme", bobs.ID)
		wantRestricted(t, err, "created_by")
		if k, err := f.st.GetKey(f.ctx, bobs.ID); err != nil || k.Status != store.KeyActive || k.Name == name {
			t.Fatalf("bob's key after alice's attempts: %+v %v", k, err)
		}

		if _, err := f.svc.Update(f.ctx, alice, "acme", own.ID, lifecycle.UpdateParams{Name: &name}); err != nil {
			t.Fatalf("alice renaming her key: %v", err)
		}
		if _, err := f.svc.Revoke(f.ctx, alice, "acme", own.ID); err != nil {
			t.Fatalf("alice revoking her key: %v", err)
		}

		admin := f.managementKey(t, "mem_carol", "keys:admin")
		if _, err := f.svc.Revoke(f.ctx, admin, "acme", bobs.ID); err != nil {
			t.Fatalf("an admin revoking bob's key: %v", err)
		}
	})
}

// TestRevokeMemberRecordsRemoval: revoking a member's keys as a whole
// records when, and a later removal moves the record forward.
func TestRevokeMemberRecordsRemoval(t *testing.T) {
	run(t, func(t *testing.T, f *fixture) {
		if _, ok, err := lifecycle.RemovedAt(f.ctx, f.st, "acme", "mem_dan"); ok || err != nil {
			t.Fatalf("before any removal: %v %v", ok, err)
		}
		op := lifecycle.Actor{ID: "operator"}
		first := f.clk.Now()
		if _, err := f.svc.RevokeMember(f.ctx, op, "acme", "mem_dan"); err != nil {
			t.Fatal(err)
		}
		f.clk.Advance(time.Hour)
		if _, err := f.svc.RevokeMember(f.ctx, op, "acme", "mem_dan"); err != nil {
			t.Fatal(err)
		}
		at, ok, err := lifecycle.RemovedAt(f.ctx, f.st, "acme", "mem_dan")
		if err != nil || !ok || !at.Equal(first.Add(time.Hour)) {
			t.Fatalf("removed at %v %v %v, want %v", at, ok, err, first.Add(time.Hour))
		}
		if _, ok, _ := lifecycle.RemovedAt(f.ctx, f.st, "other", "mem_dan"); ok {
			t.Fatal("a removal crossed tenants")
		}
	})
}
