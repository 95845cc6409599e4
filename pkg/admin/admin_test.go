package admin_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/dynamolocal"
	"github.com/keyward/keyward/internal/openapitest"
	"github.com/keyward/keyward/internal/storetest"
	"github.com/keyward/keyward/internal/testflush"
	"github.com/keyward/keyward/pkg/admin"
	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/authorizer"
	"github.com/keyward/keyward/pkg/clock"
	"github.com/keyward/keyward/pkg/config"
	"github.com/keyward/keyward/pkg/leaks"
	"github.com/keyward/keyward/pkg/lifecycle"
	"github.com/keyward/keyward/pkg/store"
)

func TestMain(m *testing.M) { dynamolocal.Main(m) }

// fakeLimits records rate-limit provisioning and can fail it.
type fakeLimits struct {
	mu      sync.Mutex
	tiers   map[string]string // identity -> tier
	removed []string
	fail    error
}

func (f *fakeLimits) Provision(_ context.Context, identity, tier string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	f.tiers[identity] = tier
	return nil
}

func (f *fakeLimits) Remove(_ context.Context, identity string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.tiers, identity)
	f.removed = append(f.removed, identity)
	return nil
}

// fakeFlusher records the authorizer cache's flushes.
type fakeFlusher struct {
	testflush.Recorder
	t *testing.T
}

// count is how many changes were made effective: each flushes twice, the
// second time once a decision that read the key before the change can no
// longer reach the cache (authorizer.Invalidate).
func (f *fakeFlusher) count() int {
	f.t.Helper()
	at := f.At()
	if len(at)%2 != 0 {
		f.t.Fatalf("%d flushes: a change flushed once", len(at))
	}
	for i := 0; i < len(at); i += 2 {
		if gap := at[i+1].Sub(at[i]); gap < authorizer.RecheckAfter {
			f.t.Fatalf("the second flush came %v after the first, before authorizer.RecheckAfter", gap)
		}
	}
	return len(at) / 2
}

type harness struct {
	t       *testing.T
	st      store.Store
	svc     *lifecycle.Service
	srv     http.Handler
	gw      config.Gateway
	clk     *clock.Manual
	limits  *fakeLimits
	flusher *fakeFlusher
	logs    *bytes.Buffer
	spec    *openapitest.Spec
	leaks   admin.Leaks // GitHub's signing keys and the responder
	mu      sync.Mutex
	secrets []string // every secret the API handed out

	admin, writer, reader, beta admin.Caller
	testAdmin                   admin.Caller // acme's keys:admin in the test environment
}

var start = time.Date(2026, 7, 1, 10, 0, 0, 0, time.UTC)

// forEachStore runs test against both backends with tenants acme and beta
// and management keys of each power.
func forEachStore(t *testing.T, test func(t *testing.T, h *harness)) {
	var clk *clock.Manual
	storetest.ForEach(t, func() time.Time { return clk.Now() }, func(t *testing.T, st store.Store) {
		clk = clock.NewManual(start)
		test(t, newHarness(t, st, clk))
	})
}

func newHarness(t *testing.T, st store.Store, clk *clock.Manual, opts ...lifecycle.Option) *harness {
	t.Helper()
	_, ring := storetest.Peppers(t, st, clk.Now())
	format, _ := apikey.NewFormat("sk")
	gw, err := config.LoadGateway()
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, st: st, clk: clk, gw: gw, limits: &fakeLimits{tiers: map[string]string{}},
		flusher: &fakeFlusher{Recorder: testflush.Recorder{Clock: clk}, t: t}, logs: &bytes.Buffer{}, spec: openapitest.Load(t)}
	h.svc = lifecycle.New(st, ring, format, append([]lifecycle.Option{lifecycle.WithClock(clk.Now),
		lifecycle.WithSleep(func(_ context.Context, d time.Duration) error { clk.Advance(d); return nil }),
		lifecycle.WithLogger(slog.New(slog.NewJSONHandler(h.logs, nil)))}, opts...)...)
	h.leaks = admin.Leaks{Responder: leaks.Responder{Keys: h.svc, Store: st, Peppers: ring, Format: format, Now: clk.Now}}
	h.build()

	operator := admin.Caller{Operator: true, OperatorID: "arn:aws:iam::111122223333:role/platform", RequestID: "req-op"}
	for _, tenant := range []string{"acme", "beta"} {
		_, body := h.ok(operator, "POST", "/v1/tenants", map[string]string{"tenant_id": tenant, "name": strings.ToUpper(tenant)}, 201)
		var out struct {
			Key     struct{ ID string }
			TestKey struct{ ID string } `json:"test_key"`
		}
		_ = json.Unmarshal(body, &out)
		c := admin.Caller{TenantID: tenant, KeyID: out.Key.ID, Scopes: []string{"keys:admin"}, RequestID: "req-" + tenant}
		if tenant == "acme" {
			h.admin = c
			h.testAdmin = admin.Caller{TenantID: tenant, KeyID: out.TestKey.ID, Scopes: []string{"keys:admin"}, RequestID: "req-acme-test"}
		} else {
			h.beta = c
		}
	}
	h.writer = h.managementKey([]string{"keys:write"})
	h.reader = h.managementKey([]string{"keys:read"})
	clk.Advance(time.Second)
	t.Cleanup(h.assertNoSecretLeaked)
	return h
}

func (h *harness) build() {
	h.srv = admin.New(admin.Config{Keys: h.svc, Store: h.st, Gateway: h.gw, RateLimits: h.limits, Flusher: h.flusher,
		Leaks: h.leaks, Logger: slog.New(slog.NewJSONHandler(h.logs, nil)), Now: h.clk.Now,
		Sleep: func(_ context.Context, d time.Duration) error { h.clk.Advance(d); return nil }})
}

// managementKey creates an acme key with the given management scopes and
// returns it as a caller.
func (h *harness) managementKey(scopes []string) admin.Caller {
	h.t.Helper()
	k := h.create(h.admin, map[string]any{"name": "mgmt", "environment": "live", "scopes": scopes,
		"rate_limit": map[string]int{"requests_per_minute": 6000}})
	return admin.Caller{TenantID: "acme", KeyID: k.ID, Scopes: scopes, RequestID: "req-mgmt"}
}

