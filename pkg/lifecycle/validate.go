package lifecycle

import (
	"fmt"
	"net/mail"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/config"
	"github.com/keyward/keyward/pkg/origin"
	"github.com/keyward/keyward/pkg/scope"
	"github.com/keyward/keyward/pkg/store"
)

// ValidationError names the input field that was refused and why.
type ValidationError struct {
	Field   string
	Message string
}

func (e *ValidationError) Error() string { return e.Field + ": " + e.Message }

func invalid(field, format string, args ...any) error {
	return &ValidationError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// Limits on what a key may carry. They keep items far below DynamoDB's
// 400 KB and authorizer policies below API Gateway's size limits.
const (
	maxNameLen        = 128
	maxDescriptionLen = 512
	maxScopes         = 50
	maxAllowedIPs     = 100
	maxAllowedOrigins = 50
	maxMetadataKeys   = 20
	maxMetadataKeyLen = 40
	maxMetadataValLen = 500
	maxMemberIDLen    = 128
	maxContactLen     = 254 // the longest address SMTP carries (RFC 5321)
	maxRPM            = 1_000_000
	// MaxLifetime bounds expires_at; a key that must live longer is better
	// rotated.
	MaxLifetime = 10 * 365 * 24 * time.Hour
)

// DefaultRequestsPerMinute is the rate limit of a key created without one,
// as the security model asks.
const DefaultRequestsPerMinute = 60

func validText(field, s string, minLen, maxLen int) error {
	if !utf8.ValidString(s) {
		return invalid(field, "must be valid UTF-8")
	}
	n := utf8.RuneCountInString(s)
	if n < minLen || n > maxLen {
		if minLen > 0 {
			return invalid(field, "must be %d to %d characters", minLen, maxLen)
		}
		return invalid(field, "must be at most %d characters", maxLen)
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp) {
			// Format characters (U+202E RIGHT-TO-LEFT OVERRIDE, zero-width
			// joiners) and line separators let a name that a console or
			// terminal lists pose as another.
			return invalid(field, "must not contain control, format or line separator characters")
		}
	}
	return nil
}

// validContact accepts an email address alone ("" for none): no display
// name, no comments, nothing a mail parser would rewrite, so that the
// address stored is the one given.
func validContact(field, s string) error {
	if s == "" {
		return nil
	}
	if len(s) > maxContactLen {
		return invalid(field, "must be at most %d bytes", maxContactLen)
	}
	a, err := mail.ParseAddress(s)
	domain := s[strings.LastIndexByte(s, '@')+1:]
	if err != nil || a.Name != "" || a.Address != s || !strings.Contains(domain, ".") {
		return invalid(field, "must be an email address such as ops@example.com, without a name or brackets")
	}
	return nil
}

func validName(s string) error {
	if err := validText("name", s, 1, maxNameLen); err != nil {
		return err
	}
	if strings.TrimSpace(s) != s {
		return invalid("name", "must not start or end with white space")
	}
	return nil
}

// validMemberID accepts the identifiers platforms give their members
// (user ids, e-mail addresses, subject claims).
func validMemberID(field, s string) error {
	if s == "" || len(s) > maxMemberIDLen {
		return invalid(field, "must be 1 to %d characters", maxMemberIDLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_-.@:+|", c) >= 0) {
			return invalid(field, "may contain only letters, digits and _ - . @ : + |")
		}
	}
	return nil
}

func validEnvironment(env apikey.Environment) error {
	if env != apikey.Live && env != apikey.Test {
		return invalid("environment", `must be "live" or "test"`)
	}
	return nil
}

func validScopes(scopes []string) ([]string, error) {
	if len(scopes) == 0 || len(scopes) > maxScopes {
		return nil, invalid("scopes", "must list 1 to %d scopes", maxScopes)
	}
	seen := make(map[string]bool, len(scopes))
	out := make([]string, 0, len(scopes))
	for _, s := range scopes {
		if err := scope.Validate(s); err != nil {
			return nil, invalid("scopes", "must each be resource:action such as invoices:read, resource:* or *, but %v", err)
		}
		if seen[s] {
			return nil, invalid("scopes", "lists %q twice", s)
		}
		seen[s] = true
		out = append(out, s)
	}
	return out, nil
}

