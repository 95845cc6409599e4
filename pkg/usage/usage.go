// Package usage names the API Gateway API keys that carry keyward's rate
// limits. API Gateway enforces usage plans per API key; with API key
// source AUTHORIZER the authorizer returns the key's value as
// usageIdentifierKey, and the admin function provisions the same value in
// the usage plan of the key's rate limit. These values are identifiers,
// not credentials: nothing accepts them as proof of anything.
package usage

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"github.com/keyward/keyward/config"
)

// Identity is the API Gateway API key value a request counts against:
// one per keyward key, or one per tenant for fleets larger than API
// Gateway's 10,000 API keys per account and region. Values are
// alphanumeric and at least 20 characters, as API Gateway requires.
func Identity(mode, tenantID, keyID string) string {
	if mode == config.UsagePerTenant {
		sum := sha256.Sum256([]byte(tenantID))
		return "keywardtenant" + hex.EncodeToString(sum[:10])
	}
	return keyIdentityPrefix + keyID
}

// keyIdentityPrefix begins every per-key identity.
const keyIdentityPrefix = "keywardkey"

// KeyOf is the key a per-key identity belongs to; false for a per-tenant
// identity.
func KeyOf(identity string) (keyID string, ok bool) {
	return strings.CutPrefix(identity, keyIdentityPrefix)
}
