package lifecycle

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/keyward/keyward/pkg/scope"
	"github.com/keyward/keyward/pkg/store"
)

// Bounds are what a management key may hand out: a key it creates,
// rotates or changes never reaches another environment and is never less
// restricted than the management key itself, as its scopes never exceed
// its own. The zero value bounds nothing (operators, scheduled jobs).
type Bounds struct {
	// Environment is the only environment the caller sees and acts in.
	Environment string
	// ExpiresAt is the caller's own expiry (its rotation overlap's end
	// included); zero for none.
	ExpiresAt time.Time
	// AllowedIPs is the caller's own list; empty for none. (A caller has
	// no allowed origins: a browser key holds no management scope.)
	AllowedIPs []string
	// RateLimit is the caller's own; zero for none.
	RateLimit store.RateLimit
	// Member is the person the caller acts for (the member who made the
	// management key); empty for none. With MemberFixed, every key the
	// caller creates is Member's, from this verified identity, and naming
	// another member as created_by is refused.
	Member      string
	MemberFixed bool
	// OwnKeysOnly limits updates, rotations and revocations to Member's
	// own keys: the developer role.
	OwnKeysOnly bool
}

// BoundsOf are the bounds a management key puts on what it manages. Roles
// map onto its scopes: keys:admin (admin) acts on every key of its
// environment and may create keys for any member, a provider's backend
// acting for a person; a key a member made without keys:admin (developer,
// or viewer with keys:read) acts for that member, and changes only the
// keys that member created.
func BoundsOf(k store.Key) Bounds {
	admin := scope.AnyGrants(k.Scopes, AdminScope)
	return Bounds{Environment: k.Environment, ExpiresAt: k.ExpiresAt, AllowedIPs: k.AllowedIPs, RateLimit: k.RateLimit,
		Member: k.CreatedBy, MemberFixed: !admin, OwnKeysOnly: !admin && k.CreatedBy != ""}
}

// creator is the created_by of a key the caller creates: the caller's
// member unless one is named, which only a caller whose member is not
// fixed may do.
func (b Bounds) creator(named string) (string, error) {
	switch {
	case named == "" || named == b.Member:
		return b.Member, nil
	case b.MemberFixed:
		return "", restricted("created_by", "only a keys:admin key or an operator may name the member a key is created for")
	}
	return named, nil
}

// owns reports whether a caller within b may change k.
func (b Bounds) owns(k store.Key) error {
	if b.OwnKeysOnly && k.CreatedBy != b.Member {
		return restricted("created_by", "this key acts for %s and changes only the keys %s created", b.Member, b.Member)
	}
	return nil
}

// ErrRestricted: the request would make a key less restricted than its
// caller, or act in another environment. A *RestrictionError says which.
var ErrRestricted = errors.New("lifecycle: beyond the caller's restrictions")

// RestrictionError names the field that would exceed the caller's bounds.
type RestrictionError struct {
	Field   string
	Message string
}

func (e *RestrictionError) Error() string { return "lifecycle: " + e.Field + ": " + e.Message }

// Is makes errors.Is(err, ErrRestricted) hold.
func (e *RestrictionError) Is(target error) bool { return target == ErrRestricted }

func restricted(field, format string, args ...any) error {
	return &RestrictionError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// Sees reports whether a caller within b may see k at all: a key of
// another environment is reported as missing, like another tenant's.
func (b Bounds) Sees(k store.Key) bool {
	return b.Environment == "" || k.Environment == b.Environment
}

// admit checks every restriction of a key the caller creates or rotates
// into existence.
func (b Bounds) admit(k store.Key) error {
	if b.Environment != "" && k.Environment != b.Environment {
		return restricted("environment", "a %s key manages %s keys only", b.Environment, b.Environment)
	}
	for _, check := range []func(store.Key, *store.Key) error{b.expiry, b.ips, b.rate} {
		if err := check(k, nil); err != nil {
			return err
		}
	}
	return nil
}

// admitUpdate checks the restrictions an update changes. A change that
// narrows the key's own restriction is always admitted: taking access
// away never exceeds anyone's bounds. An update that grants the key a
// scope it did not cover makes it as powerful as a new key, so the key
// must then lie within the caller's bounds whole, as a new key would.
func (b Bounds) admitUpdate(p UpdateParams, old, k store.Key) error {
	if p.Scopes != nil {
		for _, sc := range k.Scopes {
			if !scope.Covers(old.Scopes, sc) {
				return b.admit(k)
			}
		}
	}
	checks := []struct {
		set   bool
		check func(store.Key, *store.Key) error
	}{
		{p.ExpiresAt != nil, b.expiry},
		{p.AllowedIPs != nil, b.ips},
		{p.RateLimit != nil, b.rate},
	}
	for _, c := range checks {
		if c.set {
			if err := c.check(k, &old); err != nil {
				return err
			}
		}
	}
	return nil
}

// The checks below admit k if it is within b, or, when old is set, no
// less restricted than old was.

func (b Bounds) expiry(k store.Key, old *store.Key) error {
	if b.ExpiresAt.IsZero() {
		return nil
	}
	if !k.ExpiresAt.IsZero() && !k.ExpiresAt.After(b.ExpiresAt) {
		return nil
	}
	if old != nil && !old.ExpiresAt.IsZero() && !k.ExpiresAt.IsZero() && !k.ExpiresAt.After(old.ExpiresAt) {
		return nil
	}
	return restricted("expires_at", "the calling key expires at %s, and a key it creates or changes must expire by then",
		b.ExpiresAt.UTC().Format(time.RFC3339))
}

func (b Bounds) ips(k store.Key, old *store.Key) error {
	if len(b.AllowedIPs) == 0 || prefixesWithin(k.AllowedIPs, b.AllowedIPs) {
		return nil
	}
	if old != nil && len(old.AllowedIPs) > 0 && prefixesWithin(k.AllowedIPs, old.AllowedIPs) {
		return nil
	}
	return restricted("allowed_ips", "the calling key may be used only from %s, and a key it creates or changes must be limited to addresses within them",
		strings.Join(b.AllowedIPs, ", "))
}

func (b Bounds) rate(k store.Key, old *store.Key) error {
	if b.RateLimit.RequestsPerMinute == 0 || rateWithin(k.RateLimit, b.RateLimit) {
		return nil
	}
	if old != nil && rateWithin(k.RateLimit, old.RateLimit) {
		return nil
	}
	return restricted("rate_limit", "the calling key is limited to %d requests per minute (burst %d), and a key it creates or changes may not be allowed more",
		b.RateLimit.RequestsPerMinute, b.RateLimit.Burst)
}

func rateWithin(r, limit store.RateLimit) bool {
	return r.RequestsPerMinute <= limit.RequestsPerMinute && r.Burst <= limit.Burst
}

// prefixesWithin reports whether in is a non-empty list of CIDR blocks
// each inside one of the blocks of of. Both are normalIPs' canonical form.
func prefixesWithin(in, of []string) bool {
	if len(in) == 0 {
		return false
	}
	for _, s := range in {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return false
		}
		inside := false
		for _, o := range of {
			q, err := netip.ParsePrefix(o)
			if err == nil && q.Addr().Is4() == p.Addr().Is4() && q.Bits() <= p.Bits() && q.Contains(p.Addr()) {
				inside = true
				break
			}
		}
		if !inside {
			return false
		}
	}
	return true
}
