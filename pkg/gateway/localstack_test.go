package gateway_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/testclock"
	"github.com/keyward/keyward/pkg/admin"
	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/authorizer"
	"github.com/keyward/keyward/pkg/gateway"
	"github.com/keyward/keyward/pkg/keys"
	"github.com/keyward/keyward/pkg/pepper"
	"github.com/keyward/keyward/pkg/store/embedded"
)

// TestLocalStack wires the gateway as the local stack does, with the real
// authorizer and admin API on the embedded store, and follows a key from
// onboarding to revocation.
func TestLocalStack(t *testing.T) {
	ctx := t.Context()
	clock := testclock.New(t0)
	st := embedded.NewMemory(embedded.WithClock(clock.Now))
	kr, err := pepper.NewLocalKeyring(bytes.Repeat([]byte{7}, pepper.Size))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pepper.Create(ctx, st, kr, clock.Now()); err != nil {
		t.Fatal(err)
	}
	ring, err := pepper.Load(ctx, st, kr)
	if err != nil {
		t.Fatal(err)
	}
	format, _ := apikey.NewFormat("sk")
	cfg, table := loadGateway(t), routes(t)
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	authz, err := authorizer.New(authorizer.Config{Store: st, Peppers: ring, Format: format, Routes: table, Gateway: cfg, Logger: logger, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	// The admin API provisions rate limits in and flushes the gateway
	// that fronts it.
	var adminAPI http.Handler
	gw, err := gateway.New(gateway.Config{Routes: table, Gateway: cfg, Authorizer: authz,
		Admin:    http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { adminAPI.ServeHTTP(w, r) }),
		Upstream: gateway.Echo(), OperatorToken: "op-secret", Now: clock.Now, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	adminAPI = admin.New(admin.Config{Keys: keys.New(st, ring, format, keys.WithClock(clock.Now)), Store: st, Gateway: cfg,
		RateLimits: gw, Flusher: gw, Logger: logger, Now: clock.Now})

	send := func(method, path, secret string, body any, status int) (map[string]any, string) {
		t.Helper()
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		r := httptest.NewRequest(method, path, rd)
		r.Header.Set("Authorization", "Bearer "+secret)
		if body != nil {
			r.Header.Set("Content-Type", "application/json")
		}
		w := httptest.NewRecorder()
		gw.ServeHTTP(w, r)
		if w.Code != status {
			t.Fatalf("%s %s: %d %s, want %d", method, path, w.Code, w.Body, status)
		}
		var out map[string]any
		_ = json.Unmarshal(w.Body.Bytes(), &out)
		return out, w.Header().Get("Request-Id")
	}

	onboarded, onboardID := send("POST", "/v1/tenants", "op-secret", map[string]string{"tenant_id": "acme", "name": "ACME"}, 201)
	adminSecret, _ := onboarded["secret"].(string)
	created, _ := send("POST", "/v1/keys", adminSecret, map[string]any{"name": "billing", "environment": "live", "scopes": []string{"invoices:read"}}, 201)
	secret, _ := created["secret"].(string)
	keyID, _ := created["key"].(map[string]any)["id"].(string)

	echo, _ := send("GET", "/invoices/inv_1?expand=lines", secret, nil, 200)
	want := map[string]any{"tenant_id": "acme", "key_id": keyID, "environment": "live", "scopes": "invoices:read"}
	if got := echo["authorizer"].(map[string]any); len(got) != len(want) || got["tenant_id"] != "acme" || got["key_id"] != keyID ||
		got["environment"] != "live" || got["scopes"] != "invoices:read" {
		t.Fatalf("upstream saw %v, want %v", got, want)
	}
	denied, _ := send("POST", "/invoices", secret, map[string]int{"amount": 1}, 403)
	if code := denied["error"].(map[string]any)["code"]; code != "insufficient_scope" {
		t.Errorf("403 code %v", code)
	}

	// The operator's audit entry names the local operator and the
	// gateway's request id.
	audit, _ := send("GET", "/v1/audit", adminSecret, nil, 200)
	found := false
	for _, e := range audit["data"].([]any) {
		e := e.(map[string]any)
		found = found || e["actor"] == gateway.OperatorID && e["request_id"] == onboardID
	}
	if !found {
		t.Errorf("no audit entry by %s with request id %s: %v", gateway.OperatorID, onboardID, audit["data"])
	}

	// Revocation flushes the cache: the very next request is refused,
	// well within the TTL of the cached Allow.
	send("POST", "/v1/keys/"+keyID+"/revoke", adminSecret, nil, 200)
	refused, _ := send("GET", "/invoices/inv_1", secret, nil, 401)
	if !strings.Contains(refused["error"].(map[string]any)["message"].(string), "Invalid or missing API key") {
		t.Errorf("after revocation: %v", refused)
	}
}
