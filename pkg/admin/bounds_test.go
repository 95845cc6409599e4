package admin_test

import (
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/admin"
	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/store"
)

// caller returns the key k as the caller of a request.
func (h *harness) caller(k keyJSON) admin.Caller {
	return admin.Caller{TenantID: "acme", KeyID: k.ID, RequestID: "req-" + k.ID}
}

// TestEnvironmentIsolation: the key decides the environment, and test
// never touches live: a management key sees, creates and changes only keys
// of its own environment, and another environment's key is not found.
func TestEnvironmentIsolation(t *testing.T) {
	forEachStore(t, func(t *testing.T, h *harness) {
		body := func(env string, scopes ...string) map[string]any {
			return map[string]any{"name": "x", "environment": env, "scopes": scopes, "created_by": "mem_x"}
		}
		// The attack: a test keys:admin key minting live keys.
		h.fails(h.testAdmin, "POST", "/v1/keys", body("live", "keys:admin"), 403, "environment_mismatch", "environment")
		h.fails(h.testAdmin, "POST", "/v1/keys", body("live", "invoices:read"), 403, "environment_mismatch", "environment")
		h.fails(h.admin, "POST", "/v1/keys", body("test", "invoices:read"), 403, "environment_mismatch", "environment")
		// Without an environment, a key is made in the caller's.
		_, raw := h.ok(h.testAdmin, "POST", "/v1/keys", map[string]any{"name": "x", "scopes": []string{"invoices:read"}}, 201)
		if !strings.Contains(string(raw), `"environment":"test"`) {
			t.Fatalf("a key created by a test key: %s", raw)
		}

		live := h.create(h.admin, body("live", "invoices:read"))
		test := h.create(h.testAdmin, body("test", "invoices:read"))
		for _, tc := range []struct {
			caller admin.Caller
			other  keyJSON
		}{{h.testAdmin, live}, {h.admin, test}} {
			id := tc.other.ID
			h.fails(tc.caller, "GET", "/v1/keys/"+id, nil, 404, "not_found", "")
			h.fails(tc.caller, "PATCH", "/v1/keys/"+id, map[string]any{"name": "mine"}, 404, "not_found", "")
			h.fails(tc.caller, "POST", "/v1/keys/"+id+"/rotate", nil, 404, "not_found", "")
			h.fails(tc.caller, "POST", "/v1/keys/"+id+"/revoke", nil, 404, "not_found", "")
			h.fails(tc.caller, "POST", "/v1/keys/"+id+"/report-leak", nil, 404, "not_found", "")
		}
		h.fails(h.testAdmin, "GET", "/v1/keys?environment=live", nil, 403, "environment_mismatch", "environment")
		for _, tc := range []struct {
			caller      admin.Caller
			env, absent string
		}{{h.testAdmin, "test", live.ID}, {h.admin, "live", test.ID}} {
			_, listed := h.ok(tc.caller, "GET", "/v1/keys?limit=100", nil, 200)
			if strings.Contains(string(listed), tc.absent) || strings.Count(string(listed), `"environment":"`+tc.env+`"`) != h.countIn("acme", tc.env) {
				t.Fatalf("a %s key lists %s", tc.env, listed)
			}
			_, audit := h.ok(tc.caller, "GET", "/v1/audit?limit=100", nil, 200)
			if strings.Contains(string(audit), tc.absent) || !strings.Contains(string(audit), "tenant.created") {
				t.Fatalf("a %s key's audit log: %s", tc.env, audit)
			}
		}

		// A test key revokes only the member's test keys.
		_, raw = h.ok(h.testAdmin, "POST", "/v1/members/mem_x/revoke-keys", nil, 200)
		if !strings.Contains(string(raw), `"revoked":1`) {
			t.Fatalf("a test key revoking a member's keys: %s", raw)
		}
		if status, _ := h.statusOf(live.ID); status != store.KeyActive {
			t.Fatalf("the member's live key is %s after a test key revoked the member's keys", status)
		}
		if status, _ := h.statusOf(test.ID); status != store.KeyRevoked {
			t.Fatalf("the member's test key is %s", status)
		}
	})
}

