package main

// The end-to-end suite of the local stack: each test runs the keyward
// binary TestMain built as `keyward dev` on its own port and data
// directory, and drives it over HTTP as a new user would, with the keys
// its banner prints. Tests that start their own processes run in parallel.
// Every process is stopped with SIGTERM, must exit 0 with "stopped" as its
// last log line, and must have logged only JSON lines holding no secret
// (stack.stop).

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// keyFields are the fields of the API's key resource (docs/openapi.yaml,
// Key: all required, no others).
var keyFields = []string{"id", "object", "name", "description", "display", "environment", "scopes", "status",
	"created_at", "created_by", "expires_at", "last_used_at", "revoked_at", "allowed_ips", "allowed_origins",
	"allow_browser_writes", "contact", "rate_limit", "replaces", "replaced_by", "metadata"}

func wantKeyShape(t *testing.T, what string, k map[string]any) {
	t.Helper()
	if len(k) != len(keyFields) {
		t.Errorf("%s: key has %d fields, want %d: %v", what, len(k), len(keyFields), k)
	}
	for _, f := range keyFields {
		if _, ok := k[f]; !ok {
			t.Errorf("%s: key lacks %q: %v", what, f, k)
		}
	}
	if k["object"] != "api_key" {
		t.Errorf("%s: object %v", what, k["object"])
	}
}

// parseTime reads an RFC 3339 time of the API.
func parseTime(t *testing.T, what string, v any) time.Time {
	t.Helper()
	s, _ := v.(string)
	at, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatalf("%s: %v is not an RFC 3339 time", what, v)
	}
	return at
}

// waitUntil polls the clock until when has passed; the wait is bounded by
// max, so a mistake cannot stall the suite.
func waitUntil(t *testing.T, when time.Time, max time.Duration) {
	t.Helper()
	if d := time.Until(when); d > max {
		t.Fatalf("refusing to wait %v (more than %v)", d, max)
	}
	for time.Now().Before(when) {
		time.Sleep(min(time.Until(when)+time.Millisecond, 20*time.Millisecond))
	}
}

func (s *stack) demoKey() string  { return s.banner.exports["KEYWARD_DEMO_KEY"] }
func (s *stack) adminKey() string { return s.banner.exports["KEYWARD_ADMIN_KEY"] }
func (s *stack) testAdminKey() string {
	return s.banner.exports["KEYWARD_TEST_ADMIN_KEY"]
}

// demoCaller is what the echo shows for the demo key.
func (s *stack) demoCaller() map[string]string {
	return caller("demo", s.banner.demoID, "live", "invoices:read")
}

// 1. The demo key on the built-in echo.
func TestDemoKeyCallsEcho(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	demo, admin := s.demoKey(), s.adminKey()
	if s.banner.exports["KEYWARD_OPERATOR_TOKEN"] != s.opToken {
		t.Errorf("banner's operator token %q, want the one set in KEYWARD_OPERATOR_TOKEN", s.banner.exports["KEYWARD_OPERATOR_TOKEN"])
	}
	for name, tok := range map[string]string{"KEYWARD_DEMO_KEY": demo, "KEYWARD_ADMIN_KEY": admin} {
		if err := validChecksum(tok); err != nil || !strings.HasPrefix(tok, "keyward_live_") {
			t.Errorf("%s: %v", name, err)
		}
	}
	_, _, demoRaw, _, _ := tokenParts(demo)
	if s.banner.demoID != "key_"+demoRaw {
		t.Errorf("banner names the demo key %q; its token's id is %q", s.banner.demoID, demoRaw)
	}

	who := s.demoCaller()
	wantEcho(t, "GET /invoices", s.get("/invoices", demo), "GET", "/invoices", nil, who)
	wantEcho(t, "GET /invoices/inv_1", s.get("/invoices/inv_1", demo), "GET", "/invoices/inv_1", nil, who)
	wantEcho(t, "GET /invoices/inv_1?expand=…", s.get("/invoices/inv_1?expand=lines&expand=tax", demo),
		"GET", "/invoices/inv_1", map[string][]string{"expand": {"lines", "tax"}}, who)
	// The README's other form: the token as the Basic user name.
	wantEcho(t, "GET /invoices with Basic", s.send(request{method: "GET", path: "/invoices", header: http.Header{"Authorization": {basic(demo)}}}),
		"GET", "/invoices", nil, who)

	// The admin key sees the demo tenant's two keys as the API shows them.
	list := decode(t, "GET /v1/keys", s.get("/v1/keys", admin), http.StatusOK)
	data, _ := list["data"].([]any)
	if list["object"] != "list" || len(data) != 2 || list["next_cursor"] != nil {
		t.Fatalf("GET /v1/keys: %v", list)
	}
	k := decode(t, "GET demo key", s.get("/v1/keys/"+s.banner.demoID, admin), http.StatusOK)
	wantKeyShape(t, "demo key", k)
	want := map[string]any{"id": s.banner.demoID, "name": "Demo key", "environment": "live", "scopes": []any{"invoices:read"},
		"status": "active", "created_by": "demo_member", "display": "keyward_live_…" + demo[len(demo)-4:],
		"rate_limit": map[string]any{"requests_per_minute": 60.0, "burst": 10.0}, "expires_at": nil, "revoked_at": nil}
	for f, v := range want {
		if !equalJSON(k[f], v) {
			t.Errorf("demo key %s = %v, want %v", f, k[f], v)
		}
	}
	if k["last_used_at"] == nil {
		t.Errorf("demo key was used but last_used_at is null")
	}
	s.stop()
}

