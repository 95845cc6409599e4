package gateway_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"

	"github.com/keyward/keyward/internal/storetest"
	"github.com/keyward/keyward/pkg/admin"
	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/authorizer"
	"github.com/keyward/keyward/pkg/lifecycle"
	"github.com/keyward/keyward/pkg/localstack/gateway"
)

// TestAdminGetsTheProxyEvent: the admin function receives the request as
// API Gateway's proxy integration delivers it, the authorizer's decision
// in its request context, and its answer goes back as it gave it.
func TestAdminGetsTheProxyEvent(t *testing.T) {
	h := newHarness(t, nil)
	h.admin.answer = func(events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error) {
		return events.APIGatewayProxyResponse{StatusCode: 201,
			Headers:           map[string]string{"Content-Type": "application/json", "X-One": "a"},
			MultiValueHeaders: map[string][]string{"X-Many": {"1", "2"}},
			Body:              base64.StdEncoding.EncodeToString([]byte(`{"id":"key_x"}`)), IsBase64Encoded: true}, nil
	}
	r := httptest.NewRequest("PATCH", "/v1/keys/key_AbCdEfGhIjKl?expand=a&expand=b", strings.NewReader(`{"name":"n"}`))
	r.RemoteAddr = "198.51.100.20:4711"
	r.Header.Set("Authorization", bearer)
	r.Header.Set("Content-Type", "application/json")
	r.Header.Add("Accept", "text/plain")
	r.Header.Add("Accept", "application/json")
	w := httptest.NewRecorder()
	h.gw.ServeHTTP(w, r)
	if w.Code != 201 || w.Body.String() != `{"id":"key_x"}` || w.Header().Get("X-One") != "a" ||
		!reflect.DeepEqual(w.Header().Values("X-Many"), []string{"1", "2"}) {
		t.Fatalf("answer %d %v %s", w.Code, w.Header(), w.Body)
	}
	if h.admin.count() != 1 || h.upstream.count() != 0 {
		t.Fatalf("admin %d, upstream %d", h.admin.count(), h.upstream.count())
	}
	ev := h.admin.last()
	if ev.Resource != "/v1/keys/{id}" || ev.Path != "/v1/keys/key_AbCdEfGhIjKl" || ev.HTTPMethod != "PATCH" ||
		ev.Body != `{"name":"n"}` || ev.IsBase64Encoded || ev.StageVariables != nil {
		t.Errorf("event %+v", ev)
	}
	if !reflect.DeepEqual(ev.PathParameters, map[string]string{"id": "key_AbCdEfGhIjKl"}) ||
		!reflect.DeepEqual(ev.MultiValueQueryStringParameters, map[string][]string{"expand": {"a", "b"}}) ||
		!reflect.DeepEqual(ev.QueryStringParameters, map[string]string{"expand": "b"}) {
		t.Errorf("parameters %v %v %v", ev.PathParameters, ev.QueryStringParameters, ev.MultiValueQueryStringParameters)
	}
	if ev.Headers["Accept"] != "application/json" || !reflect.DeepEqual(ev.MultiValueHeaders["Accept"], []string{"text/plain", "application/json"}) ||
		ev.Headers["Host"] != "example.com" || ev.Headers["Authorization"] != bearer {
		t.Errorf("headers %v %v", ev.Headers, ev.MultiValueHeaders)
	}
	rc := ev.RequestContext
	if rc.RequestID != w.Header().Get("Request-Id") || rc.Stage != "local" || rc.Path != "/local/v1/keys/key_AbCdEfGhIjKl" ||
		rc.ResourcePath != "/v1/keys/{id}" || rc.HTTPMethod != "PATCH" || rc.AccountID != "000000000000" || rc.APIID != "keyward" ||
		rc.Identity.SourceIP != "198.51.100.20" || rc.Identity.UserArn != "" || rc.DomainName != "example.com" ||
		rc.RequestTimeEpoch != t0.UnixMilli() {
		t.Errorf("request context %+v", rc)
	}
	// The authorizer's context as API Gateway passes it on, which
	// FromAPIGateway reads.
	want := map[string]any{"tenant_id": "acme", "key_id": "key_AbCdEfGhIjKl", "environment": "live", "scopes": "invoices:read keys:read",
		"key_name": "billing", "error_code": "insufficient_scope", "error_message": "This API key does not have the scope this route requires.",
		"principalId": "key_AbCdEfGhIjKl", "integrationLatency": float64(0)}
	if !reflect.DeepEqual(rc.Authorizer, want) {
		t.Errorf("authorizer %v, want %v", rc.Authorizer, want)
	}
	if kc, ok := authorizer.DecodeContext(rc.Authorizer); !ok || kc.TenantID != "acme" || !reflect.DeepEqual(kc.Scopes, []string{"invoices:read", "keys:read"}) {
		t.Errorf("decoded %+v %v", kc, ok)
	}

	// A body that is not UTF-8 goes in base64.
	binary := []byte{0xff, 0x00, 0xfe}
	r = httptest.NewRequest("POST", "/v1/keys", strings.NewReader(string(binary)))
	r.Header.Set("Authorization", bearer)
	h.gw.ServeHTTP(httptest.NewRecorder(), r)
	if ev := h.admin.last(); !ev.IsBase64Encoded || ev.Body != base64.StdEncoding.EncodeToString(binary) {
		t.Errorf("binary body %q base64 %v", ev.Body, ev.IsBase64Encoded)
	}
}

