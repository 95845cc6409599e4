package admin

import (
	"net/http"
	"strings"

	"github.com/awslabs/aws-lambda-go-api-proxy/core"

	"github.com/keyward/keyward/pkg/authorizer"
)

// FromAPIGateway establishes the caller of a request that API Gateway's
// proxy integration delivered (through the aws-lambda-go-api-proxy
// adapter, which puts the event's request context in the request's
// context). A management key's identity comes from keyward's authorizer
// context; an operator's from the IAM identity API Gateway verified
// (SigV4) on the /v1/tenants routes, which must be operatorRole: any other
// principal of the account is refused by the operator routes with a 403
// that names the role. Nothing the client sends in headers, query or body
// can set either.
func FromAPIGateway(operatorRole string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// API Gateway serves only TLS 1.2+: browsers hold to it for a year
		// (a plain-http local stack's header they ignore).
		w.Header().Set("Strict-Transport-Security", "max-age=31536000")
		rc, ok := core.GetAPIGatewayContextFromContext(r.Context())
		if !ok {
			writeError(w, errUnauthorized)
			return
		}
		c := Caller{RequestID: rc.RequestID}
		if kc, ok := authorizer.DecodeContext(rc.Authorizer); ok {
			c.TenantID, c.KeyID, c.Environment, c.Scopes = kc.TenantID, kc.KeyID, kc.Environment, kc.Scopes
		} else if rc.Identity.UserArn != "" {
			c.Principal = rc.Identity.UserArn
			c.Operator = IsRole(rc.Identity.UserArn, operatorRole)
			if c.Operator {
				c.OperatorID = rc.Identity.UserArn
			}
		}
		next.ServeHTTP(w, r.WithContext(WithCaller(r.Context(), c)))
	})
}

// IsRole reports whether principal, a caller's ARN as API Gateway reports
// it (arn:aws:sts::<account>:assumed-role/<name>/<session>), is a session
// of role (arn:aws:iam::<account>:role/<path/><name>). An empty role
// matches nothing.
func IsRole(principal, role string) bool {
	rp, pp := strings.SplitN(role, ":", 6), strings.SplitN(principal, ":", 6)
	if len(rp) != 6 || len(pp) != 6 || rp[0] != "arn" || pp[0] != "arn" || rp[2] != "iam" || pp[2] != "sts" ||
		rp[1] != pp[1] || rp[4] == "" || rp[4] != pp[4] {
		return false
	}
	name, ok := strings.CutPrefix(rp[5], "role/")
	name = name[strings.LastIndexByte(name, '/')+1:] // assumed-role ARNs carry no path
	session, isSession := strings.CutPrefix(pp[5], "assumed-role/"+name+"/")
	return ok && name != "" && isSession && session != "" && !strings.Contains(session, "/")
}