type keyJSON struct {
	ID, Name, Display, Environment, Status string
	Scopes                                 []string
	ExpiresAt                              *string `json:"expires_at"`
	ReplacedBy                             *string `json:"replaced_by"`
	Replaces                               *string
	AllowedIPs                             []string `json:"allowed_ips"`
	AllowBrowserWrites                     bool     `json:"allow_browser_writes"`
	RateLimit                              struct {
		RequestsPerMinute int `json:"requests_per_minute"`
		Burst             int
	} `json:"rate_limit"`
	CreatedBy *string `json:"created_by"`
}

func (h *harness) create(c admin.Caller, body map[string]any) keyJSON {
	h.t.Helper()
	_, raw := h.ok(c, "POST", "/v1/keys", body, 201)
	var out struct {
		Key    keyJSON
		Secret string
	}
	if err := json.Unmarshal(raw, &out); err != nil || out.Secret == "" {
		h.t.Fatalf("create answered %s", raw)
	}
	return out.Key
}

// do sends a request as the caller and checks the response against the
// OpenAPI document. body may be nil, a []byte sent as is, or a value sent
// as JSON.
func (h *harness) do(c admin.Caller, method, path string, body any, header ...string) (int, http.Header, []byte) {
	h.t.Helper()
	var raw []byte
	switch b := body.(type) {
	case nil:
	case []byte:
		raw = b
	default:
		raw, _ = json.Marshal(b)
	}
	req := httptest.NewRequest(method, path, bytes.NewReader(raw))
	if raw != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	req = req.WithContext(admin.WithCaller(req.Context(), c))
	rec := httptest.NewRecorder()
	h.srv.ServeHTTP(rec, req)
	res := rec.Result()
	out, _ := io.ReadAll(res.Body)
	checked := httptest.NewRequest(method, path, bytes.NewReader(raw))
	checked.Header = req.Header.Clone()
	h.spec.CheckResponse(h.t, checked, raw, res.StatusCode, res.Header, out)
	var secret struct {
		Secret string `json:"secret"`
	}
	if json.Unmarshal(out, &secret) == nil && secret.Secret != "" {
		h.mu.Lock()
		h.secrets = append(h.secrets, secret.Secret)
		h.mu.Unlock()
	}
	return res.StatusCode, res.Header, out
}

func (h *harness) ok(c admin.Caller, method, path string, body any, want int, header ...string) (http.Header, []byte) {
	h.t.Helper()
	status, hdr, out := h.do(c, method, path, body, header...)
	if status != want {
		h.t.Fatalf("%s %s: status %d, want %d: %s", method, path, status, want, out)
	}
	return hdr, out
}

// fails checks an error response: status, envelope type or code, param.
func (h *harness) fails(c admin.Caller, method, path string, body any, want int, code, param string, header ...string) {
	h.t.Helper()
	status, _, out := h.do(c, method, path, body, header...)
	var env struct {
		Error struct{ Type, Code, Message, Param string }
	}
	if err := json.Unmarshal(out, &env); err != nil || status != want || env.Error.Message == "" {
		h.t.Fatalf("%s %s: status %d, want %d: %s", method, path, status, want, out)
	}
	if code != "" && env.Error.Code != code && env.Error.Type != code {
		h.t.Fatalf("%s %s: code %q type %q, want %q: %s", method, path, env.Error.Code, env.Error.Type, code, out)
	}
	if param != "" && env.Error.Param != param {
		h.t.Fatalf("%s %s: param %q, want %q: %s", method, path, env.Error.Param, param, out)
	}
}

func (h *harness) count(tenant string) int { return h.countIn(tenant, "") }

// countIn counts a tenant's keys of one environment ("" for both).
func (h *harness) countIn(tenant, env string) int {
	h.t.Helper()
	n := 0
	for q := (store.KeyQuery{Environment: env, Limit: 100}); ; {
		page, err := h.st.ListKeys(h.t.Context(), tenant, q)
		if err != nil {
			h.t.Fatal(err)
		}
		n += len(page.Keys)
		if q.Cursor = page.NextCursor; q.Cursor == "" {
			return n
		}
	}
}

// assertNoSecretLeaked scans the logs and everything stored for every
// secret the API handed out.
func (h *harness) assertNoSecretLeaked() {
	var dump bytes.Buffer
	dump.Write(h.logs.Bytes())
	for _, tenant := range []string{"acme", "beta", "operator"} {
		page, _ := h.st.ListAudit(context.Background(), tenant, store.AuditQuery{Limit: 100})
		_ = json.NewEncoder(&dump).Encode(page)
		kp, _ := h.st.ListKeys(context.Background(), tenant, store.KeyQuery{Limit: 100})
		_ = json.NewEncoder(&dump).Encode(kp)
	}
	for _, s := range h.secrets {
		if strings.Contains(dump.String(), s) || strings.Contains(dump.String(), s[20:52]) {
			h.t.Errorf("a secret reached the logs or the store")
		}
	}
}

func TestCreateGetList(t *testing.T) {
	forEachStore(t, func(t *testing.T, h *harness) {
		_, raw := h.ok(h.testAdmin, "POST", "/v1/keys", map[string]any{
			"name": "billing sync", "description": "nightly", "environment": "test",
			"scopes": []string{"invoices:read", "customers:write"}, "expires_in": 86400,
			"allowed_ips": []string{"203.0.113.0/24"}, "allowed_origins": []string{"https://app.example.com"},
			"allow_browser_writes": true, "rate_limit": map[string]int{"requests_per_minute": 600}, "created_by": "mem_alice",
			"metadata": map[string]string{"team": "billing"},
		}, 201)
		var out struct {
			Key    keyJSON
			Secret string
		}
		_ = json.Unmarshal(raw, &out)
		format, _ := apikey.NewFormat("sk")
		tok, err := format.Parse(out.Secret)
		if err != nil || "key_"+tok.ID() != out.Key.ID || tok.Environment() != apikey.Test {
			t.Fatalf("secret %v does not belong to %s", err, out.Key.ID)
		}
		if out.Key.Display != "sk_test_…"+out.Secret[len(out.Secret)-4:] || out.Key.RateLimit.Burst != 100 || !out.Key.AllowBrowserWrites ||
			out.Key.ExpiresAt == nil || *out.Key.ExpiresAt != start.Add(time.Second+24*time.Hour).Format(time.RFC3339) {
			t.Fatalf("created key %+v", out.Key)
		}
		if h.limits.tiers["keywardkey"+tok.ID()] != "standard" {
			t.Fatalf("rate limit identities %v", h.limits.tiers)
		}
		_, got := h.ok(h.testAdmin, "GET", "/v1/keys/"+out.Key.ID, nil, 200)
		if strings.Contains(string(got), out.Secret[20:52]) || strings.Contains(string(got), "secret") || strings.Contains(string(got), "hash") {
			t.Fatalf("GET shows more than it may: %s", got)
		}
		_, listed := h.ok(h.testAdmin, "GET", "/v1/keys?environment=test&limit=10", nil, 200)
		var l struct {
			Data       []keyJSON
			NextCursor *string `json:"next_cursor"`
		}
		_ = json.Unmarshal(listed, &l)
		// The new key and the tenant's test admin key; no live key.
		if len(l.Data) != 2 || l.Data[0].ID != out.Key.ID || l.Data[1].ID != h.testAdmin.KeyID || l.NextCursor != nil {
			t.Fatalf("listing %s", listed)
		}
		// Pagination across pages.
		for range 5 {
			h.create(h.writer, map[string]any{"name": "n", "environment": "live", "scopes": []string{"invoices:read"}})
		}
		seen := map[string]bool{}
		cursor := ""
		for pages := 0; pages < 10; pages++ {
			path := "/v1/keys?limit=3"
			if cursor != "" {
				path += "&cursor=" + cursor
			}
			_, body := h.ok(h.reader, "GET", path, nil, 200)
			l.NextCursor = nil
			_ = json.Unmarshal(body, &l)
			for _, k := range l.Data {
				seen[k.ID] = true
			}
			if l.NextCursor == nil {
				break
			}
			cursor = *l.NextCursor
		}
		if live := h.countIn("acme", "live"); len(seen) != live {
			t.Fatalf("paged through %d keys of %d", len(seen), live)
		}
	})
}