// TestOperatorAndPublicEvents: the operator token reaches the admin
// function as the operator session's identity.userArn, with no
// authorizer; a public route carries neither.
func TestOperatorAndPublicEvents(t *testing.T) {
	h := newHarness(t, nil)
	wantResponse(t, h.do("POST", "/v1/tenants/acme/offboard", "192.0.2.1:1234", http.Header{"Authorization": {"Bearer op-secret"}}), 200, `{"ok":true}`)
	ev := h.admin.last()
	if ev.RequestContext.Identity.UserArn != operatorARN || ev.RequestContext.Authorizer != nil ||
		!reflect.DeepEqual(ev.PathParameters, map[string]string{"id": "acme"}) || ev.Resource != "/v1/tenants/{id}/offboard" {
		t.Errorf("operator event %+v", ev)
	}
	wantResponse(t, h.do("POST", "/v1/leaks/github", "192.0.2.1:1234", http.Header{"Authorization": {""}}), 200, "")
	ev = h.admin.last()
	if ev.RequestContext.Identity.UserArn != "" || ev.RequestContext.Authorizer != nil || ev.PathParameters != nil {
		t.Errorf("public event %+v", ev)
	}
}

// TestAdminFunctionFailureIs502: a function error or a malformed response
// gets API Gateway's 502, in DEFAULT_5XX's envelope.
func TestAdminFunctionFailureIs502(t *testing.T) {
	h := newHarness(t, nil)
	for name, answer := range map[string]func(events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error){
		"error": func(events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error) {
			return events.APIGatewayProxyResponse{}, errors.New("boom")
		},
		"no status": func(events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error) {
			return events.APIGatewayProxyResponse{Body: "{}"}, nil
		},
		"bad base64": func(events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error) {
			return events.APIGatewayProxyResponse{StatusCode: 200, Body: "!", IsBase64Encoded: true}, nil
		},
		"status 1000": func(events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error) {
			return events.APIGatewayProxyResponse{StatusCode: 1000}, nil
		},
	} {
		h.admin.answer = answer
		w := h.do("GET", "/v1/keys", "192.0.2.1:1234", nil)
		id := w.Header().Get("Request-Id")
		if w.Code != http.StatusBadGateway || w.Body.String() != `{"error":{"type":"api_error","message":"Internal error. Request `+id+`."}}` {
			t.Errorf("%s: %d %s", name, w.Code, w.Body)
		}
	}
	if !strings.Contains(h.logs.String(), "admin function failed") {
		t.Error("the cause was not logged")
	}
}

// TestAdminCallerComesFromTheEvent runs the admin API behind the gateway
// as the local stack does (httpadapter and admin.FromAPIGateway): an
// operator's audit entries name the operator session, a management key
// acts for the tenant in its context, and a session of another role is no
// operator.
func TestAdminCallerComesFromTheEvent(t *testing.T) {
	ctx := t.Context()
	st := storetest.Temp(t)
	_, ring := storetest.Peppers(t, st, time.Now())
	format, _ := apikey.NewFormat("sk")
	svc := lifecycle.New(st, ring, format)
	gwCfg := loadGateway(t)
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	authz, err := authorizer.New(authorizer.Config{Store: st, Peppers: ring, Format: format, Routes: routes(t), Gateway: gwCfg, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	const role = "arn:aws:iam::000000000000:role/keyward-local-operator"
	serve := func(operator string) *gateway.Gateway {
		var fn gateway.LambdaProxy
		gw, err := gateway.New(gateway.Config{Routes: routes(t), Gateway: gwCfg, Authorizer: authz, Upstream: gateway.Echo(),
			Admin: func(ctx context.Context, ev events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error) {
				return fn(ctx, ev)
			},
			OperatorToken: "op-secret", OperatorARN: operator, Logger: logger})
		if err != nil {
			t.Fatal(err)
		}
		api := admin.New(admin.Config{Keys: svc, Store: st, Gateway: gwCfg, RateLimits: gw, Flusher: gw, Logger: logger})
		fn = httpadapter.New(admin.FromAPIGateway(role, api)).ProxyWithContext
		return gw
	}
	send := func(gw *gateway.Gateway, method, target, auth, body string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, target, strings.NewReader(body))
		r.Header.Set("Authorization", auth)
		if body != "" {
			r.Header.Set("Content-Type", "application/json")
		}
		w := httptest.NewRecorder()
		gw.ServeHTTP(w, r)
		return w
	}

	gw := serve(operatorARN)
	w := send(gw, "POST", "/v1/tenants", "Bearer op-secret", `{"tenant_id":"acme","name":"Acme"}`)
	if w.Code != http.StatusCreated {
		t.Fatalf("onboarding: %d %s", w.Code, w.Body)
	}
	var onboarded struct{ Secret string }
	_ = json.Unmarshal(w.Body.Bytes(), &onboarded)
	onboardID := w.Header().Get("Request-Id")

	// The management key's context names the tenant whose audit it reads.
	w = send(gw, "GET", "/v1/audit", "Bearer "+onboarded.Secret, "")
	var audit struct {
		Data []struct {
			Actor     string `json:"actor"`
			Action    string `json:"action"`
			RequestID string `json:"request_id"`
		} `json:"data"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &audit); w.Code != http.StatusOK || err != nil {
		t.Fatalf("audit: %d %s", w.Code, w.Body)
	}
	found := false
	for _, e := range audit.Data {
		found = found || e.Action == "tenant.created" && e.Actor == operatorARN && e.RequestID == onboardID
	}
	if !found {
		t.Fatalf("no tenant.created entry by %s with request id %s: %s", operatorARN, onboardID, w.Body)
	}
	if _, err := svc.Tenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}

	// The admin API decides who is an operator, from the event's identity.
	other := serve("arn:aws:sts::000000000000:assumed-role/some-other-role/local")
	w = send(other, "POST", "/v1/tenants", "Bearer op-secret", `{"tenant_id":"beta","name":"Beta"}`)
	if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), `"code":"not_operator"`) {
		t.Fatalf("another role's session: %d %s", w.Code, w.Body)
	}
}