// 2. Every refused credential gets the same 401.
func TestUnauthorized(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	demo, admin := s.demoKey(), s.adminKey()

	// The expiring key first: the other checks run while it expires. It
	// is never called before it has expired, or the gateway would cache
	// an Allow for up to the cache TTL (docs/authorizer.md, Expiry).
	before := time.Now()
	expID, expSecret, expKey := s.createKey(admin, `{"name":"short-lived","environment":"live","scopes":["invoices:read"],"expires_in":1}`)
	after := time.Now()
	expiresAt := parseTime(t, "expires_at", expKey["expires_at"]) // to the second
	if expiresAt.Before(before.Add(time.Second).Truncate(time.Second)) || expiresAt.After(after.Add(time.Second)) {
		t.Errorf("expires_in 1 at %v..%v gave expires_at %v", before, after, expiresAt)
	}

	revID, revSecret, _ := s.createKey(admin, `{"name":"to revoke","environment":"live","scopes":["invoices:read"]}`)
	s.revoke(admin, revID)

	prefix, env, demoRaw, demoSecret, err := tokenParts(demo)
	if err != nil {
		t.Fatal(err)
	}
	last := demo[len(demo)-1]
	wrongChecksum := demo[:len(demo)-1] + string(base62[(strings.IndexByte(base62, last)+1)%62])
	unknown := makeToken(prefix, env, randomBase62(t, 12), randomBase62(t, 32))
	wrongSecret := makeToken(prefix, env, demoRaw, randomBase62(t, 32))
	otherEnv := makeToken(prefix, "test", demoRaw, demoSecret)
	otherPrefix := makeToken("pk", env, demoRaw, demoSecret)
	for _, tok := range []string{wrongChecksum, unknown, wrongSecret, otherEnv, otherPrefix} {
		s.addSecret(tok)
	}
	if err := validChecksum(wrongChecksum); err == nil {
		t.Fatal("the altered token still has a valid checksum")
	}
	for _, tok := range []string{unknown, wrongSecret, otherEnv} {
		if err := validChecksum(tok); err != nil {
			t.Fatalf("made-up token %.12s…: %v", tok, err)
		}
	}

	for _, c := range []struct {
		what   string
		header []string // Authorization values
	}{
		{"no Authorization", nil},
		{"empty Authorization", []string{""}},
		{"Bearer and nothing", []string{"Bearer "}},
		{"malformed token", []string{"Bearer not-a-key"}},
		{"token too short", []string{"Bearer keyward_live_AbCdEf"}},
		{"unknown scheme", []string{"Token " + demo}},
		{"Basic with a password", []string{"Basic " + base64.StdEncoding.EncodeToString([]byte(demo+":pw"))}},
		{"wrong checksum", []string{"Bearer " + wrongChecksum}},
		{"other prefix", []string{"Bearer " + otherPrefix}},
		{"well-formed unknown key", []string{"Bearer " + unknown}},
		{"known id, wrong secret", []string{"Bearer " + wrongSecret}},
		{"the demo key in the test environment", []string{"Bearer " + otherEnv}},
		{"two credentials", []string{"Bearer " + demo, "Bearer " + admin}},
		{"comma-joined credentials", []string{"Bearer " + demo + ", Bearer " + admin}},
		{"revoked key", []string{"Bearer " + revSecret}},
	} {
		h := http.Header{}
		for _, v := range c.header {
			h.Add("Authorization", v)
		}
		want401(t, c.what, s.send(request{method: "GET", path: "/invoices", header: h}))
	}
	// An admin route refuses the same way.
	want401(t, "revoked key on /v1/keys", s.get("/v1/keys", revSecret))
	want401(t, "no key on /v1/keys", s.post("/v1/keys", "", `{"name":"x","environment":"live","scopes":["invoices:read"]}`))

	// The server set the expiry at most a second after the create answer
	// arrived; wait until then has passed (about a second, bounded).
	waitUntil(t, after.Add(time.Second+50*time.Millisecond), 2*time.Second)
	want401(t, "expired key", s.get("/invoices", expSecret))
	k := decode(t, "GET expired key", s.get("/v1/keys/"+expID, admin), http.StatusOK)
	if k["status"] != "expired" {
		t.Errorf("expired key has status %v", k["status"])
	}
	// Neither refusal touched the good keys.
	wantEcho(t, "demo key", s.get("/invoices", demo), "GET", "/invoices", nil, s.demoCaller())
	s.stop()
}

// 3. A route outside the key's scopes is 403, an unknown route 404.
func TestForbiddenAndNotFound(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	demo, admin := s.demoKey(), s.adminKey()

	// A fresh decision, then the cached one, then fresh again from the
	// cache: the answer per route never changes.
	wantGateway(t, "POST /invoices (read-only key)", s.post("/invoices", demo, `{"amount":100}`), http.StatusForbidden, body403Scope)
	wantEcho(t, "GET /invoices", s.get("/invoices", demo), "GET", "/invoices", nil, s.demoCaller())
	wantGateway(t, "POST /invoices again", s.post("/invoices", demo, ""), http.StatusForbidden, body403Scope)
	wantGateway(t, "GET /customers (read-only invoices key)", s.get("/customers", demo), http.StatusForbidden, body403Scope)
	wantGateway(t, "GET /v1/keys (demo key, no keys:read)", s.get("/v1/keys", demo), http.StatusForbidden, body403Scope)
	// keys:admin manages keys, nothing else.
	wantGateway(t, "GET /invoices with the admin key", s.get("/invoices", admin), http.StatusForbidden, body403Scope)

	// Write implies read, per resource.
	_, writer, _ := s.createKey(s.testAdminKey(), `{"name":"writer","environment":"test","scopes":["invoices:write"]}`)
	wid := "key_" + writer[len("keyward_test_"):len("keyward_test_")+12]
	wantEcho(t, "POST /invoices (invoices:write)", s.post("/invoices", writer, `{"amount":100}`), "POST", "/invoices", nil,
		caller("demo", wid, "test", "invoices:write"))
	wantEcho(t, "GET /invoices/inv_9 (invoices:write)", s.get("/invoices/inv_9", writer), "GET", "/invoices/inv_9", nil,
		caller("demo", wid, "test", "invoices:write"))
	wantGateway(t, "POST /customers (invoices:write)", s.post("/customers", writer, `{}`), http.StatusForbidden, body403Scope)

	for _, c := range []struct{ method, path, token string }{
		{"GET", "/nope", ""},
		{"GET", "/nope", demo},
		{"GET", "/invoices/inv_1/refunds", demo},
		{"DELETE", "/invoices", demo},
		{"PUT", "/v1/keys", admin},
		{"GET", "/v1/nope", admin},
		{"POST", "/", ""}, // GET / is the landing page (TestFrontDoor)
	} {
		wantGateway(t, c.method+" "+c.path, s.send(request{method: c.method, path: c.path, token: c.token}), http.StatusNotFound, body404Route)
	}
	// The admin API's own 404, for an id that names no key of the tenant.
	wantError(t, "GET /v1/keys/key_000000000000", s.get("/v1/keys/key_000000000000", admin), http.StatusNotFound, "not_found", "not_found")
	s.stop()
}