// TestContact: a key's contact is set at creation, shown in listings,
// changed and cleared by PATCH; a tenant's default is set at onboarding;
// an address that is not one alone is refused with its field, changing
// nothing.
func TestContact(t *testing.T) {
	forEachStore(t, func(t *testing.T, h *harness) {
		type withContact struct {
			ID      string
			Contact *string
		}
		k := h.create(h.writer, map[string]any{"name": "n", "scopes": []string{"invoices:read"}, "contact": "billing@example.com"})
		_, listed := h.ok(h.writer, "GET", "/v1/keys?limit=100", nil, 200)
		var l struct{ Data []withContact }
		_ = json.Unmarshal(listed, &l)
		found := false
		for _, d := range l.Data {
			if d.ID == k.ID {
				found = d.Contact != nil && *d.Contact == "billing@example.com"
			}
		}
		if !found {
			t.Fatalf("the listing does not show the contact: %s", listed)
		}
		get := func() withContact {
			_, raw := h.ok(h.writer, "GET", "/v1/keys/"+k.ID, nil, 200)
			var got withContact
			_ = json.Unmarshal(raw, &got)
			return got
		}
		h.ok(h.writer, "PATCH", "/v1/keys/"+k.ID, map[string]any{"contact": "oncall@example.org"}, 200)
		if got := get(); got.Contact == nil || *got.Contact != "oncall@example.org" {
			t.Fatalf("after PATCH: %+v", got)
		}
		for _, bad := range []any{"Ops <ops@example.com>", "ops", 7} {
			h.fails(h.writer, "PATCH", "/v1/keys/"+k.ID, map[string]any{"contact": bad}, 400, "invalid_request", "contact")
			h.fails(h.writer, "POST", "/v1/keys", map[string]any{"name": "n", "scopes": []string{"invoices:read"}, "contact": bad}, 400, "invalid_request", "contact")
		}
		if got := get(); *got.Contact != "oncall@example.org" {
			t.Fatalf("a refused PATCH changed the contact: %+v", got)
		}
		h.ok(h.writer, "PATCH", "/v1/keys/"+k.ID, map[string]any{"contact": nil}, 200)
		if got := get(); got.Contact != nil {
			t.Fatalf("after clearing: %+v", got)
		}

		operator := admin.Caller{Operator: true, OperatorID: "arn:aws:iam::111122223333:role/platform", RequestID: "req-contact"}
		_, raw := h.ok(operator, "POST", "/v1/tenants", map[string]string{"tenant_id": "gamma", "name": "Gamma", "contact": "security@gamma.example"}, 201)
		var o struct{ Tenant struct{ Contact *string } }
		_ = json.Unmarshal(raw, &o)
		if o.Tenant.Contact == nil || *o.Tenant.Contact != "security@gamma.example" {
			t.Fatalf("onboarded tenant %s", raw)
		}
		if tn, err := h.st.GetTenant(t.Context(), "gamma"); err != nil || tn.Contact != "security@gamma.example" {
			t.Fatalf("stored tenant %+v %v", tn, err)
		}
		h.fails(operator, "POST", "/v1/tenants", map[string]string{"tenant_id": "delta", "name": "Delta", "contact": "nobody"}, 400, "invalid_request", "contact")
		if _, err := h.st.GetTenant(t.Context(), "delta"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("a refused onboarding left a tenant: %v", err)
		}
	})
}

