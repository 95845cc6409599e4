package lifecycle

import "fmt"

// Role is what a member of a tenant may do, as the systems keyward is
// measured against name them. Roles map onto the management scopes, so a
// signed-in member and a management key are authorized by one model:
// a member's role grants its scopes and bounds, as a management key's
// scopes and creator do (BoundsOf).
type Role string

const (
	// RoleViewer sees keys and the audit log (keys:read).
	RoleViewer Role = "viewer"
	// RoleDeveloper creates keys, and updates, rotates and revokes the
	// keys they created (keys:write, own keys only).
	RoleDeveloper Role = "developer"
	// RoleAdmin does everything in the tenant, including revoking another
	// member's keys (keys:admin).
	RoleAdmin Role = "admin"
)

// Roles are every role, least power first.
var Roles = []Role{RoleViewer, RoleDeveloper, RoleAdmin}

// ParseRole reads a role claim.
func ParseRole(s string) (Role, error) {
	for _, r := range Roles {
		if string(r) == s {
			return r, nil
		}
	}
	return "", fmt.Errorf("lifecycle: %q is not a role (viewer, developer or admin)", s)
}

// Scopes are the management scopes the role holds; route checks use them
// as they use a management key's.
func (r Role) Scopes() []string {
	switch r {
	case RoleAdmin:
		return []string{AdminScope}
	case RoleDeveloper:
		return []string{"keys:write"}
	case RoleViewer:
		return []string{"keys:read"}
	}
	return nil
}

// MemberBounds are the bounds of a signed-in member acting in one
// environment: the same as those of a management key the member made with
// the role's scopes.
func MemberBounds(member string, r Role, environment string) Bounds {
	admin := r == RoleAdmin
	return Bounds{Environment: environment, Member: member, MemberFixed: !admin, OwnKeysOnly: !admin}
}