// 4. Past the default tier's burst of 10, a key gets 429 with Retry-After.
func TestRateLimit(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	admin, demo := s.adminKey(), s.demoKey()
	_, key, created := s.createKey(admin, `{"name":"busy","environment":"live","scopes":["invoices:read"]}`)
	if !equalJSON(created["rate_limit"], map[string]int{"requests_per_minute": 60, "burst": 10}) {
		t.Errorf("default rate limit %v", created["rate_limit"])
	}
	_, fast, _ := s.createKey(admin, `{"name":"standard tier","environment":"live","scopes":["invoices:read"],"rate_limit":{"requests_per_minute":600}}`)
	wantError(t, "a rate limit outside the tiers", s.post("/v1/keys", admin, `{"name":"x","environment":"live","scopes":["invoices:read"],"rate_limit":{"requests_per_minute":61}}`),
		http.StatusBadRequest, "invalid_request", "invalid_request")

	start := time.Now()
	ok := 0
	var throttled response
	for i := 0; i < 50; i++ {
		r := s.get("/invoices", key)
		if r.status == http.StatusTooManyRequests {
			throttled = r
			break
		}
		if r.status != http.StatusOK {
			t.Fatalf("request %d: %s", i+1, r)
		}
		ok++
	}
	elapsed := time.Since(start)
	throttledAt := time.Now()
	if throttled.status == 0 {
		t.Fatalf("no 429 after %d requests in %v", ok, elapsed)
	}
	wantGateway(t, "the request past the burst", throttled, http.StatusTooManyRequests, body429)
	retry, err := strconv.Atoi(throttled.header.Get("Retry-After"))
	if err != nil || retry < 0 {
		t.Fatalf("Retry-After %q", throttled.header.Get("Retry-After"))
	}
	// Burst 10, then one more per second.
	if maxOK := 10 + int(elapsed.Seconds()) + 1; ok < 10 || ok > maxOK {
		t.Errorf("%d requests passed in %v before the 429, want 10..%d", ok, elapsed, maxOK)
	}
	// Buckets are per key, and the standard tier's is 100.
	wantEcho(t, "another key", s.get("/invoices", demo), "GET", "/invoices", nil, s.demoCaller())
	for i := 0; i < 15; i++ {
		if r := s.get("/invoices", fast); r.status != http.StatusOK {
			t.Fatalf("standard-tier key, request %d: %s", i+1, r)
		}
	}
	// After the Retry-After delay the key is served again.
	deadline := throttledAt.Add(time.Duration(retry)*time.Second + 2*time.Second)
	for {
		r := s.get("/invoices", key)
		if r.status == http.StatusOK {
			if waited := time.Since(throttledAt); waited > time.Duration(retry)*time.Second+time.Second {
				t.Errorf("served again only after %v, Retry-After said %ds", waited, retry)
			}
			break
		}
		wantGateway(t, "while throttled", r, http.StatusTooManyRequests, body429)
		if time.Now().After(deadline) {
			t.Fatalf("still throttled %v after the 429", time.Since(throttledAt))
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.stop()
}

// 5. Rotation: an overlap keeps both secrets working; expire_old_in 0 ends
// the old one on the very next request despite a cached Allow.
func TestRotation(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	admin := s.adminKey()
	k1, s1, _ := s.createKey(admin, `{"name":"rotating","environment":"live","scopes":["invoices:read"],"created_by":"mem_carol"}`)
	who := func(id string) map[string]string { return caller("demo", id, "live", "invoices:read") }
	wantEcho(t, "first secret", s.get("/invoices", s1), "GET", "/invoices", nil, who(k1))

	before := time.Now()
	rot := decode(t, "rotate "+k1, s.post("/v1/keys/"+k1+"/rotate", admin, ""), http.StatusCreated)
	after := time.Now()
	k2, s2, key2 := s.created(rot)
	prev, _ := rot["previous_key"].(map[string]any)
	wantKeyShape(t, "rotated key", key2)
	wantKeyShape(t, "previous key", prev)
	if k2 == k1 || key2["replaces"] != k1 || key2["status"] != "active" || key2["created_by"] != "mem_carol" {
		t.Errorf("new key %v", key2)
	}
	if prev["id"] != k1 || prev["status"] != "expiring" || prev["replaced_by"] != k2 {
		t.Errorf("previous key %v", prev)
	}
	if end := parseTime(t, "previous expires_at", prev["expires_at"]); end.Before(before.Add(12*time.Hour).Truncate(time.Second)) || end.After(after.Add(12*time.Hour)) {
		t.Errorf("default overlap ends at %v, want 12 h after %v", end, before)
	}
	wantEcho(t, "old secret during the overlap", s.get("/invoices", s1), "GET", "/invoices", nil, who(k1))
	wantEcho(t, "new secret", s.get("/invoices", s2), "GET", "/invoices", nil, who(k2)) // now cached
	wantError(t, "rotating a replaced key", s.post("/v1/keys/"+k1+"/rotate", admin, ""), http.StatusConflict, "conflict", "conflict")
	wantError(t, "expire_old_in -1", s.post("/v1/keys/"+k2+"/rotate", admin, `{"expire_old_in":-1}`), http.StatusBadRequest, "invalid_request", "invalid_request")

	r := s.post("/v1/keys/"+k2+"/rotate", admin, `{"expire_old_in":0}`)
	rot = decode(t, "rotate "+k2+" with expire_old_in 0", r, http.StatusCreated)
	if w := r.header.Get("Warning"); w != "" {
		t.Errorf("Warning: %s", w)
	}
	k3, s3, _ := s.created(rot)
	if prev, _ := rot["previous_key"].(map[string]any); prev["id"] != k2 || prev["status"] != "expired" || prev["replaced_by"] != k3 {
		t.Errorf("previous key %v", prev)
	}
	want401(t, "the secret rotated with expire_old_in 0, cached Allow", s.get("/invoices", s2))
	wantEcho(t, "its replacement", s.get("/invoices", s3), "GET", "/invoices", nil, who(k3))
	wantEcho(t, "the first secret, still in its overlap", s.get("/invoices", s1), "GET", "/invoices", nil, who(k1))
	s.stop()
}

// 6. Revocation applies to the very next request although the gateway
// holds a cached Allow.
func TestRevocation(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	admin := s.adminKey()
	id, secret, _ := s.createKey(admin, `{"name":"doomed","environment":"live","scopes":["invoices:read"]}`)
	who := caller("demo", id, "live", "invoices:read")
	wantEcho(t, "before revocation", s.get("/invoices", secret), "GET", "/invoices", nil, who)
	wantEcho(t, "before revocation, cached", s.get("/invoices/inv_2", secret), "GET", "/invoices/inv_2", nil, who)

	k := s.revoke(admin, id)
	wantKeyShape(t, "revoked key", k)
	want401(t, "the next request", s.get("/invoices", secret))
	want401(t, "another route", s.get("/invoices/inv_2", secret))

	again := decode(t, "revoking again", s.post("/v1/keys/"+id+"/revoke", admin, ""), http.StatusOK)
	if again["status"] != "revoked" || again["revoked_at"] != k["revoked_at"] {
		t.Errorf("revoking again changed the key: %v, was %v", again, k)
	}
	wantError(t, "rotating a revoked key", s.post("/v1/keys/"+id+"/rotate", admin, ""), http.StatusConflict, "conflict", "conflict")
	list := decode(t, "GET /v1/keys?status=revoked", s.get("/v1/keys?status=revoked", admin), http.StatusOK)
	if data, _ := list["data"].([]any); len(data) != 1 || data[0].(map[string]any)["id"] != id {
		t.Errorf("revoked keys: %v", list)
	}
	wantEcho(t, "the demo key", s.get("/invoices", s.demoKey()), "GET", "/invoices", nil, s.demoCaller())
	s.stop()
}

// 7. Revoking a member's keys ends each of them at once; other members'
// keys keep working.
func TestMemberRevocation(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	admin := s.adminKey()
	type key struct{ id, secret string }
	var bob []key
	for i := range 3 {
		id, sec, k := s.createKey(admin, fmt.Sprintf(`{"name":"bob %d","environment":"live","scopes":["invoices:read"],"created_by":"mem_bob"}`, i))
		if k["created_by"] != "mem_bob" {
			t.Errorf("created_by %v", k["created_by"])
		}
		bob = append(bob, key{id, sec})
	}
	aliceID, alice, _ := s.createKey(admin, `{"name":"alice","environment":"live","scopes":["invoices:read"],"created_by":"mem_alice"}`)
	for _, k := range append(bob, key{aliceID, alice}) {
		wantEcho(t, "before: "+k.id, s.get("/invoices", k.secret), "GET", "/invoices", nil, caller("demo", k.id, "live", "invoices:read"))
	}

	got := decode(t, "revoke mem_bob", s.post("/v1/members/mem_bob/revoke-keys", admin, ""), http.StatusOK)
	if !equalJSON(got, map[string]any{"object": "revocation", "revoked": 3}) {
		t.Errorf("revoke-keys answered %v", got)
	}
	for _, k := range bob {
		want401(t, "after: "+k.id, s.get("/invoices", k.secret))
	}
	wantEcho(t, "alice's key", s.get("/invoices", alice), "GET", "/invoices", nil, caller("demo", aliceID, "live", "invoices:read"))

	list := decode(t, "bob's keys", s.get("/v1/keys?created_by=mem_bob", admin), http.StatusOK)
	data, _ := list["data"].([]any)
	if len(data) != 3 {
		t.Errorf("bob's keys: %v", list)
	}
	for _, d := range data {
		if d.(map[string]any)["status"] != "revoked" {
			t.Errorf("bob's key %v", d)
		}
	}
	again := decode(t, "revoke mem_bob again", s.post("/v1/members/mem_bob/revoke-keys", admin, ""), http.StatusOK)
	if !equalJSON(again, map[string]any{"object": "revocation", "revoked": 0}) {
		t.Errorf("revoke-keys again answered %v", again)
	}
	// keys:admin is needed: a keys:write key may not.
	_, writer, _ := s.createKey(admin, `{"name":"writer","environment":"live","scopes":["keys:write"]}`)
	wantGateway(t, "revoke-keys with keys:write", s.post("/v1/members/mem_alice/revoke-keys", writer, ""), http.StatusForbidden, body403Scope)
	wantEcho(t, "alice's key still", s.get("/invoices", alice), "GET", "/invoices", nil, caller("demo", aliceID, "live", "invoices:read"))
	s.stop()
}

// 8. Onboarding and offboarding a tenant with the operator token.
func TestTenantOffboarding(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	op, demoAdmin := s.opToken, s.adminKey()
	onboard := `{"tenant_id":"acme","name":"Acme"}`

	// The operator routes take the operator token and nothing else,
	// refused as API Gateway refuses a missing or bad SigV4 signature.
	wantError(t, "onboard without a token", s.post("/v1/tenants", "", onboard), http.StatusForbidden, "forbidden", "signature_required")
	wantError(t, "onboard with a wrong token", s.post("/v1/tenants", op+"x", onboard), http.StatusForbidden, "forbidden", "invalid_signature")
	wantError(t, "onboard with an API key", s.post("/v1/tenants", demoAdmin, onboard), http.StatusForbidden, "forbidden", "invalid_signature")
	wantError(t, "offboard with a wrong token", s.post("/v1/tenants/demo/offboard", "op_wrong", ""), http.StatusForbidden, "forbidden", "invalid_signature")

	got := decode(t, "onboard acme", s.post("/v1/tenants", op, onboard), http.StatusCreated)
	tenant, _ := got["tenant"].(map[string]any)
	if tenant["id"] != "acme" || tenant["object"] != "tenant" || tenant["name"] != "Acme" || tenant["status"] != "active" || tenant["offboarded_at"] != nil {
		t.Errorf("onboarded tenant %v", tenant)
	}
	acmeAdminID, acmeAdmin, adminKey := s.created(got)
	wantKeyShape(t, "acme's admin key", adminKey)
	if adminKey["name"] != "Admin key" || !equalJSON(adminKey["scopes"], []string{"keys:admin"}) || adminKey["environment"] != "live" {
		t.Errorf("acme's admin key %v", adminKey)
	}
	wantError(t, "onboarding acme twice", s.post("/v1/tenants", op, onboard), http.StatusConflict, "conflict", "conflict")

	keyID, key, _ := s.createKey(acmeAdmin, `{"name":"acme billing","environment":"live","scopes":["invoices:read"]}`)
	wantEcho(t, "acme's key", s.get("/invoices", key), "GET", "/invoices", nil, caller("acme", keyID, "live", "invoices:read"))
	list := decode(t, "acme's keys", s.get("/v1/keys", acmeAdmin), http.StatusOK)
	if data, _ := list["data"].([]any); len(data) != 2 {
		t.Errorf("acme lists %d keys, want its 2: %v", len(data), list)
	}
	// Tenants are isolated: the demo tenant cannot see acme's key.
	wantError(t, "demo admin reading acme's key", s.get("/v1/keys/"+keyID, demoAdmin), http.StatusNotFound, "not_found", "not_found")

	got = decode(t, "offboard acme", s.post("/v1/tenants/acme/offboard", op, ""), http.StatusOK)
	tenant, _ = got["tenant"].(map[string]any)
	if tenant["id"] != "acme" || tenant["status"] != "offboarded" || tenant["offboarded_at"] == nil || got["revoked"] != 3.0 || len(got) != 2 {
		t.Errorf("offboard answered %v", got)
	}
	want401(t, "acme's key (cached Allow)", s.get("/invoices", key))
	want401(t, "acme's admin key (cached Allow)", s.get("/v1/keys", acmeAdmin))
	// The tenant's own keys are revoked, so no request of acme reaches
	// the handler; the handler's 409 is checked through `keyward invoke`
	// below.
	want401(t, "creating a key in acme", s.post("/v1/keys", acmeAdmin, `{"name":"late","environment":"live","scopes":["invoices:read"]}`))

	again := decode(t, "offboard acme again", s.post("/v1/tenants/acme/offboard", op, ""), http.StatusOK)
	if again["revoked"] != 0.0 {
		t.Errorf("offboarding again revoked %v", again["revoked"])
	}
	wantError(t, "offboard an unknown tenant", s.post("/v1/tenants/nope/offboard", op, ""), http.StatusNotFound, "not_found", "not_found")
	wantEcho(t, "the demo key", s.get("/invoices", s.demoKey()), "GET", "/invoices", nil, s.demoCaller())
	decode(t, "the demo admin key", s.get("/v1/keys", demoAdmin), http.StatusOK)
	s.stop()

	// Past the gateway, the admin API itself reads the calling key, and
	// refuses acme's revoked admin key even with an authorizer context
	// that vouches for it (a stale cached decision, say): run the admin
	// handler on such an event, as API Gateway would deliver it.
	status, body := invokeAdminCreate(t, s.dataDir, "acme", acmeAdminID)
	if status != http.StatusUnauthorized {
		t.Fatalf("create in offboarded acme: %d %s", status, body)
	}
	var env map[string]map[string]any
	if err := json.Unmarshal([]byte(body), &env); err != nil || env["error"]["type"] != "unauthorized" {
		t.Errorf("create in offboarded acme: %s", body)
	}
	// The same event for the active demo tenant succeeds, so the 409 is
	// acme's state, not the event.
	demoAdminID := "key_" + demoAdmin[len("keyward_live_"):len("keyward_live_")+12]
	if status, body := invokeAdminCreate(t, s.dataDir, "demo", demoAdminID); status != http.StatusCreated {
		t.Errorf("create in demo through invoke: %d %s", status, body)
	}
}

// invokeAdminCreate runs `keyward invoke -fn admin` on a POST /v1/keys
// event from a management key of tenant, and returns the answer's status
// and body.
func invokeAdminCreate(t *testing.T, dataDir, tenant, keyID string) (int, string) {
	t.Helper()
	event := map[string]any{
		"resource": "/v1/keys", "path": "/v1/keys", "httpMethod": "POST",
		"headers":           map[string]string{"Content-Type": "application/json"},
		"multiValueHeaders": map[string][]string{"Content-Type": {"application/json"}},
		"requestContext": map[string]any{
			"resourcePath": "/v1/keys", "httpMethod": "POST", "path": "/local/v1/keys", "stage": "local", "requestId": "e2e-invoke",
			"authorizer": map[string]any{"principalId": keyID, "tenant_id": tenant, "key_id": keyID, "environment": "live", "scopes": "keys:admin"},
			"identity":   map[string]any{"sourceIp": "127.0.0.1"},
		},
		"body": `{"name":"late","environment":"live","scopes":["invoices:read"]}`, "isBase64Encoded": false,
	}
	file := filepath.Join(t.TempDir(), "event.json")
	if err := os.WriteFile(file, []byte(mustJSON(event)), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startDeadline)
	defer cancel()
	cmd := exec.CommandContext(ctx, keywardBin, "invoke", "-fn", "admin", "-event", file, "-data", dataDir)
	cmd.Env = cleanEnv()
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("keyward invoke: %v\nstderr:\n%s", err, stderr.String())
	}
	var resp struct {
		StatusCode int    `json:"statusCode"`
		Body       string `json:"body"`
	}
	if err := json.Unmarshal([]byte(stdout.String()), &resp); err != nil {
		t.Fatalf("keyward invoke printed %q: %v", stdout.String(), err)
	}
	return resp.StatusCode, resp.Body
}

// 9. A restart on the same data keeps every key, revocation and rate
// limit, and prints no secret.
func TestRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a := startStack(t, stackOptions{dataDir: dir})
	admin, demo := a.adminKey(), a.demoKey()
	keepID, keep, _ := a.createKey(admin, `{"name":"survivor","environment":"live","scopes":["invoices:read"]}`)
	revID, rev, _ := a.createKey(admin, `{"name":"revoked before the restart","environment":"live","scopes":["invoices:read"]}`)
	a.revoke(admin, revID)
	wantEcho(t, "before the restart", a.get("/invoices", keep), "GET", "/invoices", nil, caller("demo", keepID, "live", "invoices:read"))
	a.stop()

	b := startStack(t, stackOptions{dataDir: dir, addr: a.addr, opToken: a.opToken})
	for sec := range a.secrets {
		b.addSecret(sec)
	}
	if want := fmt.Sprintf("Reusing the data in %s", dir); !strings.Contains(b.banner.raw, want) {
		t.Errorf("second banner does not say %q:\n%s", want, b.banner.raw)
	}
	if len(b.banner.exports) != 1 || b.banner.exports["KEYWARD_OPERATOR_TOKEN"] != a.opToken {
		t.Errorf("second banner exports %v, want only the operator token", b.banner.exports)
	}
	if m := tokenPattern.FindAllString(b.banner.raw, -1); len(m) > 0 {
		t.Errorf("second banner prints %d tokens", len(m))
	}
	for _, sec := range []string{admin, demo, keep, rev} {
		if strings.Contains(b.banner.raw, sec) {
			t.Errorf("second banner prints a secret (%.12s…)", sec)
		}
	}

	wantEcho(t, "demo key after the restart", b.get("/invoices", demo), "GET", "/invoices", nil, a.demoCaller())
	// 200, not the 403 of a key without a usage plan: the rate-limit
	// identities survived.
	wantEcho(t, "a created key after the restart", b.get("/invoices", keep), "GET", "/invoices", nil, caller("demo", keepID, "live", "invoices:read"))
	want401(t, "the revoked key after the restart", b.get("/invoices", rev))
	_, fresh, _ := b.createKey(admin, `{"name":"after the restart","environment":"live","scopes":["invoices:read"]}`)
	if b.get("/invoices", fresh).status != http.StatusOK {
		t.Errorf("a key created after the restart is refused")
	}
	list := decode(t, "GET /v1/keys after the restart", b.get("/v1/keys", admin), http.StatusOK)
	if data, _ := list["data"].([]any); len(data) != 5 {
		t.Errorf("%d keys after the restart, want 5: %v", len(data), list)
	}

	// A second process on the same data is refused while one runs.
	ctx, cancel := context.WithTimeout(context.Background(), startDeadline)
	defer cancel()
	second := exec.CommandContext(ctx, keywardBin, "dev", "-addr", freeAddr(t), "-data", dir)
	second.Env = append(cleanEnv(), "KEYWARD_OPERATOR_TOKEN="+a.opToken)
	out, err := second.CombinedOutput()
	if code := second.ProcessState.ExitCode(); err == nil || code != 1 || !strings.Contains(string(out), "keyward:") {
		t.Errorf("second keyward dev on the same data: %v (code %d): %s", err, code, out)
	}
	wantEcho(t, "the first process still serves", b.get("/invoices", demo), "GET", "/invoices", nil, a.demoCaller())
	b.stop()
}