func TestBadRequestsChangeNothing(t *testing.T) {
	forEachStore(t, func(t *testing.T, h *harness) {
		before := h.count("acme")
		valid := func() map[string]any {
			return map[string]any{"name": "x", "environment": "live", "scopes": []string{"invoices:read"}}
		}
		with := func(k string, v any) map[string]any { m := valid(); m[k] = v; return m }
		cases := []struct {
			body        any
			status      int
			code, param string
		}{
			{[]byte(`{"name":`), 400, "invalid_request", ""},
			{[]byte(`[]`), 400, "invalid_request", ""},
			{[]byte(`{"name":"x","environment":"live","scopes":["a:read"]} {}`), 400, "invalid_request", ""},
			{with("colour", "red"), 400, "invalid_request", "colour"},
			{with("scopes", "invoices:read"), 400, "invalid_request", "scopes"},
			{with("name", ""), 400, "invalid_request", "name"},
			{with("environment", "prod"), 400, "invalid_request", "environment"},
			{map[string]any{"name": "x", "environment": "live"}, 400, "invalid_request", "scopes"},
			{with("expires_at", "tomorrow"), 400, "invalid_request", "expires_at"},
			{with("expires_at", "2020-01-01T00:00:00Z"), 400, "invalid_request", "expires_at"},
			{func() any { m := with("expires_at", "2030-01-01T00:00:00Z"); m["expires_in"] = 60; return m }(), 400, "invalid_request", "expires_in"},
			{with("expires_in", 0), 400, "invalid_request", "expires_in"},
			{with("rate_limit", map[string]int{"requests_per_minute": 61}), 400, "invalid_request", "rate_limit.requests_per_minute"},
			{with("allowed_ips", []string{"300.1.1.1"}), 400, "invalid_request", "allowed_ips"},
			{with("allowed_origins", []string{"*"}), 400, "invalid_request", "allowed_origins"},
			{with("allow_browser_writes", "yes"), 400, "invalid_request", "allow_browser_writes"},
			{with("allow_browser_writes", true), 400, "invalid_request", "allow_browser_writes"},
			{func() any {
				m := with("allowed_origins", []string{"https://app.example.com"})
				m["scopes"] = []string{"invoices:write"}
				return m
			}(), 400, "invalid_request", "scopes"},
			{with("metadata", map[string]int{"n": 1}), 400, "invalid_request", "metadata"},
			// Text that would pose as other text in a listing: direction
			// overrides, invisible format characters, line separators.
			{with("name", "invoices\u202efdp.exe"), 400, "invalid_request", "name"},
			{with("name", "a\u200bb"), 400, "invalid_request", "name"},
			{with("description", "line\u2028break"), 400, "invalid_request", "description"},
			{with("description", "para\u2029graph"), 400, "invalid_request", "description"},
			{with("metadata", map[string]string{"team": "bill\u202eing"}), 400, "invalid_request", "metadata"},
			{with("metadata", map[string]string{"te\u2066am": "billing"}), 400, "invalid_request", "metadata"},
			{nil, 400, "invalid_request", ""},
		}
		for _, c := range cases {
			h.fails(h.writer, "POST", "/v1/keys", c.body, c.status, c.code, c.param)
		}
		huge := []byte(`{"name":"` + strings.Repeat("x", 70_000) + `"}`)
		h.fails(h.writer, "POST", "/v1/keys", huge, 413, "body_too_large", "")
		status, _, _ := h.do(h.writer, "POST", "/v1/keys", []byte(`name=x`), "Content-Type", "application/x-www-form-urlencoded")
		if status != 415 {
			t.Fatalf("form body: %d", status)
		}
		h.fails(h.reader, "GET", "/v1/keys?colour=red", nil, 400, "invalid_request", "colour")
		h.fails(h.reader, "GET", "/v1/keys?limit=0", nil, 400, "invalid_request", "limit")
		h.fails(h.reader, "GET", "/v1/keys?limit=5&limit=6", nil, 400, "invalid_request", "limit")
		h.fails(h.reader, "GET", "/v1/keys?cursor=bogus", nil, 400, "invalid_request", "cursor")
		h.fails(h.reader, "GET", "/v1/keys?status=gone", nil, 400, "invalid_request", "status")
		h.fails(h.reader, "GET", "/v1/audit?key_id=nope", nil, 400, "invalid_request", "key_id")
		h.fails(h.reader, "GET", "/v1/keys/key_doesnotexist", nil, 404, "not_found", "")
		h.fails(h.reader, "GET", "/v1/keys/not-a-key", nil, 404, "not_found", "")
		// Not an API route, so not in the spec: the handler still answers
		// with the envelope.
		rec := httptest.NewRecorder()
		h.srv.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/nothing", nil).WithContext(admin.WithCaller(t.Context(), h.reader)))
		if rec.Code != 404 || !strings.Contains(rec.Body.String(), `"type":"not_found"`) {
			t.Fatalf("unknown admin path: %d %s", rec.Code, rec.Body)
		}
		k := h.create(h.writer, valid())
		h.fails(h.writer, "PATCH", "/v1/keys/"+k.ID, map[string]any{}, 400, "invalid_request", "")
		h.fails(h.writer, "PATCH", "/v1/keys/"+k.ID, map[string]any{"hash": "x"}, 400, "invalid_request", "hash")
		h.fails(h.writer, "PATCH", "/v1/keys/"+k.ID, map[string]any{"name": nil}, 400, "invalid_request", "name")
		h.fails(h.writer, "PATCH", "/v1/keys/"+k.ID, map[string]any{"rate_limit": map[string]any{"rpm": 5}}, 400, "invalid_request", "rate_limit.rpm")
		h.fails(h.writer, "POST", "/v1/keys/"+k.ID+"/rotate", map[string]any{"expire_old_in": 8 * 86400}, 400, "invalid_request", "expire_old_in")
		h.fails(h.writer, "POST", "/v1/keys/"+k.ID+"/rotate", map[string]any{"expire_old_in": "soon"}, 400, "invalid_request", "expire_old_in")
		if n := h.count("acme"); n != before+1 {
			t.Fatalf("bad requests changed the key count: %d -> %d", before, n)
		}
		_, got := h.ok(h.reader, "GET", "/v1/keys/"+k.ID, nil, 200)
		var kj keyJSON
		_ = json.Unmarshal(got, &kj)
		if kj.Status != "active" || kj.Name != "x" {
			t.Fatalf("refused changes changed the key: %s", got)
		}
	})
}

func TestCrossTenantAccessIsNotFound(t *testing.T) {
	forEachStore(t, func(t *testing.T, h *harness) {
		k := h.create(h.admin, map[string]any{"name": "acme's", "environment": "live", "scopes": []string{"invoices:read"}, "created_by": "mem_x"})
		for _, r := range []struct {
			method, path string
			body         any
		}{
			{"GET", "/v1/keys/" + k.ID, nil},
			{"PATCH", "/v1/keys/" + k.ID, map[string]any{"name": "mine now"}},
			{"POST", "/v1/keys/" + k.ID + "/rotate", nil},
			{"POST", "/v1/keys/" + k.ID + "/revoke", nil},
		} {
			h.fails(h.beta, r.method, r.path, r.body, 404, "not_found", "")
		}
		_, body := h.ok(h.beta, "POST", "/v1/members/mem_x/revoke-keys", nil, 200)
		if !strings.Contains(string(body), `"revoked":0`) {
			t.Fatalf("beta revoked acme's member keys: %s", body)
		}
		_, body = h.ok(h.beta, "GET", "/v1/audit?key_id="+k.ID, nil, 200)
		if strings.Contains(string(body), k.ID) {
			t.Fatalf("beta sees acme's audit: %s", body)
		}
		_, body = h.ok(h.beta, "GET", "/v1/keys?limit=100", nil, 200)
		if strings.Contains(string(body), k.ID) {
			t.Fatal("beta lists acme's key")
		}
		_, got := h.ok(h.reader, "GET", "/v1/keys/"+k.ID, nil, 200)
		if !strings.Contains(string(got), `"status":"active"`) || !strings.Contains(string(got), `"name":"acme's"`) {
			t.Fatalf("acme's key after beta's attempts: %s", got)
		}
	})
}

