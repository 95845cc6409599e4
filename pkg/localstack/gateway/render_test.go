package gateway_test

import (
	"encoding/json"
	"testing"

	"github.com/keyward/keyward/pkg/config"
	"github.com/keyward/keyward/pkg/localstack/gateway"
)

func TestRenderEveryShippedResponseIsJSON(t *testing.T) {
	cfg := loadGateway(t)
	vars := map[string]string{"context.requestId": "req-1", "context.error.message": `Say "hi"`,
		"context.authorizer.error_code": "insufficient_scope", "context.authorizer.error_message": "No."}
	for _, rt := range config.GatewayResponseTypes {
		status, header, body := gateway.Render(cfg, rt, vars)
		if !json.Valid(body) || header.Get("Content-Type") != "application/json" || status < 400 {
			t.Errorf("%s: %d %v %s", rt, status, header, body)
		}
	}
}

func TestRenderSubstitutes(t *testing.T) {
	cfg := loadGateway(t)
	status, header, body := gateway.Render(cfg, "ACCESS_DENIED", map[string]string{
		"context.authorizer.error_code": "ip_not_allowed", "context.authorizer.error_message": "Not from here."})
	if want := `{"error":{"type":"forbidden","code":"ip_not_allowed","message":"Not from here."}}`; status != 403 || string(body) != want {
		t.Errorf("ACCESS_DENIED: %d %s", status, body)
	}
	if len(header) != 1 {
		t.Errorf("headers %v", header)
	}

	// A sentence's full stop is not part of the variable.
	_, _, body = gateway.Render(cfg, "AUTHORIZER_FAILURE", map[string]string{"context.requestId": "abc"})
	if want := `{"error":{"type":"api_error","message":"The request could not be authorized; retry later. Request abc."}}`; string(body) != want {
		t.Errorf("AUTHORIZER_FAILURE: %s", body)
	}
	// An absent authorizer value renders empty.
	_, _, body = gateway.Render(cfg, "ACCESS_DENIED", nil)
	if want := `{"error":{"type":"forbidden","code":"","message":""}}`; string(body) != want {
		t.Errorf("ACCESS_DENIED without context: %s", body)
	}
	status, header, body = gateway.Render(cfg, "THROTTLED", nil)
	if status != 429 || header.Get("Retry-After") != "1" {
		t.Errorf("THROTTLED: %d %v %s", status, header, body)
	}
}

func TestRenderFallsBackAsAPIGatewayDoes(t *testing.T) {
	cfg := config.Gateway{GatewayResponses: map[string]config.GatewayResponse{
		"DEFAULT_4XX":  {Template: `{"message":$context.error.messageString,"type":"$context.error.responseType"}`},
		"DEFAULT_5XX":  {Template: `{"request":"$context.requestId","unknown":"$context.nothing.here"}`},
		"UNAUTHORIZED": {Template: `{}`},
	}}
	status, _, body := gateway.Render(cfg, "INVALID_API_KEY", map[string]string{"context.error.message": `The "key"`})
	if want := `{"message":"The \"key\"","type":"INVALID_API_KEY"}`; status != 403 || string(body) != want {
		t.Errorf("INVALID_API_KEY: %d %s", status, body)
	}
	status, _, body = gateway.Render(cfg, "AUTHORIZER_FAILURE", map[string]string{"context.requestId": "r1"})
	if want := `{"request":"r1","unknown":""}`; status != 500 || string(body) != want {
		t.Errorf("AUTHORIZER_FAILURE: %d %s", status, body)
	}
	if status, _, _ = gateway.Render(cfg, "UNAUTHORIZED", nil); status != 401 {
		t.Errorf("UNAUTHORIZED without a status: %d", status)
	}

	// A status on DEFAULT_4XX becomes every 4XX response's, unless the
	// response sets its own.
	cfg.GatewayResponses["DEFAULT_4XX"] = config.GatewayResponse{Status: 400, Template: `{}`}
	cfg.GatewayResponses["THROTTLED"] = config.GatewayResponse{Status: 429, Template: `{}`}
	for rt, want := range map[string]int{"UNAUTHORIZED": 400, "ACCESS_DENIED": 400, "THROTTLED": 429, "AUTHORIZER_FAILURE": 500} {
		if status, _, _ := gateway.Render(cfg, rt, nil); status != want {
			t.Errorf("%s: %d, want %d", rt, status, want)
		}
	}
}