// 10. The curl examples of the banner work as printed, in order.
func TestBannerCurlExamples(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	env := s.banner.exports
	for _, name := range []string{"KEYWARD_ADMIN_KEY", "KEYWARD_DEMO_KEY", "KEYWARD_OPERATOR_TOKEN"} {
		if env[name] == "" {
			t.Fatalf("the banner exports no %s:\n%s", name, s.banner.raw)
		}
	}
	if env["KEYWARD_OPERATOR_TOKEN"] != s.opToken {
		t.Errorf("banner's operator token is not KEYWARD_OPERATOR_TOKEN")
	}
	demoID := s.banner.demoID
	// Followed in order, the examples do what the banner says: the
	// revocation after the rotation is the old key's.
	if !strings.Contains(s.banner.raw, "revoke the old demo key") || !strings.Contains(s.banner.raw, "the new key from the rotation keeps working") {
		t.Errorf("the banner does not say which key the revocation ends:\n%s", s.banner.raw)
	}
	var newSecret, rotatedSecret, acmeSecret string
	examples := []struct {
		method, path string
		check        func(r response)
	}{
		{"GET", "/invoices", func(r response) {
			wantEcho(t, "the demo call", r, "GET", "/invoices", nil, s.demoCaller())
		}},
		{"POST", "/invoices", func(r response) {
			wantGateway(t, "the scope example", r, http.StatusForbidden, body403Scope)
		}},
		{"POST", "/v1/keys", func(r response) {
			_, sec, k := s.created(decode(t, "create", r, http.StatusCreated))
			if k["name"] != "my integration" || k["environment"] != "test" || !equalJSON(k["scopes"], []string{"invoices:read", "customers:write"}) {
				t.Errorf("created %v", k)
			}
			newSecret = sec
		}},
		{"POST", "/v1/keys/" + demoID + "/rotate", func(r response) {
			m := decode(t, "rotate", r, http.StatusCreated)
			_, sec, _ := s.created(m)
			if prev, _ := m["previous_key"].(map[string]any); prev["id"] != demoID || prev["status"] != "expiring" {
				t.Errorf("rotate: previous key %v", prev)
			}
			rotatedSecret = sec
		}},
		{"POST", "/v1/keys/" + demoID + "/revoke", func(r response) {
			k := decode(t, "revoke", r, http.StatusOK)
			if k["id"] != demoID || k["status"] != "revoked" {
				t.Errorf("revoke answered %v", k)
			}
		}},
		{"POST", "/v1/tenants", func(r response) {
			m := decode(t, "onboard", r, http.StatusCreated)
			if tn, _ := m["tenant"].(map[string]any); tn["id"] != "acme" || tn["status"] != "active" {
				t.Errorf("onboard answered %v", m)
			}
			_, acmeSecret, _ = s.created(m)
		}},
	}
	if len(s.banner.curls) != len(examples) {
		t.Fatalf("the banner has %d curl examples, want %d:\n%s", len(s.banner.curls), len(examples), strings.Join(s.banner.curls, "\n"))
	}
	for i, line := range s.banner.curls {
		words, err := shellWords(line, env)
		if err != nil {
			t.Fatalf("example %d: %v", i+1, err)
		}
		c, err := parseCurl(words)
		if err != nil {
			t.Fatalf("example %d: %v: %s", i+1, err, line)
		}
		path, ok := strings.CutPrefix(c.url, s.base)
		if want := examples[i]; !ok || c.method != want.method || path != want.path {
			t.Fatalf("example %d is %s %s, want %s %s%s", i+1, c.method, c.url, want.method, s.base, want.path)
		}
		req, err := c.httpRequest()
		if err != nil {
			t.Fatal(err)
		}
		examples[i].check(s.do(req))
	}
	// What the examples did holds: the revoked demo secret is refused at
	// once, the secrets they returned work.
	want401(t, "the revoked demo key", s.get("/invoices", s.demoKey()))
	if t.Failed() {
		return
	}
	newID := "key_" + newSecret[len("keyward_test_"):len("keyward_test_")+12]
	wantEcho(t, "the created key", s.get("/invoices", newSecret), "GET", "/invoices", nil, caller("demo", newID, "test", "invoices:read customers:write"))
	rotatedID := "key_" + rotatedSecret[len("keyward_live_"):len("keyward_live_")+12]
	wantEcho(t, "the rotated demo key", s.get("/invoices", rotatedSecret), "GET", "/invoices", nil, caller("demo", rotatedID, "live", "invoices:read"))
	decode(t, "acme's admin key", s.get("/v1/keys", acmeSecret), http.StatusOK)
	s.stop()
}