func TestNoEscalation(t *testing.T) {
	forEachStore(t, func(t *testing.T, h *harness) {
		body := func(scopes ...string) map[string]any {
			return map[string]any{"name": "x", "environment": "live", "scopes": scopes}
		}
		for _, scopes := range [][]string{{"keys:read"}, {"keys:write"}, {"keys:admin"}, {"keys:*"}, {"*"}, {"invoices:read", "keys:read"}} {
			h.fails(h.writer, "POST", "/v1/keys", body(scopes...), 403, "insufficient_scope", "")
		}
		for _, scopes := range [][]string{{"keys:*"}, {"*"}} {
			h.fails(h.admin, "POST", "/v1/keys", body(scopes...), 403, "insufficient_scope", "")
		}
		h.create(h.admin, body("keys:write"))
		h.fails(h.reader, "POST", "/v1/keys", body("invoices:read"), 403, "insufficient_scope", "")
		// The key's stored scopes decide, whatever the context says.
		dataKey := h.create(h.admin, body("invoices:*"))
		data := admin.Caller{TenantID: "acme", KeyID: dataKey.ID, Scopes: []string{"keys:admin"}}
		h.fails(data, "GET", "/v1/keys", nil, 403, "insufficient_scope", "")

		// keys:write cannot touch management keys, nor make one.
		ordinary := h.create(h.writer, body("invoices:read"))
		h.fails(h.writer, "PATCH", "/v1/keys/"+ordinary.ID, map[string]any{"scopes": []string{"keys:admin"}}, 403, "insufficient_scope", "")
		h.fails(h.writer, "PATCH", "/v1/keys/"+h.admin.KeyID, map[string]any{"name": "pwned"}, 403, "insufficient_scope", "")
		h.fails(h.writer, "POST", "/v1/keys/"+h.admin.KeyID+"/revoke", nil, 403, "insufficient_scope", "")
		h.fails(h.writer, "POST", "/v1/keys/"+h.admin.KeyID+"/rotate", nil, 403, "insufficient_scope", "")
		h.fails(h.writer, "POST", "/v1/members/mem_x/revoke-keys", nil, 403, "insufficient_scope", "")
		h.ok(h.writer, "PATCH", "/v1/keys/"+ordinary.ID, map[string]any{"scopes": []string{"customers:write"}}, 200)

		// Without an authenticated caller, nothing is served.
		h.fails(admin.Caller{}, "GET", "/v1/keys", nil, 401, "unauthorized", "")
		h.fails(h.admin, "POST", "/v1/tenants", map[string]string{"tenant_id": "evil", "name": "e"}, 401, "unauthorized", "")
		h.fails(admin.Caller{Operator: true}, "GET", "/v1/keys", nil, 401, "unauthorized", "")
	})
}

func TestIdempotency(t *testing.T) {
	forEachStore(t, func(t *testing.T, h *harness) {
		body := map[string]any{"name": "retry me", "environment": "live", "scopes": []string{"invoices:read"}}
		before := h.count("acme")
		_, first := h.ok(h.writer, "POST", "/v1/keys", body, 201, "Idempotency-Key", "create-1")
		hdr, again := h.ok(h.writer, "POST", "/v1/keys", body, 201, "Idempotency-Key", "create-1")
		if hdr.Get("Idempotent-Replayed") != "true" || strings.Contains(string(again), `"secret"`) {
			t.Fatalf("replay: %v %s", hdr, again)
		}
		var a, b struct{ Key keyJSON }
		_ = json.Unmarshal(first, &a)
		_ = json.Unmarshal(again, &b)
		if a.Key.ID != b.Key.ID || h.count("acme") != before+1 {
			t.Fatalf("replay created another key: %s vs %s", a.Key.ID, b.Key.ID)
		}
		body["name"] = "different"
		h.fails(h.writer, "POST", "/v1/keys", body, 422, "idempotency_key_reused", "", "Idempotency-Key", "create-1")
		// Keys are per tenant: beta may use the same one.
		h.ok(h.beta, "POST", "/v1/keys", body, 201, "Idempotency-Key", "create-1")
		h.fails(h.writer, "POST", "/v1/keys", body, 400, "invalid_request", "Idempotency-Key", "Idempotency-Key", strings.Repeat("k", 256))
		h.fails(h.writer, "POST", "/v1/keys", body, 400, "invalid_request", "Idempotency-Key", "Idempotency-Key", "")

		// A request still running holds its key, until it is abandoned.
		raw, _ := json.Marshal(body)
		sum := sha256.Sum256([]byte("POST /v1/keys\n" + string(raw)))
		now := h.clk.Now()
		// (It began a moment ago: a claim made at this very instant with this
		// request would be this request's own.)
		running := store.Idempotency{TenantID: "acme:live", Key: "busy", RequestHash: hex.EncodeToString(sum[:]), CreatedAt: now.Add(-time.Second), ExpiresAt: now.Add(time.Hour)}
		if err := h.st.PutIdempotency(t.Context(), running); err != nil {
			t.Fatal(err)
		}
		h.fails(h.writer, "POST", "/v1/keys", body, 409, "idempotency_key_in_use", "", "Idempotency-Key", "busy")
		h.clk.Advance(3 * time.Minute)
		h.ok(h.writer, "POST", "/v1/keys", body, 201, "Idempotency-Key", "busy")

		// Concurrent identical creates make exactly one key.
		before = h.count("acme")
		var wg sync.WaitGroup
		statuses := make([]int, 8)
		for i := range statuses {
			wg.Add(1)
			go func() {
				defer wg.Done()
				statuses[i], _, _ = h.do(h.writer, "POST", "/v1/keys", body, "Idempotency-Key", "race")
			}()
		}
		wg.Wait()
		if h.count("acme") != before+1 {
			t.Fatalf("%d keys from concurrent identical creates (statuses %v)", h.count("acme")-before, statuses)
		}
		for _, s := range statuses {
			if s != 201 && s != 409 {
				t.Fatalf("statuses %v", statuses)
			}
		}

		// A server-side failure releases the key for a retry.
		k := h.create(h.writer, map[string]any{"name": "r", "environment": "live", "scopes": []string{"invoices:read"}})
		h.flusher.Fail(errors.New("TooManyRequestsException"))
		h.fails(h.writer, "POST", "/v1/keys/"+k.ID+"/revoke", nil, 500, "cache_flush_failed", "", "Idempotency-Key", "revoke-1")
		h.flusher.Fail(nil)
		hdr, _ = h.ok(h.writer, "POST", "/v1/keys/"+k.ID+"/revoke", nil, 200, "Idempotency-Key", "revoke-1")
		if hdr.Get("Idempotent-Replayed") != "" {
			t.Fatal("a failed request was replayed instead of retried")
		}
	})
}

