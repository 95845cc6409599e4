package admin

import (
	"net/http"
	"strings"

	"github.com/awslabs/aws-lambda-go-api-proxy/core"
)

// FromAPIGateway establishes the caller of a request that API Gateway's
// proxy integration delivered (through the aws-lambda-go-api-proxy
// adapter, which puts the event's request context in the request's
// context). A management key's identity comes from keyward's authorizer
// context; an operator's from the IAM identity API Gateway verified
// (SigV4) on the /v1/tenants routes. Nothing the client sends in headers,
// query or body can set either.
func FromAPIGateway(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc, ok := core.GetAPIGatewayContextFromContext(r.Context())
		if !ok {
			writeError(w, errUnauthorized)
			return
		}
		c := Caller{RequestID: rc.RequestID}
		str := func(name string) string { v, _ := rc.Authorizer[name].(string); return v }
		switch {
		case str("tenant_id") != "":
			c.TenantID, c.KeyID, c.Environment, c.Scopes = str("tenant_id"), str("key_id"), str("environment"), strings.Fields(str("scopes"))
		case rc.Identity.UserArn != "":
			c.Operator, c.OperatorID = true, rc.Identity.UserArn
		}
		next.ServeHTTP(w, r.WithContext(WithCaller(r.Context(), c)))
	})
}