// 11. With UPSTREAM, the user's service receives the caller the gateway
// vouches for, never the key or a client's claim to be a tenant.
func TestUpstream(t *testing.T) {
	t.Parallel()
	type seen struct {
		method, path, query, body string
		header                    http.Header
	}
	var mu sync.Mutex
	var got []seen
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, seen{r.Method, r.URL.Path, r.URL.RawQuery, string(b), r.Header.Clone()})
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Upstream", "yes")
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, `{"from":"upstream"}`)
	}))
	t.Cleanup(svc.Close)
	received := func() []seen {
		mu.Lock()
		defer mu.Unlock()
		return append([]seen(nil), got...)
	}

	s := startStack(t, stackOptions{upstream: svc.URL})
	demo, admin := s.demoKey(), s.adminKey()
	req, err := http.NewRequest("GET", s.base+"/invoices/inv_1?expand=lines", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+demo)
	req.Header.Set("X-Keyward-Tenant-Id", "evil")
	req.Header.Set("X-Keyward-Key-Id", "key_forged000000")
	req.Header.Set("X-Keyward-Environment", "test")
	req.Header.Set("X-Keyward-Scopes", "*")
	req.Header.Set("X-Keyward-Key-Name", "forged")
	req.Header["x-keyward-admin"] = []string{"true"} // as sent, not canonical
	req.Header.Set("X-Trace", "abc")
	r := s.do(req)
	if r.status != http.StatusAccepted || string(r.body) != `{"from":"upstream"}` || r.header.Get("X-Upstream") != "yes" {
		t.Errorf("the client got %s (X-Upstream %q), want the service's 202", r, r.header.Get("X-Upstream"))
	}
	calls := received()
	if len(calls) != 1 {
		t.Fatalf("the service got %d requests, want 1", len(calls))
	}
	c := calls[0]
	if c.method != "GET" || c.path != "/invoices/inv_1" || c.query != "expand=lines" {
		t.Errorf("the service got %s %s?%s", c.method, c.path, c.query)
	}
	wantHeaders := map[string]string{
		"X-Keyward-Tenant-Id": "demo", "X-Keyward-Key-Id": s.banner.demoID,
		"X-Keyward-Environment": "live", "X-Keyward-Scopes": "invoices:read",
	}
	for name, vals := range c.header {
		if strings.HasPrefix(name, "X-Keyward-") {
			if want, ok := wantHeaders[name]; !ok || len(vals) != 1 || vals[0] != want {
				t.Errorf("the service got %s: %q", name, vals)
			}
		}
	}
	for name, want := range wantHeaders {
		if c.header.Get(name) != want {
			t.Errorf("the service got %s %q, want %q", name, c.header.Get(name), want)
		}
	}
	if v := c.header.Values("Authorization"); len(v) != 1 || v[0] != "keyward-verified" {
		t.Errorf("the service got the Authorization header %q, want only keyward-verified", v)
	}
	if c.header.Get("X-Trace") != "abc" || c.header.Get("X-Forwarded-For") != "127.0.0.1" {
		t.Errorf("the service got X-Trace %q, X-Forwarded-For %q", c.header.Get("X-Trace"), c.header.Get("X-Forwarded-For"))
	}

	// Basic credentials do not pass either; a body does.
	_, writer, _ := s.createKey(admin, `{"name":"writer","environment":"live","scopes":["invoices:write"]}`)
	r = s.send(request{method: "POST", path: "/invoices", body: `{"amount":5}`, header: http.Header{"Authorization": {basic(writer)}}})
	if r.status != http.StatusAccepted {
		t.Errorf("POST /invoices: %s", r)
	}
	if calls = received(); len(calls) != 2 {
		t.Fatalf("the service got %d requests, want 2", len(calls))
	}
	if c := calls[1]; c.method != "POST" || c.body != `{"amount":5}` || c.header.Get("Content-Type") != "application/json" ||
		c.header.Get("Authorization") != "keyward-verified" || c.header.Get("X-Keyward-Scopes") != "invoices:write" {
		t.Errorf("the service got %s %s %q with %v", c.method, c.path, c.body, c.header)
	}

	// Refused requests never reach the service.
	want401(t, "no key", s.get("/invoices", ""))
	wantGateway(t, "out of scope", s.post("/invoices", demo, `{}`), http.StatusForbidden, body403Scope)
	wantGateway(t, "no route", s.get("/nope", demo), http.StatusNotFound, body404Route)
	if n := len(received()); n != 2 {
		t.Errorf("refused requests reached the service: %d requests", n)
	}
	var listening map[string]any
	for _, l := range s.logLines() {
		if l["msg"] == "listening" {
			listening = l
		}
	}
	if listening["upstream"] != svc.URL {
		t.Errorf("listening line names upstream %v, want %s", listening["upstream"], svc.URL)
	}
	s.stop()
}