func TestRotateRevokeAndCacheFlush(t *testing.T) {
	forEachStore(t, func(t *testing.T, h *harness) {
		k := h.create(h.writer, map[string]any{"name": "r", "environment": "live", "scopes": []string{"invoices:read"}})
		flushes := h.flusher.count()
		_, raw := h.ok(h.writer, "POST", "/v1/keys/"+k.ID+"/rotate", nil, 201)
		var rot struct {
			Key         keyJSON
			Secret      string
			PreviousKey keyJSON `json:"previous_key"`
		}
		_ = json.Unmarshal(raw, &rot)
		if rot.Secret == "" || rot.PreviousKey.Status != "expiring" || *rot.Key.Replaces != k.ID ||
			*rot.PreviousKey.ExpiresAt != h.clk.Now().Add(12*time.Hour).Format(time.RFC3339) || h.flusher.count() != flushes {
			t.Fatalf("rotation with the default overlap: %s (flushes %d)", raw, h.flusher.count()-flushes)
		}
		_, raw = h.ok(h.writer, "POST", "/v1/keys/"+rot.Key.ID+"/rotate", map[string]int{"expire_old_in": 0}, 201)
		_ = json.Unmarshal(raw, &rot)
		if rot.PreviousKey.Status != "expired" || h.flusher.count() != flushes+1 {
			t.Fatalf("rotation with no overlap: %s (flushes %d)", raw, h.flusher.count()-flushes)
		}

		h.ok(h.writer, "PATCH", "/v1/keys/"+rot.Key.ID, map[string]any{"name": "renamed"}, 200)
		if h.flusher.count() != flushes+1 {
			t.Fatal("a rename flushed the cache")
		}
		h.ok(h.writer, "PATCH", "/v1/keys/"+rot.Key.ID, map[string]any{"allowed_ips": []string{"198.51.100.0/24"}, "expires_at": nil}, 200)
		if h.flusher.count() != flushes+2 {
			t.Fatal("narrowing did not flush the cache")
		}
		h.ok(h.writer, "PATCH", "/v1/keys/"+rot.Key.ID, map[string]any{"rate_limit": map[string]int{"requests_per_minute": 6000}}, 200)
		id, _ := apikey.ParsePublicID(rot.Key.ID)
		if h.limits.tiers["keywardkey"+id] != "high" {
			t.Fatalf("rate limit change not provisioned: %v", h.limits.tiers)
		}
		_, raw = h.ok(h.writer, "POST", "/v1/keys/"+rot.Key.ID+"/revoke", nil, 200)
		if !strings.Contains(string(raw), `"status":"revoked"`) || h.flusher.count() != flushes+3 {
			t.Fatalf("revoke: %s", raw)
		}
		if _, live := h.limits.tiers["keywardkey"+id]; live {
			t.Fatal("revoked key kept its rate-limit identity")
		}
		h.fails(h.writer, "POST", "/v1/keys/"+rot.Key.ID+"/rotate", nil, 409, "conflict", "")
		h.fails(h.writer, "PATCH", "/v1/keys/"+rot.Key.ID, map[string]any{"name": "x"}, 409, "conflict", "")

		for i := range 3 {
			h.create(h.admin, map[string]any{"name": fmt.Sprint(i), "environment": "live", "scopes": []string{"invoices:read"}, "created_by": "mem_gone"})
		}
		_, raw = h.ok(h.admin, "POST", "/v1/members/mem_gone/revoke-keys", nil, 200)
		if !strings.Contains(string(raw), `"revoked":3`) || h.flusher.count() != flushes+4 {
			t.Fatalf("member revocation: %s", raw)
		}

		// A rotation that ends the old key at once hands out the new secret
		// even when the flush fails, and says so.
		last := h.create(h.writer, map[string]any{"name": "l", "environment": "live", "scopes": []string{"invoices:read"}})
		h.flusher.Fail(errors.New("TooManyRequestsException"))
		hdr, raw := h.ok(h.writer, "POST", "/v1/keys/"+last.ID+"/rotate", map[string]int{"expire_old_in": 0}, 201)
		h.flusher.Fail(nil)
		if !strings.Contains(string(raw), `"secret":"sk_live_`) || !strings.Contains(hdr.Get("Warning"), "cache") {
			t.Fatalf("rotation with a failed flush: %v %s", hdr, raw)
		}

		// With caching off there is nothing to flush.
		flushes = h.flusher.count()
		h.gw.Authorizer.CacheTTLSeconds = 0
		h.build()
		other := h.create(h.writer, map[string]any{"name": "o", "environment": "live", "scopes": []string{"invoices:read"}})
		h.ok(h.writer, "POST", "/v1/keys/"+other.ID+"/revoke", nil, 200)
		if h.flusher.count() != flushes {
			t.Fatal("flushed a cache that is off")
		}
	})
}

func TestOperatorRoutes(t *testing.T) {
	forEachStore(t, func(t *testing.T, h *harness) {
		op := admin.Caller{Operator: true, OperatorID: "arn:aws:iam::111122223333:role/platform"}
		// A verified IAM identity that is not the operator role is told so.
		notOp := admin.Caller{Principal: "arn:aws:sts::111122223333:assumed-role/Admin/alice"}
		h.fails(notOp, "POST", "/v1/tenants", map[string]string{"tenant_id": "gamma", "name": "Gamma"}, 403, "not_operator", "")
		h.fails(notOp, "POST", "/v1/tenants/beta/offboard", nil, 403, "not_operator", "")
		_, raw := h.ok(op, "POST", "/v1/tenants", map[string]string{"tenant_id": "gamma", "name": "Gamma"}, 201)
		if !strings.Contains(string(raw), `"secret":"sk_live_`) || !strings.Contains(string(raw), `"keys:admin"`) {
			t.Fatalf("onboarding: %s", raw)
		}
		h.fails(op, "POST", "/v1/tenants", map[string]string{"tenant_id": "gamma", "name": "Again"}, 409, "conflict", "")
		h.fails(op, "POST", "/v1/tenants", map[string]string{"tenant_id": "Bad Id", "name": "x"}, 400, "invalid_request", "tenant_id")

		flushes := h.flusher.count()
		_, raw = h.ok(op, "POST", "/v1/tenants/beta/offboard", nil, 200)
		if !strings.Contains(string(raw), `"status":"offboarded"`) || !strings.Contains(string(raw), `"revoked":2`) || h.flusher.count() != flushes+1 {
			t.Fatalf("offboarding: %s", raw)
		}
		// Offboarding revoked beta's keys: its own admin key is refused.
		h.fails(h.beta, "POST", "/v1/keys", map[string]any{"name": "x", "environment": "live", "scopes": []string{"invoices:read"}}, 401, "unauthorized", "")
		h.fails(op, "POST", "/v1/tenants/nobody/offboard", nil, 404, "not_found", "")
		_, raw = h.ok(op, "POST", "/v1/tenants/beta/offboard", nil, 200)
		if !strings.Contains(string(raw), `"revoked":0`) {
			t.Fatalf("second offboarding: %s", raw)
		}
	})
}

