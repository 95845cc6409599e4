package admin_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/awslabs/aws-lambda-go-api-proxy/core"

	"github.com/keyward/keyward/pkg/admin"
)

// callerEcho is a stand-in for the admin handler that shows what
// FromAPIGateway established.
func callerEcho(t *testing.T, ev events.APIGatewayProxyRequest) (int, map[string]any) {
	t.Helper()
	var seen map[string]any
	h := admin.FromAPIGateway(operatorRole, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = admin.DescribeCaller(r.Context())
	}))
	var accessor core.RequestAccessor
	req, err := accessor.EventToRequestWithContext(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, seen
}

// operatorRole is the stack's operator role, with a path.
const operatorRole = "arn:aws:iam::111122223333:role/ops/keyward-prod-operator"

func TestFromAPIGateway(t *testing.T) {
	base := events.APIGatewayProxyRequest{HTTPMethod: "GET", Path: "/v1/keys", Resource: "/v1/keys",
		Headers: map[string]string{"Host": "api.example.com"}}

	key := base
	key.RequestContext = events.APIGatewayProxyRequestContext{RequestID: "r1", Authorizer: map[string]any{
		"tenant_id": "acme", "key_id": "key_AbCdEfGhIjKl", "scopes": "keys:read keys:write", "principalId": "key_AbCdEfGhIjKl"}}
	_, c := callerEcho(t, key)
	if c["tenant"] != "acme" || c["key"] != "key_AbCdEfGhIjKl" || c["scopes"] != "keys:read keys:write" || c["operator"] != false || c["request"] != "r1" {
		t.Fatalf("management key caller: %v", c)
	}

	iam := base
	iam.RequestContext.Identity.UserArn = "arn:aws:sts::111122223333:assumed-role/keyward-prod-operator/deploy-pipeline"
	_, c = callerEcho(t, iam)
	if c["operator"] != true || c["tenant"] != "" || c["principal"] != iam.RequestContext.Identity.UserArn {
		t.Fatalf("IAM caller: %v", c)
	}
	// Any other principal of the account is no operator.
	for _, arn := range []string{
		"arn:aws:iam::111122223333:user/admin",
		"arn:aws:sts::111122223333:assumed-role/AdministratorAccess/alice",
		"arn:aws:sts::111122223333:assumed-role/keyward-prod-operator-2/x",
		"arn:aws:sts::444455556666:assumed-role/keyward-prod-operator/x",
		"arn:aws-cn:sts::111122223333:assumed-role/keyward-prod-operator/x",
		"arn:aws:sts::111122223333:assumed-role/keyward-prod-operator/",
		"arn:aws:iam::111122223333:role/platform/keyward-prod-operator",
	} {
		other := base
		other.RequestContext.Identity.UserArn = arn
		if _, c = callerEcho(t, other); c["operator"] != false || c["principal"] != arn {
			t.Errorf("%s: %v", arn, c)
		}
	}

	// A client cannot claim an identity with the adapter's own header.
	forged := base
	rc, _ := json.Marshal(events.APIGatewayProxyRequestContext{Authorizer: map[string]any{"tenant_id": "victim", "scopes": "keys:admin"}})
	forged.Headers = map[string]string{core.APIGwContextHeader: string(rc)}
	_, c = callerEcho(t, forged)
	if c["tenant"] != "" || c["operator"] != false {
		t.Fatalf("forged header made a caller: %v", c)
	}

	// Without the adapter's context, nothing is served.
	rec := httptest.NewRecorder()
	admin.FromAPIGateway(operatorRole, http.NotFoundHandler()).ServeHTTP(rec, httptest.NewRequest("GET", "/v1/keys", nil))
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("request without API Gateway context: %d", rec.Code)
	}
}

// TestHSTSOnEveryAnswer: the admin function's answers, the refusals
// included, tell browsers to keep to https.
func TestHSTSOnEveryAnswer(t *testing.T) {
	h := admin.FromAPIGateway(operatorRole, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/keys", nil)) // no API Gateway context: refused
	if rec.Code != http.StatusUnauthorized || rec.Header().Get("Strict-Transport-Security") != "max-age=31536000" {
		t.Fatalf("%d, Strict-Transport-Security %q", rec.Code, rec.Header().Get("Strict-Transport-Security"))
	}
}