// With UPSTREAM down, the gateway answers 502 and keeps serving.
func TestUpstreamDown(t *testing.T) {
	t.Parallel()
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close() // its address now refuses connections
	s := startStack(t, stackOptions{upstream: gone.URL})
	r := s.get("/invoices", s.demoKey())
	if r.status != http.StatusGatewayTimeout {
		t.Errorf("GET /invoices with the upstream down: %s, want 504 (INTEGRATION_FAILURE)", r)
	}
	wantGateway(t, "no route", s.get("/nope", ""), http.StatusNotFound, body404Route)
	decode(t, "the admin API", s.get("/v1/keys", s.adminKey()), http.StatusOK)
	s.stop()
	// API Gateway renders an integration failure through DEFAULT_5XX,
	// in the envelope every other error has.
	var env map[string]map[string]any
	if json.Unmarshal(r.body, &env) != nil || env["error"]["type"] != "api_error" || r.header.Get("Content-Type") != "application/json" {
		t.Errorf("the answer for an unreachable UPSTREAM is not the error envelope (Content-Type %q, body %q)", r.header.Get("Content-Type"), r.body)
	}
}

// 12. The logs: one JSON object per line, one access line per request
// under the id the client got, and no secret, whatever was sent.
func TestLogs(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	demo, admin := s.demoKey(), s.adminKey()
	_, secret, _ := s.createKey(admin, `{"name":"logged","environment":"live","scopes":["invoices:read"]}`)
	bogus := makeToken("keyward", "live", randomBase62(t, 12), randomBase62(t, 32))
	s.addSecret(bogus)
	type sent struct {
		id     string
		method string
		path   string
		status int
	}
	var all []sent
	record := func(method, path string, r response) {
		all = append(all, sent{r.header.Get("Request-Id"), method, path, r.status})
	}
	for _, c := range []request{
		{method: "GET", path: "/invoices", token: demo},
		{method: "GET", path: "/invoices", header: http.Header{"Authorization": {basic(secret)}}},
		{method: "GET", path: "/invoices", token: bogus},
		{method: "GET", path: "/invoices", token: demo[:len(demo)-1]},
		{method: "POST", path: "/invoices", token: demo},
		{method: "GET", path: "/v1/keys", token: admin},
		{method: "POST", path: "/v1/tenants", token: s.opToken + "x", body: `{"tenant_id":"acme","name":"Acme"}`},
		{method: "POST", path: "/v1/tenants", token: s.opToken, body: `{"tenant_id":"acme","name":"Acme"}`},
		{method: "GET", path: "/nope", token: secret},
	} {
		r := s.send(c)
		record(c.method, c.path, r)
		if c.path == "/v1/tenants" && r.status == http.StatusCreated {
			s.created(decode(t, "onboard", r, http.StatusCreated))
		}
	}
	s.stop()

	lines := s.logLines()
	kinds := map[string]int{}
	byID := map[string]map[string]any{}
	for _, l := range lines {
		msg, _ := l["msg"].(string)
		kinds[msg]++
		if msg == "gateway request" {
			id, _ := l["request_id"].(string)
			byID[id] = l
		}
	}
	for _, msg := range []string{"listening", "authorization decision", "gateway request", "admin request", "shutting down", "stopped"} {
		if kinds[msg] == 0 {
			t.Errorf("no %q line in the logs", msg)
		}
	}
	for _, c := range all {
		l, ok := byID[c.id]
		if !ok {
			t.Errorf("no access line for %s %s (request %s)", c.method, c.path, c.id)
			continue
		}
		if l["method"] != c.method || l["path"] != c.path || l["status"] != float64(c.status) || l["source_ip"] != "127.0.0.1" {
			t.Errorf("access line %v for %s %s answered %d", l, c.method, c.path, c.status)
		}
	}
}

// TestFirstStartOnABusyPort: a first start whose address is taken says so
// and fails before it creates anything, so the next start on a free port
// is still the first and prints the demo secrets.
func TestFirstStartOnABusyPort(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := filepath.Join(t.TempDir(), "data")
	ctx, cancel := context.WithTimeout(context.Background(), startDeadline)
	defer cancel()
	first := exec.CommandContext(ctx, keywardBin, "dev", "-addr", busy.Addr().String(), "-data", dir)
	first.Env = cleanEnv()
	out, err := first.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "address already in use") || !strings.Contains(string(out), "another keyward already running on "+busy.Addr().String()) {
		t.Fatalf("a start on a busy port: %v: %s", err, out)
	}
	if entries, _ := os.ReadDir(dir); len(entries) > 0 {
		t.Fatalf("the failed start left %d entries in the data directory", len(entries))
	}
	s := startStack(t, stackOptions{dataDir: dir})
	if s.adminKey() == "" || s.demoKey() == "" {
		t.Fatalf("the start after it is not a first start:\n%s", s.banner.raw)
	}
	s.stop()
}