// TestIdempotencyKeysArePerEnvironment: a test key neither replays a live
// key's answer nor learns from a 422 that a live request used the key.
func TestIdempotencyKeysArePerEnvironment(t *testing.T) {
	forEachStore(t, func(t *testing.T, h *harness) {
		live := h.create(h.admin, map[string]any{"name": "live billing", "environment": "live", "scopes": []string{"invoices:read"},
			"metadata": map[string]string{"owner": "cfo"}})
		patch := map[string]any{"description": "prod key"}
		h.ok(h.admin, "PATCH", "/v1/keys/"+live.ID, patch, 200, "Idempotency-Key", "upd-1")
		h.ok(h.admin, "PATCH", "/v1/keys/"+live.ID, patch, 200, "Idempotency-Key", "upd-2")
		h.fails(h.testAdmin, "PATCH", "/v1/keys/"+live.ID, patch, 404, "not_found", "", "Idempotency-Key", "upd-1")
		// Not 422: the live request is not the test key's to know of.
		h.fails(h.testAdmin, "PATCH", "/v1/keys/"+live.ID, map[string]any{"description": "x"}, 404, "not_found", "", "Idempotency-Key", "upd-2")
		_, raw := h.ok(h.testAdmin, "POST", "/v1/keys", map[string]any{"name": "t", "scopes": []string{"invoices:read"}}, 201, "Idempotency-Key", "upd-3")
		if strings.Contains(string(raw), "cfo") || !strings.Contains(string(raw), `"environment":"test"`) {
			t.Fatalf("the test key's own request: %s", raw)
		}
	})
}

