package authorizer

import "strings"

// Names of the authorizer context's entries: the wire format that API
// Gateway passes on as context.authorizer.<name> (mapped to the protected
// API's X-Keyward-* headers, config.IntegrationHeaders) and as the proxy
// event's requestContext.authorizer (read by the admin API).
const (
	ContextTenantID     = "tenant_id"
	ContextKeyID        = "key_id"
	ContextEnvironment  = "environment"
	ContextScopes       = "scopes" // space-separated
	ContextKeyName      = "key_name"
	ContextOrigin       = "origin" // the checked Origin, on the browser endpoint
	ContextErrorCode    = "error_code"
	ContextErrorMessage = "error_message"
)

// Context is what the backend learns about the caller from an allowed
// decision, and what a denial's gateway response renders (ErrorCode and
// ErrorMessage, which an Allow carries too: its cached policy denies the
// routes the scopes do not grant).
type Context struct {
	TenantID    string
	KeyID       string // the public id, "key_<id>"
	Environment string
	Scopes      []string
	KeyName     string
	// Origin is the request's Origin as the authorizer checked it, on the
	// browser endpoint only: the upstream echoes it (config.OriginHeader).
	Origin string

	ErrorCode    string
	ErrorMessage string
}

// Encode returns the context as the authorizer returns it to API Gateway:
// strings only, the scopes joined by spaces. The origin and error entries
// are left out when empty.
func (c Context) Encode() map[string]any {
	m := map[string]any{
		ContextTenantID:    c.TenantID,
		ContextKeyID:       c.KeyID,
		ContextEnvironment: c.Environment,
		ContextScopes:      strings.Join(c.Scopes, " "),
		ContextKeyName:     c.KeyName,
	}
	if c.Origin != "" {
		m[ContextOrigin] = c.Origin
	}
	if c.ErrorCode != "" {
		m[ContextErrorCode] = c.ErrorCode
	}
	if c.ErrorMessage != "" {
		m[ContextErrorMessage] = c.ErrorMessage
	}
	return m
}

// DecodeContext reads a context that Encode wrote, as API Gateway passes
// it on (the proxy event's requestContext.authorizer, which also holds
// API Gateway's own principalId and integrationLatency). It reports false
// when m holds no tenant: then it is not a key's context. Entries that are
// not strings count as absent.
func DecodeContext(m map[string]any) (Context, bool) {
	str := func(name string) string { v, _ := m[name].(string); return v }
	c := Context{
		TenantID:     str(ContextTenantID),
		KeyID:        str(ContextKeyID),
		Environment:  str(ContextEnvironment),
		Scopes:       strings.Fields(str(ContextScopes)),
		KeyName:      str(ContextKeyName),
		Origin:       str(ContextOrigin),
		ErrorCode:    str(ContextErrorCode),
		ErrorMessage: str(ContextErrorMessage),
	}
	return c, c.TenantID != ""
}