func TestAudit(t *testing.T) {
	forEachStore(t, func(t *testing.T, h *harness) {
		k := h.create(h.writer, map[string]any{"name": "a", "environment": "live", "scopes": []string{"invoices:read"}})
		h.clk.Advance(time.Second)
		h.ok(h.writer, "PATCH", "/v1/keys/"+k.ID, map[string]any{"description": "d"}, 200)
		h.clk.Advance(time.Second)
		h.ok(h.writer, "POST", "/v1/keys/"+k.ID+"/revoke", nil, 200)
		_, raw := h.ok(h.reader, "GET", "/v1/audit?key_id="+k.ID+"&limit=2", nil, 200)
		var page struct {
			Data []struct {
				Action, Actor string
				KeyID         *string `json:"key_id"`
			}
			NextCursor *string `json:"next_cursor"`
		}
		_ = json.Unmarshal(raw, &page)
		if len(page.Data) != 2 || page.Data[0].Action != "key.revoked" || page.Data[1].Action != "key.updated" ||
			page.Data[0].Actor != h.writer.KeyID || *page.Data[0].KeyID != k.ID || page.NextCursor == nil {
			t.Fatalf("audit page: %s", raw)
		}
		_, raw = h.ok(h.reader, "GET", "/v1/audit?key_id="+k.ID+"&cursor="+*page.NextCursor, nil, 200)
		if !strings.Contains(string(raw), "key.created") {
			t.Fatalf("second audit page: %s", raw)
		}
	})
}

// TestSpecCoversEveryRoute: the OpenAPI document and the route table the
// authorizer and the CDK stack use list the same admin routes.
func TestSpecCoversEveryRoute(t *testing.T) {
	spec := openapitest.Load(t)
	documented := map[string]bool{}
	for _, op := range spec.Operations() {
		documented[op] = true
	}
	for _, r := range config.AdminRoutes().Routes {
		op := r.Method + " " + r.Path
		if !documented[op] {
			t.Errorf("%s is routed but not documented", op)
		}
		delete(documented, op)
	}
	for op := range documented {
		t.Errorf("%s is documented but not routed", op)
	}
}

// TestNoChangeToMorePowerfulKeys: keys:admin cannot rotate, change or
// revoke a key with more management power than its own (a * key made
// outside the API), and a replay is not served before the route's scope
// check.
func TestNoChangeToMorePowerfulKeys(t *testing.T) {
	forEachStore(t, func(t *testing.T, h *harness) {
		root, err := h.svc.Create(t.Context(), lifecycle.Actor{ID: "test"}, "acme", lifecycle.CreateParams{Name: "root", Environment: apikey.Live, Scopes: []string{"*"}})
		if err != nil {
			t.Fatal(err)
		}
		id := apikey.PublicID(root.Key.ID)
		h.fails(h.admin, "POST", "/v1/keys/"+id+"/rotate", nil, 403, "insufficient_scope", "")
		h.fails(h.admin, "PATCH", "/v1/keys/"+id, map[string]any{"name": "x"}, 403, "insufficient_scope", "")
		h.fails(h.admin, "POST", "/v1/keys/"+id+"/revoke", nil, 403, "insufficient_scope", "")
		if k, _ := h.st.GetKey(t.Context(), root.Key.ID); k.Status != store.KeyActive || k.Revision != 1 {
			t.Fatalf("the * key was changed: %+v", k)
		}

		body := map[string]any{"name": "r", "environment": "live", "scopes": []string{"invoices:read"}}
		h.ok(h.writer, "POST", "/v1/keys", body, 201, "Idempotency-Key", "shared-1")
		h.fails(h.reader, "POST", "/v1/keys", body, 403, "insufficient_scope", "", "Idempotency-Key", "shared-1")
	})
}

// TestOperatorIdempotencyIsNotATenants: a tenant named like the operators'
// namespace shares no Idempotency-Key with them.
func TestOperatorIdempotencyIsNotATenants(t *testing.T) {
	forEachStore(t, func(t *testing.T, h *harness) {
		op := admin.Caller{Operator: true, OperatorID: "arn:aws:iam::111122223333:role/platform"}
		// A verified IAM identity that is not the operator role is told so.
		notOp := admin.Caller{Principal: "arn:aws:sts::111122223333:assumed-role/Admin/alice"}
		h.fails(notOp, "POST", "/v1/tenants", map[string]string{"tenant_id": "gamma", "name": "Gamma"}, 403, "not_operator", "")
		h.fails(notOp, "POST", "/v1/tenants/beta/offboard", nil, 403, "not_operator", "")
		_, raw := h.ok(op, "POST", "/v1/tenants", map[string]string{"tenant_id": "operator", "name": "Operator Inc"}, 201)
		var out struct {
			Key struct{ ID string }
		}
		_ = json.Unmarshal(raw, &out)
		tenant := admin.Caller{TenantID: "operator", KeyID: out.Key.ID, Scopes: []string{"keys:admin"}}
		h.ok(tenant, "POST", "/v1/keys", map[string]any{"name": "k", "environment": "live", "scopes": []string{"invoices:read"}}, 201, "Idempotency-Key", "op-1")
		h.ok(op, "POST", "/v1/tenants", map[string]string{"tenant_id": "delta", "name": "Delta"}, 201, "Idempotency-Key", "op-1")
	})
}