// TestRestrictionsBoundWhatAKeyMakes: no request produces a key less
// restricted than its caller, in expiry, addresses, origins or rate.
func TestRestrictionsBoundWhatAKeyMakes(t *testing.T) {
	forEachStore(t, func(t *testing.T, h *harness) {
		in := func(d time.Duration) string { return h.clk.Now().Add(d).UTC().Format(time.RFC3339) }
		// The review's caller: keys:admin, expiring in 10 minutes, from
		// 127.0.0.1 only, 60 requests a minute. (A management key has no
		// allowed origins: a browser key never holds a management scope.)
		boss := h.caller(h.create(h.admin, map[string]any{"name": "temp admin", "environment": "live", "scopes": []string{"keys:admin"},
			"expires_in": 600, "allowed_ips": []string{"127.0.0.1"}}))
		within := func() map[string]any {
			return map[string]any{"name": "y", "environment": "live", "scopes": []string{"keys:admin"}, "expires_at": in(5 * time.Minute),
				"allowed_ips": []string{"127.0.0.1/32"}}
		}
		without := func(field string, v any) map[string]any {
			b := within()
			if v == nil {
				delete(b, field)
			} else {
				b[field] = v
			}
			return b
		}
		before := h.count("acme")
		for _, tc := range []struct {
			body  map[string]any
			param string
		}{
			{without("expires_at", nil), "expires_at"},
			{without("expires_at", in(11*time.Minute)), "expires_at"},
			{without("allowed_ips", nil), "allowed_ips"},
			{without("allowed_ips", []string{"127.0.0.0/8"}), "allowed_ips"},
			{without("allowed_ips", []string{"127.0.0.1", "10.0.0.1"}), "allowed_ips"},
			{without("rate_limit", map[string]int{"requests_per_minute": 6000}), "rate_limit"},
		} {
			h.fails(boss, "POST", "/v1/keys", tc.body, 403, "exceeds_caller_restrictions", tc.param)
		}
		if n := h.count("acme"); n != before {
			t.Fatalf("refused creates left %d keys", n-before)
		}
		made := h.create(boss, within())

		// Updates: lifting a restriction is refused, narrowing one is not.
		writer := h.caller(h.create(h.admin, map[string]any{"name": "writer", "environment": "live", "scopes": []string{"keys:write"},
			"expires_in": 600, "allowed_ips": []string{"10.0.0.0/8"}}))
		data := h.create(writer, map[string]any{"name": "data", "environment": "live", "scopes": []string{"invoices:read"},
			"expires_at": in(5 * time.Minute), "allowed_ips": []string{"10.1.0.0/16"}})
		for _, tc := range []struct {
			patch map[string]any
			param string
		}{
			{map[string]any{"allowed_ips": nil, "expires_at": nil}, "expires_at"},
			{map[string]any{"allowed_ips": nil}, "allowed_ips"},
			{map[string]any{"expires_at": nil}, "expires_at"},
			{map[string]any{"expires_at": in(time.Hour)}, "expires_at"},
			{map[string]any{"allowed_ips": []string{"192.0.2.1"}}, "allowed_ips"},
			{map[string]any{"rate_limit": map[string]int{"requests_per_minute": 600}}, "rate_limit"},
		} {
			h.fails(writer, "PATCH", "/v1/keys/"+data.ID, tc.patch, 403, "exceeds_caller_restrictions", tc.param)
		}
		h.ok(writer, "PATCH", "/v1/keys/"+data.ID, map[string]any{"allowed_ips": []string{"10.1.2.0/24"}, "expires_at": in(4 * time.Minute)}, 200)
		// A key outside the caller's bounds may still be narrowed.
		wide := h.create(h.admin, map[string]any{"name": "wide", "environment": "live", "scopes": []string{"invoices:read"},
			"allowed_ips": []string{"192.0.2.0/24"}})
		h.ok(writer, "PATCH", "/v1/keys/"+wide.ID, map[string]any{"allowed_ips": []string{"192.0.2.7"}}, 200)
		h.ok(writer, "PATCH", "/v1/keys/"+wide.ID, map[string]any{"name": "renamed"}, 200)

		// Granting an unrestricted key more power would make it a key the
		// caller could not have created: refused, whatever the fields.
		h.fails(boss, "PATCH", "/v1/keys/"+wide.ID, map[string]any{"scopes": []string{"keys:admin"}}, 403, "exceeds_caller_restrictions", "expires_at")
		h.fails(writer, "PATCH", "/v1/keys/"+wide.ID, map[string]any{"scopes": []string{"invoices:read", "customers:write"}}, 403, "exceeds_caller_restrictions", "expires_at")
		// Narrowing scopes is taking power away: always allowed.
		narrow := h.create(h.admin, map[string]any{"name": "narrow", "environment": "live", "scopes": []string{"invoices:write", "customers:read"}})
		h.ok(writer, "PATCH", "/v1/keys/"+narrow.ID, map[string]any{"scopes": []string{"invoices:read"}}, 200)

		// Rotation: the replacement inherits the old key's restrictions,
		// so a key outside the caller's bounds cannot be rotated by it.
		h.fails(writer, "POST", "/v1/keys/"+wide.ID+"/rotate", nil, 403, "exceeds_caller_restrictions", "expires_at")
		h.ok(writer, "POST", "/v1/keys/"+data.ID+"/rotate", nil, 201)
		h.ok(boss, "POST", "/v1/keys/"+made.ID+"/rotate", nil, 201)

		// Unrestricted callers are bounded by nothing.
		h.ok(h.admin, "PATCH", "/v1/keys/"+wide.ID, map[string]any{"allowed_ips": nil, "expires_at": nil}, 200)
	})
}

// TestBrowserKeysNeverManage: a management key stored with allowed origins
// before browser keys were refused management scopes is refused by the
// handler itself, whatever the gateway let through.
func TestBrowserKeysNeverManage(t *testing.T) {
	forEachStore(t, func(t *testing.T, h *harness) {
		k := h.create(h.admin, map[string]any{"name": "old admin", "environment": "live", "scopes": []string{"keys:admin"}})
		id, _ := apikey.ParsePublicID(k.ID)
		stored, err := h.st.GetKey(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		stored.AllowedOrigins = []string{"https://app.example.com"}
		if err := h.st.Apply(t.Context(), store.Change{Keys: []store.KeyWrite{{Key: stored, ExpectedRevision: stored.Revision}}}); err != nil {
			t.Fatal(err)
		}
		before := h.count("acme")
		h.fails(h.caller(k), "GET", "/v1/keys", nil, 403, "browser_endpoint_required", "")
		h.fails(h.caller(k), "POST", "/v1/keys", map[string]any{"name": "x", "environment": "live", "scopes": []string{"keys:admin"}},
			403, "browser_endpoint_required", "")
		if h.count("acme") != before {
			t.Fatal("a browser key made a key")
		}
	})
}
