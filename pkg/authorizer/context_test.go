package authorizer_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/keyward/keyward/pkg/authorizer"
	"github.com/keyward/keyward/pkg/config"
)

// TestContextWireFormat: the context's entries are the names the CDK
// stack maps to integration headers, strings only, the scopes joined by
// spaces; decoding what API Gateway passes on gives the context back.
func TestContextWireFormat(t *testing.T) {
	c := authorizer.Context{TenantID: "acme", KeyID: "key_AbCdEfGhIjKl", Environment: "live",
		Scopes: []string{"invoices:read", "keys:read"}, KeyName: "billing", ErrorCode: "insufficient_scope", ErrorMessage: "No."}
	want := map[string]any{"tenant_id": "acme", "key_id": "key_AbCdEfGhIjKl", "environment": "live", "scopes": "invoices:read keys:read",
		"key_name": "billing", "error_code": "insufficient_scope", "error_message": "No."}
	got := c.Encode()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("encoded %v, want %v", got, want)
	}
	for header, source := range config.IntegrationHeaders {
		if name, ok := strings.CutPrefix(source, "context.authorizer."); ok {
			if _, ok := got[name]; !ok {
				t.Errorf("%s maps context.authorizer.%s, which the context lacks", header, name)
			}
		}
	}
	// As a proxy event carries it: with API Gateway's own entries.
	got["principalId"], got["integrationLatency"] = "key_AbCdEfGhIjKl", float64(12)
	if back, ok := authorizer.DecodeContext(got); !ok || !reflect.DeepEqual(back, c) {
		t.Fatalf("decoded %+v %v, want %+v", back, ok, c)
	}

	if m := (authorizer.Context{TenantID: "acme"}).Encode(); len(m) != 5 || m["scopes"] != "" {
		t.Errorf("no errors, no scopes: %v", m)
	}
	for name, m := range map[string]map[string]any{
		"nil":            nil,
		"no tenant":      {"key_id": "key_x", "scopes": "keys:admin"},
		"tenant not str": {"tenant_id": 7.0, "scopes": "keys:admin"},
	} {
		if c, ok := authorizer.DecodeContext(m); ok {
			t.Errorf("%s: decoded %+v", name, c)
		}
	}
}
