package config

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// RateLimitIdentity is the API Gateway API key value a request of the
// key counts against: one per keyward key, or one per tenant
// (UsageIdentity) for fleets larger than API Gateway's 10,000 API keys per
// account and region. API Gateway enforces usage plans per API key; with
// API key source AUTHORIZER the authorizer returns this value as
// usageIdentifierKey, and the admin function provisions the same value in
// the usage plan of the key's rate limit. Values are alphanumeric and at
// least 20 characters, as API Gateway requires. They are identifiers, not
// credentials: nothing accepts them as proof of anything.
func (g Gateway) RateLimitIdentity(tenantID, keyID string) string {
	if g.UsageIdentity == UsagePerTenant {
		sum := sha256.Sum256([]byte(tenantID))
		return "keywardtenant" + hex.EncodeToString(sum[:10])
	}
	return keyIdentityPrefix + keyID
}

// keyIdentityPrefix begins every per-key identity.
const keyIdentityPrefix = "keywardkey"

// KeyOfRateLimitIdentity is the key a per-key identity belongs to; false
// for a per-tenant identity.
func KeyOfRateLimitIdentity(identity string) (keyID string, ok bool) {
	return strings.CutPrefix(identity, keyIdentityPrefix)
}