// TestOnlyAdminsNameAMember: created_by comes from the caller's member;
// naming another is for keys:admin keys and operators (docs/admin-api.md).
func TestOnlyAdminsNameAMember(t *testing.T) {
	forEachStore(t, func(t *testing.T, h *harness) {
		body := map[string]any{"name": "for bob", "environment": "live", "scopes": []string{"invoices:read"}, "created_by": "mem_bob"}
		before := h.count("acme")
		h.fails(h.writer, "POST", "/v1/keys", body, 403, "exceeds_caller_restrictions", "created_by")
		if n := h.count("acme"); n != before {
			t.Fatalf("a refused create changed the key count: %d -> %d", before, n)
		}
		if k := h.create(h.admin, body); k.CreatedBy == nil || *k.CreatedBy != "mem_bob" {
			t.Fatalf("an admin's key for bob: %+v", k)
		}
	})
}

// TestUsage: a key's usage by minute, hour and day, its recent requests,
// newest first; another tenant's key is not found, and usage the store
// holds under another tenant is not shown; bad ranges are refused.
func TestUsage(t *testing.T) {
	forEachStore(t, func(t *testing.T, h *harness) {
		k := h.create(h.writer, map[string]any{"name": "n", "scopes": []string{"invoices:read"}})
		id, _ := apikey.ParsePublicID(k.ID)
		h0 := start.Add(-2 * time.Hour) // the clock stands at start
		for i, at := range []time.Time{h0.Add(5 * time.Minute), h0.Add(5*time.Minute + 30*time.Second), h0.Add(70 * time.Minute)} {
			m := store.UsageMinute{KeyID: id, TenantID: "acme", Minute: at.Truncate(time.Minute), Counts: store.UsageCounts{OK: 2, Throttled: int64(i)},
				Networks: []string{"203.0.113.0/24"}, First: at, Last: at,
				Recent: []store.RecentRequest{{Time: at, Method: "GET", Route: "/invoices/{id}", Status: 200, SourceIP: "203.0.113.9", LatencyMS: 3}}}
			if _, err := h.st.AddUsage(t.Context(), m); err != nil {
				t.Fatal(err)
			}
		}
		// An hour the store holds under another tenant is never shown,
		// in the series or the recent requests.
		// Hours of their own: the store refuses a second tenant in one.
		for _, foreign := range []time.Time{h0.Add(-time.Hour), start} {
			if _, err := h.st.AddUsage(t.Context(), store.UsageMinute{KeyID: id, TenantID: "beta", Minute: foreign.Truncate(time.Minute),
				Counts: store.UsageCounts{OK: 100}, First: foreign, Last: foreign,
				Recent: []store.RecentRequest{{Time: foreign, Method: "GET", Route: "/foreign", Status: 200, SourceIP: "198.51.100.1"}}}); err != nil {
				t.Fatal(err)
			}
		}
		type series struct {
			Data []struct {
				Start    string
				Requests map[string]int
			}
			Requests  map[string]int
			Networks  []string
			FirstSeen *string `json:"first_seen"`
		}
		get := func(query string) series {
			_, raw := h.ok(h.reader, "GET", "/v1/keys/"+k.ID+"/usage"+query, nil, 200)
			var s series
			_ = json.Unmarshal(raw, &s)
			return s
		}
		hourly := get("")
		if len(hourly.Data) != 2 || hourly.Data[0].Start != h0.Format(time.RFC3339) || hourly.Data[0].Requests["2xx"] != 4 || hourly.Data[0].Requests["429"] != 1 ||
			hourly.Requests["2xx"] != 6 || hourly.Requests["429"] != 3 || len(hourly.Networks) != 1 || hourly.FirstSeen == nil {
			t.Fatalf("hourly %+v", hourly)
		}
		minutes := get("?granularity=minute&from=" + h0.Format(time.RFC3339) + "&to=" + h0.Add(time.Hour).Format(time.RFC3339))
		if len(minutes.Data) != 1 || minutes.Data[0].Start != h0.Add(5*time.Minute).Format(time.RFC3339) || minutes.Data[0].Requests["2xx"] != 4 {
			t.Fatalf("minutes %+v", minutes)
		}
		if daily := get("?granularity=day"); len(daily.Data) != 1 || daily.Requests["2xx"] != 6 {
			t.Fatalf("daily %+v", daily)
		}
		// A series of days over most of the retention reaches back as far.
		longAgo := start.Add(-80 * 24 * time.Hour)
		if _, err := h.st.AddUsage(t.Context(), store.UsageMinute{KeyID: id, TenantID: "acme", Minute: longAgo, Counts: store.UsageCounts{OK: 5},
			First: longAgo, Last: longAgo}); err != nil {
			t.Fatal(err)
		}
		if daily := get("?granularity=day&from=" + start.Add(-89*24*time.Hour).Format(time.RFC3339)); len(daily.Data) != 2 || daily.Requests["2xx"] != 11 {
			t.Fatalf("90 days of days %+v", daily)
		}

		_, raw := h.ok(h.reader, "GET", "/v1/keys/"+k.ID+"/requests?limit=2", nil, 200)
		var recent struct {
			Data []struct{ Time, Route string }
		}
		_ = json.Unmarshal(raw, &recent)
		if len(recent.Data) != 2 || recent.Data[0].Time != h0.Add(70*time.Minute).Format(time.RFC3339Nano) || recent.Data[0].Route != "/invoices/{id}" {
			t.Fatalf("recent %s", raw)
		}

		h.fails(h.beta, "GET", "/v1/keys/"+k.ID+"/usage", nil, 404, "not_found", "")
		h.fails(h.beta, "GET", "/v1/keys/"+k.ID+"/requests", nil, 404, "not_found", "")
		for _, bad := range []struct{ query, param string }{
			{"?granularity=week", "granularity"},
			{"?from=yesterday", "from"},
			{"?from=" + start.Format(time.RFC3339) + "&to=" + h0.Format(time.RFC3339), "from"},
			{"?granularity=minute&from=" + start.Add(-8*24*time.Hour).Format(time.RFC3339) + "&to=" + start.Add(-7*24*time.Hour).Format(time.RFC3339), "from"},
			{"?granularity=minute&from=" + h0.Add(-48*time.Hour).Format(time.RFC3339), "from"},
			{"?granularity=hour&from=" + start.Add(-32*24*time.Hour).Format(time.RFC3339), "from"},
			{"?granularity=day&from=" + start.Add(-91*24*time.Hour).Format(time.RFC3339), "from"},
			{"?limit=5", "limit"},
		} {
			h.fails(h.reader, "GET", "/v1/keys/"+k.ID+"/usage"+bad.query, nil, 400, "invalid_request", bad.param)
		}
		h.fails(h.reader, "GET", "/v1/keys/"+k.ID+"/requests?limit=51", nil, 400, "invalid_request", "limit")
	})
}
