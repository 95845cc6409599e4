package lifecycle_test

import (
	"reflect"
	"testing"

	"github.com/keyward/keyward/pkg/lifecycle"
	"github.com/keyward/keyward/pkg/scope"
	"github.com/keyward/keyward/pkg/store"
)

// TestRolesAreManagementKeys: a signed-in member of a role is bounded
// exactly as a management key that member made with the role's scopes.
func TestRolesAreManagementKeys(t *testing.T) {
	for _, r := range lifecycle.Roles {
		key := store.Key{Environment: "live", CreatedBy: "mem_alice", Scopes: r.Scopes()}
		if got, want := lifecycle.MemberBounds("mem_alice", r, "live"), lifecycle.BoundsOf(key); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: member bounds %+v, key bounds %+v", r, got, want)
		}
		if parsed, err := lifecycle.ParseRole(string(r)); err != nil || parsed != r {
			t.Errorf("ParseRole(%q) = %q, %v", r, parsed, err)
		}
	}
	grants := func(r lifecycle.Role, need string) bool { return scope.AnyGrants(r.Scopes(), need) }
	if !grants(lifecycle.RoleViewer, "keys:read") || grants(lifecycle.RoleViewer, "keys:write") ||
		!grants(lifecycle.RoleDeveloper, "keys:read") || grants(lifecycle.RoleDeveloper, "keys:admin") ||
		!grants(lifecycle.RoleAdmin, "keys:write") {
		t.Fatal("role scopes do not nest viewer < developer < admin")
	}
	for _, bad := range []string{"", "Admin", "owner", "admin "} {
		if _, err := lifecycle.ParseRole(bad); err == nil {
			t.Errorf("ParseRole(%q) accepted", bad)
		}
	}
}