// normalIPs parses CIDRs (or bare addresses) into their canonical masked
// form, so that the authorizer compares like with like.
func normalIPs(in []string) ([]string, error) {
	if len(in) > maxAllowedIPs {
		return nil, invalid("allowed_ips", "must list at most %d entries", maxAllowedIPs)
	}
	out := make([]string, 0, len(in))
	seen := map[string]bool{}
	for _, s := range in {
		var p netip.Prefix
		if strings.Contains(s, "/") {
			var err error
			if p, err = netip.ParsePrefix(s); err != nil {
				return nil, invalid("allowed_ips", "%q is not a CIDR block", s)
			}
		} else {
			a, err := netip.ParseAddr(s)
			if err != nil || a.Zone() != "" {
				return nil, invalid("allowed_ips", "%q is not an IP address or CIDR block", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Addr().Zone() != "" {
			return nil, invalid("allowed_ips", "%q has a zone", s)
		}
		if p.Addr().Is4In6() {
			return nil, invalid("allowed_ips", "%q: write IPv4-mapped addresses as IPv4", s)
		}
		c := p.Masked().String()
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	return out, nil
}

// normalOrigins accepts exact origins (scheme, host, optional port) and
// returns them as browsers send them in the Origin header: lowercase, the
// default port omitted. Wildcards are refused for every key: an origin
// list exists to narrow browser use, and "*" would undo it.
func normalOrigins(in []string) ([]string, error) {
	if len(in) > maxAllowedOrigins {
		return nil, invalid("allowed_origins", "must list at most %d entries", maxAllowedOrigins)
	}
	out := make([]string, 0, len(in))
	seen := map[string]bool{}
	for _, s := range in {
		o, err := origin.Normal(s)
		if err != nil {
			return nil, invalid("allowed_origins", "%v", err)
		}
		if !seen[o] {
			seen[o] = true
			out = append(out, o)
		}
	}
	return out, nil
}

// browserRules keep browser keys (keys with allowed origins) safe by
// default, as the security model asks: a page's key is public, so it never
// holds a management scope, and it only reads unless its owner allowed
// writes (AllowBrowserWrites), which the authorizer enforces as well.
// Rotation does not apply them: a replacement is the key it replaces.
func browserRules(k store.Key) error {
	if len(k.AllowedOrigins) == 0 {
		if k.AllowBrowserWrites {
			return invalid("allow_browser_writes", "applies only to a key with allowed_origins (a browser key)")
		}
		return nil
	}
	for _, sc := range k.Scopes {
		if managementScope(sc) {
			return invalid("scopes", "%q is a management scope, which a key with allowed_origins never holds: its pages make it public", sc)
		}
	}
	if !k.AllowBrowserWrites && !scope.OnlyReads(k.Scopes) {
		return invalid("scopes", "a key with allowed_origins holds only resource:read scopes unless allow_browser_writes is true")
	}
	return nil
}

// browserRules judge an update by the key it leaves: a browser key stays
// one (its secret is public in its pages, so it must never become a
// server key), and an update of its scopes, origins or writes follows
// browserRules. Other updates pass, so that a key stored before the rules
// existed can still be narrowed.
func (p UpdateParams) browserRules(old, k store.Key) error {
	if len(old.AllowedOrigins) > 0 && len(k.AllowedOrigins) == 0 {
		return invalid("allowed_origins", "a browser key stays one: its secret is public in its pages; create a server key instead")
	}
	if p.Scopes == nil && p.AllowedOrigins == nil && p.AllowBrowserWrites == nil {
		return nil
	}
	return browserRules(k)
}

// managementScope reports whether a scope grants any admin API route.
func managementScope(sc string) bool {
	for _, needed := range adminRouteScopes() {
		if scope.Grants(sc, needed) {
			return true
		}
	}
	return false
}

// adminRouteScopes are the scopes the admin API's key-authorized routes
// need, read from the shipped table once rather than on every check.
var adminRouteScopes = sync.OnceValue(func() []string {
	var scopes []string
	for _, r := range config.AdminRoutes().Routes {
		if r.Auth == config.AuthKey && !slices.Contains(scopes, r.Scope) {
			scopes = append(scopes, r.Scope)
		}
	}
	return scopes
})

func normalRateLimit(r store.RateLimit) (store.RateLimit, error) {
	if r.RequestsPerMinute == 0 {
		r.RequestsPerMinute = DefaultRequestsPerMinute
	}
	if r.RequestsPerMinute < 1 || r.RequestsPerMinute > maxRPM {
		return r, invalid("rate_limit.requests_per_minute", "must be 1 to %d", maxRPM)
	}
	if r.Burst < 0 || r.Burst > r.RequestsPerMinute {
		return r, invalid("rate_limit.burst", "must be 1 to requests_per_minute")
	}
	if r.Burst == 0 {
		// Ten seconds' worth of requests, at least one.
		r.Burst = max(1, r.RequestsPerMinute/6)
	}
	return r, nil
}

func validMetadata(m map[string]string) (map[string]string, error) {
	if len(m) > maxMetadataKeys {
		return nil, invalid("metadata", "must have at most %d keys", maxMetadataKeys)
	}
	if len(m) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		if err := validText("metadata", k, 1, maxMetadataKeyLen); err != nil {
			return nil, invalid("metadata", "key %q must be 1 to %d characters without control, format or line separator characters", k, maxMetadataKeyLen)
		}
		if err := validText("metadata", v, 0, maxMetadataValLen); err != nil {
			return nil, invalid("metadata", "value of %q must be at most %d characters without control, format or line separator characters", k, maxMetadataValLen)
		}
		out[k] = v
	}
	return out, nil
}

func validExpiry(field string, t, now time.Time) error {
	if !t.After(now) {
		return invalid(field, "must be in the future")
	}
	if t.Sub(now) > MaxLifetime {
		return invalid(field, "must be within %d days", int(MaxLifetime.Hours()/24))
	}
	return nil
}
