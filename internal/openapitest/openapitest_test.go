package openapitest

import (
	"bytes"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const keyID = "key_AbCdEfGhIjKl"

// validKey is a key resource as the handler writes it.
func validKey() map[string]any {
	return map[string]any{
		"id": keyID, "object": "api_key", "name": "billing sync", "description": "",
		"display": "sk_live_…x9Z0", "environment": "live", "scopes": []any{"invoices:read"},
		"status": "active", "created_at": "2026-07-01T10:00:00Z", "created_by": nil,
		"expires_at": "2026-07-02T10:00:00Z", "last_used_at": nil, "revoked_at": nil,
		"allowed_ips": []any{}, "allowed_origins": []any{}, "allow_browser_writes": false, "contact": nil,
		"rate_limit": map[string]any{"requests_per_minute": 60, "burst": 10},
		"replaces":   nil, "replaced_by": nil, "metadata": map[string]any{},
	}
}

// with returns a copy of m with the given fields set, or deleted where the
// value is del.
func with(m map[string]any, kv ...any) map[string]any {
	out := maps.Clone(m)
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == del {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

// del marks a field for with to delete.
var del = new(int)

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	if s, ok := v.(string); ok {
		return []byte(s)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// exchange is a request and its response; bodies are strings sent as is
// or values sent as JSON, a nil reqBody meaning none.
type exchange struct {
	name         string
	method, path string
	reqBody      any
	status       int
	header       []string // response header name, value pairs
	body         any
	contentType  string // of the response; "" means application/json
}

func (e exchange) check(t *testing.T, s *Spec) error {
	t.Helper()
	var reqBody []byte
	if e.reqBody != nil {
		reqBody = mustJSON(t, e.reqBody)
	}
	req := httptest.NewRequest(e.method, e.path, bytes.NewReader(reqBody))
	header := http.Header{"Content-Type": {"application/json"}}
	if e.contentType != "" {
		header.Set("Content-Type", e.contentType)
	}
	for i := 0; i+1 < len(e.header); i += 2 {
		header.Set(e.header[i], e.header[i+1])
	}
	return s.checkResponse(req, reqBody, e.status, header, mustJSON(t, e.body))
}

func TestLoad(t *testing.T) {
	s := Load(t)
	if Load(t) != s {
		t.Error("Load read the document again")
	}
	want := []string{
		"GET /v1/audit", "GET /v1/keys", "GET /v1/keys/{id}", "GET /v1/keys/{id}/requests", "GET /v1/keys/{id}/usage",
		"PATCH /v1/keys/{id}", "POST /v1/keys",
		"POST /v1/keys/{id}/report-leak", "POST /v1/keys/{id}/revoke", "POST /v1/keys/{id}/rotate",
		"POST /v1/leaks/github", "POST /v1/members/{member_id}/revoke-keys",
		"POST /v1/tenants", "POST /v1/tenants/{id}/offboard",
	}
	if got := s.Operations(); !slices.Equal(got, want) {
		t.Errorf("Operations() = %q, want %q", got, want)
	}
}

func TestValidResponsesPass(t *testing.T) {
	s := Load(t)
	createReq := map[string]any{"name": "billing sync", "environment": "live", "scopes": []string{"invoices:read"},
		"expires_at": nil, "expires_in": 86400, "rate_limit": map[string]int{"requests_per_minute": 600}}
	old := with(validKey(), "status", "expiring", "replaced_by", "key_000000000001")
	tenant := map[string]any{"id": "acme", "object": "tenant", "name": "ACME", "status": "active",
		"created_at": "2026-07-01T10:00:00Z", "offboarded_at": nil, "contact": nil}
	for _, e := range []exchange{
		{name: "get", method: "GET", path: "/v1/keys/" + keyID, status: 200, body: validKey(),
			header: []string{"Request-Id", "req-1"}},
		{name: "create", method: "POST", path: "/v1/keys", reqBody: createReq, status: 201,
			body: map[string]any{"key": validKey(), "secret": "sk_live_" + strings.Repeat("a", 50)}},
		{name: "create replay", method: "POST", path: "/v1/keys", reqBody: createReq, status: 201,
			header: []string{"Idempotent-Replayed", "true"}, body: map[string]any{"key": validKey()}},
		{name: "rotate without body", method: "POST", path: "/v1/keys/" + keyID + "/rotate", status: 201,
			body: map[string]any{"key": with(validKey(), "replaces", keyID), "secret": "sk_live_" + strings.Repeat("b", 50), "previous_key": old}},
		{name: "patch clearing", method: "PATCH", path: "/v1/keys/" + keyID, status: 200, body: validKey(),
			reqBody: map[string]any{"description": nil, "allowed_ips": nil, "rate_limit": nil, "expires_at": nil, "metadata": nil}},
		{name: "list", method: "GET", path: "/v1/keys?environment=live&limit=10", status: 200,
			body: map[string]any{"object": "list", "data": []any{validKey()}, "next_cursor": "abc"}},
		{name: "onboard", method: "POST", path: "/v1/tenants", reqBody: map[string]string{"tenant_id": "acme", "name": "ACME"}, status: 201,
			body: map[string]any{"tenant": tenant, "key": validKey(), "secret": "sk_live_" + strings.Repeat("c", 50),
				"test_key": with(validKey(), "environment", "test"), "test_secret": "sk_test_" + strings.Repeat("d", 50)}},
		{name: "not found", method: "GET", path: "/v1/keys/" + keyID, status: 404,
			body: `{"error":{"type":"not_found","code":"not_found","message":"No such resource."}}`},
		{name: "bad request of a refused body", method: "POST", path: "/v1/keys", reqBody: `{"colour":"red"}`, status: 400,
			body: `{"error":{"type":"invalid_request","code":"invalid_request","message":"Unknown field \"colour\".","param":"colour"}}`},
		{name: "throttled", method: "GET", path: "/v1/audit", status: 429, header: []string{"Retry-After", "1"},
			body: `{"error":{"type":"rate_limited","code":"rate_limited","message":"Too many requests."}}`},
	} {
		t.Run(e.name, func(t *testing.T) {
			if err := e.check(t, s); err != nil {
				t.Error(err)
			}
		})
	}
	// CheckResponse reports through t; this one must not fail the test.
	s.CheckResponse(t, httptest.NewRequest("GET", "/v1/keys/"+keyID, nil), nil, 200,
		http.Header{"Content-Type": {"application/json"}}, mustJSON(t, validKey()))
}

func TestInvalidResponsesFail(t *testing.T) {
	s := Load(t)
	get := func(name string, status int, body any, header ...string) exchange {
		return exchange{name: name, method: "GET", path: "/v1/keys/" + keyID, status: status, body: body, header: header}
	}
	created := func(name string, body map[string]any) exchange {
		return exchange{name: name, method: "POST", path: "/v1/keys",
			reqBody: map[string]any{"name": "n", "environment": "live", "scopes": []string{"a:read"}}, status: 201, body: body}
	}
	for _, e := range []exchange{
		get("missing required field", 200, with(validKey(), "metadata", del)),
		get("wrong type", 200, with(validKey(), "name", 5)),
		get("null where not nullable", 200, with(validKey(), "created_at", nil)),
		get("wrong type of a nullable field", 200, with(validKey(), "expires_at", 5)),
		get("extra field", 200, with(validKey(), "hash", "abc")),
		get("extra field in a nested object", 200, with(validKey(), "rate_limit", map[string]any{"requests_per_minute": 60, "tier": "x"})),
		get("value outside the enum", 200, with(validKey(), "status", "paused")),
		get("undocumented status", 201, validKey()),
		get("undocumented error status", 409, `{"error":{"type":"conflict","code":"conflict","message":"No."}}`),
		get("error of another status", 404, `{"error":{"type":"conflict","code":"conflict","message":"No."}}`),
		get("extra field in the error envelope", 404, `{"error":{"type":"not_found","code":"not_found","message":"No.","detail":"x"}}`),
		get("error without message", 404, `{"error":{"type":"not_found","code":"not_found"}}`),
		created("create answering a previous key", map[string]any{"key": validKey(), "previous_key": validKey()}),
		created("malformed secret", map[string]any{"key": validKey(), "secret": "hunter2"}),
		{name: "rotate without previous key", method: "POST", path: "/v1/keys/" + keyID + "/rotate", status: 201,
			body: map[string]any{"key": validKey()}},
		{name: "wrong content type", method: "GET", path: "/v1/keys/" + keyID, status: 200, body: validKey(), contentType: "text/plain"},
		{name: "unknown path", method: "GET", path: "/v1/nothing", status: 404,
			body: `{"error":{"type":"not_found","code":"not_found","message":"No such resource."}}`},
		{name: "method not in the document", method: "DELETE", path: "/v1/keys/" + keyID, status: 200, body: validKey()},
		{name: "429 without Retry-After", method: "GET", path: "/v1/audit", status: 429,
			body: `{"error":{"type":"rate_limited","code":"rate_limited","message":"Too many requests."}}`},
		{name: "accepted request with an unknown field", method: "POST", path: "/v1/keys", status: 201,
			reqBody: map[string]any{"name": "n", "environment": "live", "scopes": []string{"a:read"}, "colour": "red"},
			body:    map[string]any{"key": validKey()}},
		{name: "accepted request with both expiries", method: "POST", path: "/v1/keys", status: 201,
			reqBody: map[string]any{"name": "n", "environment": "live", "scopes": []string{"a:read"}, "expires_at": "2027-01-01T00:00:00Z", "expires_in": 60},
			body:    map[string]any{"key": validKey()}},
	} {
		t.Run(e.name, func(t *testing.T) {
			if err := e.check(t, s); err == nil {
				t.Error("the document allowed it")
			}
		})
	}
}

// TestAdminDocListsEveryRoute: docs/admin-api.md's route table has a row
// for every operation of the spec, and no other (make lint runs it).
func TestAdminDocListsEveryRoute(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "admin-api.md"))
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `(GET|POST|PATCH|DELETE|PUT) (/v1/[^?` ]*)")
	var documented []string
	for _, m := range row.FindAllStringSubmatch(string(doc), -1) {
		documented = append(documented, m[1]+" "+m[2])
	}
	slices.Sort(documented)
	documented = slices.Compact(documented)
	if ops := Load(t).Operations(); !slices.Equal(documented, ops) {
		t.Errorf("docs/admin-api.md's routes %q, want the spec's %q", documented, ops)
	}
}
