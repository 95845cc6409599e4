package authorizer

import (
	"encoding/base64"
	"strings"

	"github.com/keyward/keyward/pkg/apikey"
)

// maxHeaderLen caps the Authorization header before any other work: the
// longest token is 64 bytes, and "Basic " plus its base64 with the colon
// is 94.
const maxHeaderLen = 128

// Reasons a request is refused. They go to logs and metrics only; every
// unauthorized caller sees the same 401.
const (
	ReasonMissing     = "missing_credential"
	ReasonMultiple    = "multiple_credentials"
	ReasonMalformed   = "malformed_header"
	ReasonBadToken    = "malformed_token"
	ReasonUnknownKey  = "unknown_key"
	ReasonWrongSecret = "wrong_secret"
	ReasonRevoked     = "revoked"
	ReasonExpired     = "expired"
	ReasonNotYetValid = "not_yet_valid"
	ReasonInternal    = "internal_error"
	ReasonBadARN      = "bad_method_arn"
	// ReasonCorrupt: the stored key does not decode to a valid key.
	ReasonCorrupt = "corrupt_key"
	// ReasonConfiguration: the event is not what a REQUEST authorizer
	// receives.
	ReasonConfiguration = "configuration_error"
	// ReasonSlow: the decision took longer than MaxDecisionAge; a stale
	// Allow could outlive a revocation in the gateway's cache.
	ReasonSlow = "decision_too_slow"
	// Reasons of a 403, also its error code.
	ReasonScope  = "insufficient_scope"
	ReasonIP     = "ip_not_allowed"
	ReasonOrigin = "origin_not_allowed"
	// ReasonBrowserOnly refuses a browser key (one with allowed origins)
	// on the server endpoint.
	ReasonBrowserOnly = "browser_endpoint_required"
	ReasonAllow       = "allowed"
)

// header looks a header up case-insensitively in the multi-value map API
// Gateway sends, which holds every value the client sent (the single-value
// map is derived from it, with the last of several values); an event
// without one is read from the single-value map. It returns one of the
// header's values and how many distinct values it has, counting no
// further than two.
func header(name string, single map[string]string, multi map[string][]string) (string, int) {
	var first string
	n := 0
	add := func(v string) {
		switch {
		case n == 0:
			first, n = v, 1
		case v != first:
			n = 2
		}
	}
	if len(multi) > 0 {
		for k, vs := range multi {
			if len(k) == len(name) && strings.EqualFold(k, name) {
				for _, v := range vs {
					add(v)
				}
			}
		}
		return first, n
	}
	for k, v := range single {
		if len(k) == len(name) && strings.EqualFold(k, name) {
			add(v)
		}
	}
	return first, n
}

// token returns the token of the Authorization header, or why there is
// none. The common case, "Bearer " and a token that parses, takes no
// other look at the header: a token that parses holds only characters
// that credential would accept, so it would return the same token.
func token(f apikey.Format, single map[string]string, multi map[string][]string) (apikey.Token, string) {
	v, n := header("Authorization", single, multi)
	if n == 1 && len(v) > len("Bearer ") && v[6] == ' ' && strings.EqualFold(v[:6], "Bearer") {
		if tok, err := f.Parse(v[7:]); err == nil {
			return tok, ""
		}
	}
	cred, reason := credential(v, n)
	if reason != "" {
		return apikey.Token{}, reason
	}
	tok, err := f.Parse(cred)
	if err != nil {
		return apikey.Token{}, ReasonBadToken
	}
	return tok, ""
}

// credential extracts the token from the Authorization header: "Bearer
// <token>", or "Basic base64(<token>:)" with the token as user name and
// an empty password, as Recurly's keys are sent. Scheme names are
// case-insensitive; anything else (two credentials, a comma-joined value,
// stray white space, control or non-ASCII bytes) is refused.
//
// v and n are the header's value and count, as header returns them.
func credential(v string, n int) (string, string) {
	switch n {
	case 0:
		return "", ReasonMissing
	case 1:
	default:
		return "", ReasonMultiple
	}
	if len(v) > maxHeaderLen {
		return "", ReasonMalformed
	}
	if v == "" {
		return "", ReasonMissing
	}
	space := -1
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == ',':
			return "", ReasonMultiple
		case c == ' ' && space < 0:
			space = i
		case c < 0x21 || c > 0x7e:
			return "", ReasonMalformed
		}
	}
	if space <= 0 || space == len(v)-1 {
		return "", ReasonMalformed
	}
	scheme, cred := v[:space], v[space+1:]
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		return cred, ""
	case strings.EqualFold(scheme, "Basic"):
		raw, err := base64.StdEncoding.Strict().DecodeString(cred)
		if err != nil {
			return "", ReasonMalformed
		}
		user, pass, ok := strings.Cut(string(raw), ":")
		if !ok || pass != "" || user == "" {
			return "", ReasonMalformed
		}
		return user, ""
	}
	return "", ReasonMalformed
}
