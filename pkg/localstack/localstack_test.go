package localstack_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/clock"
	"github.com/keyward/keyward/pkg/config"
	"github.com/keyward/keyward/pkg/jobs"
	"github.com/keyward/keyward/pkg/localstack"
	"github.com/keyward/keyward/pkg/store/embedded"
)

var t0 = time.Date(2026, 7, 1, 10, 0, 0, 0, time.UTC)

func open(t *testing.T, dir string, clk *clock.Manual) *localstack.Stack {
	t.Helper()
	s, err := localstack.Open(t.Context(), localstack.Options{DataDir: dir, OperatorToken: "op-secret",
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sender(t *testing.T, h http.Handler) func(method, path, secret string, body any, status int) (map[string]any, string) {
	return func(method, path, secret string, body any, status int) (map[string]any, string) {
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
		h.ServeHTTP(w, r)
		if w.Code != status {
			t.Fatalf("%s %s: %d %s, want %d", method, path, w.Code, w.Body, status)
		}
		var out map[string]any
		_ = json.Unmarshal(w.Body.Bytes(), &out)
		return out, w.Header().Get("Request-Id")
	}
}

// TestStack follows a key from onboarding to revocation through the
// emulated gateway, with the real authorizer and admin API.
func TestStack(t *testing.T) {
	clk := clock.NewManual(t0)
	s := open(t, t.TempDir(), clk)
	defer s.Close()
	send := sender(t, s.Handler)

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
		found = found || e["actor"] == localstack.OperatorSession && e["request_id"] == onboardID
	}
	if !found {
		t.Errorf("no audit entry by %s with request id %s: %v", localstack.OperatorSession, onboardID, audit["data"])
	}

	// Revocation flushes the cache: the very next request is refused,
	// well within the TTL of the cached Allow.
	send("POST", "/v1/keys/"+keyID+"/revoke", adminSecret, nil, 200)
	refused, _ := send("GET", "/invoices/inv_1", secret, nil, 401)
	if !strings.Contains(refused["error"].(map[string]any)["message"].(string), "Invalid or missing API key") {
		t.Errorf("after revocation: %v", refused)
	}
}

// TestRestart: the first start prints the demo keys once; a restart on the
// same data reuses them, with their rate-limit identities.
func TestRestart(t *testing.T) {
	dir, clk := t.TempDir(), clock.NewManual(t0)
	s := open(t, dir, clk)
	if s.Bootstrap == nil {
		t.Fatal("first start created no demo keys")
	}
	demo := s.Bootstrap.DemoKey.Token.Plain()
	var banner bytes.Buffer
	s.PrintBanner(&banner, "http://127.0.0.1:8080", dir)
	if !strings.Contains(banner.String(), demo) || !strings.Contains(banner.String(), s.Bootstrap.AdminKey.Token.Plain()) {
		t.Fatal("first banner lacks the demo secrets")
	}
	sender(t, s.Handler)("GET", "/invoices", demo, nil, 200)
	if _, err := localstack.Open(t.Context(), localstack.Options{DataDir: dir, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))}); err == nil {
		t.Fatal("a second stack opened the same data directory")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, dir, clk)
	defer s.Close()
	if s.Bootstrap != nil {
		t.Fatal("a restart created the demo tenant again")
	}
	banner.Reset()
	s.PrintBanner(&banner, "http://127.0.0.1:8080", dir)
	if strings.Contains(banner.String(), demo) || !strings.Contains(banner.String(), "Reusing") {
		t.Fatalf("restart banner:\n%s", banner.String())
	}
	sender(t, s.Handler)("GET", "/invoices", demo, nil, 200)
}

// TestPrefixChange: keys keep the prefix they were made with when the
// deployment's prefix changes; new keys get the new one.
func TestPrefixChange(t *testing.T) {
	dir, clk := t.TempDir(), clock.NewManual(t0)
	quiet := slog.New(slog.NewJSONHandler(io.Discard, nil))
	s, err := localstack.Open(t.Context(), localstack.Options{DataDir: dir, TokenPrefix: "sk", Logger: quiet, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	demo, admin := s.Bootstrap.DemoKey.Token.Plain(), s.Bootstrap.AdminKey.Token.Plain()
	if !strings.HasPrefix(demo, "sk_live_") {
		t.Fatalf("demo key %.12s… under prefix sk", demo)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, dir, clk)
	defer s.Close()
	send := sender(t, s.Handler)
	send("GET", "/invoices", demo, nil, 200)
	created, _ := send("POST", "/v1/keys", admin, map[string]any{"name": "new", "scopes": []string{"invoices:read"}}, 201)
	if secret := created["secret"].(string); !strings.HasPrefix(secret, "keyward_live_") {
		t.Fatalf("a key made after the change: %.16s…", secret)
	}
	// The prefix is part of the key: the same id and secret under another
	// prefix is not the key.
	send("GET", "/invoices", "keyward"+strings.TrimPrefix(demo, "sk"), nil, 401)
}

// TestEarlierDataDirectory: a data directory written by the version
// before the database (testdata/earlier-data: its JSON-lines journal and
// usage-plans.json, made by `keyward dev` at b6a630c) is carried over on
// the first start: every key answers as before, and the old files are
// set aside, never read again.
func TestEarlierDataDirectory(t *testing.T) {
	dir, secrets := earlierData(t)
	clk := clock.NewManual(time.Now())
	for range 2 {
		s := open(t, dir, clk)
		if s.Bootstrap != nil {
			t.Fatal("the demo tenant was created again")
		}
		send := sender(t, s.Handler)
		for _, name := range []string{"demo", "kept"} {
			send("GET", "/invoices", secrets[name], nil, 200)
		}
		send("GET", "/invoices", secrets["revoked"], nil, 401)
		list, _ := send("GET", "/v1/keys", secrets["admin"], nil, 200)
		if n := len(list["data"].([]any)); n != 4 {
			t.Fatalf("%d live keys listed, want 4: %v", n, list)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"keyward.journal", "usage-plans.json"} {
			if _, err := os.Stat(filepath.Join(dir, f)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s is still there: %v", f, err)
			}
			if _, err := os.Stat(filepath.Join(dir, f+".imported")); err != nil {
				t.Errorf("%s.imported: %v", f, err)
			}
		}
	}
}

// earlierData is a copy of testdata/earlier-data, and the secrets of its
// keys.
func earlierData(t *testing.T) (string, map[string]string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("testdata/earlier-data")); err != nil {
		t.Fatal(err)
	}
	// As keyward wrote them; git keeps no modes but the executable bit.
	files, _ := os.ReadDir(dir)
	for _, f := range files {
		if err := os.Chmod(filepath.Join(dir, f.Name()), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var secrets map[string]string
	raw, err := os.ReadFile("testdata/earlier-data.secrets.json")
	if err != nil || json.Unmarshal(raw, &secrets) != nil {
		t.Fatalf("secrets: %v", err)
	}
	return dir, secrets
}

// TestEarlierDataDirectoryAfterAFailedImport: a start that refused a
// damaged journal leaves the import to the next start, once the line is
// fixed; and an event the earlier version wrote to its audit log but never
// published is published then.
func TestEarlierDataDirectoryAfterAFailedImport(t *testing.T) {
	dir, secrets := earlierData(t)
	journal, eventsPath := filepath.Join(dir, "keyward.journal"), filepath.Join(dir, "events.jsonl")
	good, _ := os.ReadFile(journal)
	lines := bytes.Split(good, []byte("\n"))
	damaged := slices.Clone(lines)
	damaged[2] = append([]byte("x"), lines[2]...)
	if err := os.WriteFile(journal, bytes.Join(damaged, []byte("\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	events, _ := os.ReadFile(eventsPath)
	published := bytes.Split(bytes.TrimSpace(events), []byte("\n"))
	var lost struct{ ID string }
	if err := json.Unmarshal(published[len(published)-1], &lost); err != nil {
		t.Fatal(err)
	}
	// The earlier version died between its write and its publication.
	if err := os.WriteFile(eventsPath, bytes.Join(published[:len(published)-1], []byte("\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	clk := clock.NewManual(time.Now())
	quiet := slog.New(slog.NewJSONHandler(io.Discard, nil))
	if _, err := localstack.Open(t.Context(), localstack.Options{DataDir: dir, Logger: quiet, Now: clk.Now}); err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Fatalf("a start on a damaged journal: %v", err)
	}
	if err := os.WriteFile(journal, good, 0o600); err != nil {
		t.Fatal(err)
	}
	s := open(t, dir, clk)
	defer s.Close()
	sender(t, s.Handler)("GET", "/invoices", secrets["kept"], nil, 200)
	if err := s.PublishEvents(t.Context()); err != nil {
		t.Fatal(err)
	}
	if events, _ := os.ReadFile(eventsPath); !bytes.Contains(events, []byte(`"id":"`+lost.ID+`"`)) {
		t.Fatalf("the unpublished event %s is still missing", lost.ID)
	}
}

// TestOrphanPlansDropped: a plan whose key was never written (a create
// killed between provisioning its plan and writing its key) is dropped at
// the next start; the demo keys' plans stay.
func TestOrphanPlansDropped(t *testing.T) {
	dir, clk := t.TempDir(), clock.NewManual(t0)
	s := open(t, dir, clk)
	demo := s.Bootstrap.DemoKey.Token.Plain()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	orphan := config.Gateway{UsageIdentity: config.UsagePerKey}.RateLimitIdentity("demo", "NeverWritten")
	setPlans := func(fn func(st *embedded.Store) error) {
		t.Helper()
		st, err := embedded.Open(filepath.Join(dir, "keyward.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		if err := fn(st); err != nil {
			t.Fatal(err)
		}
	}
	setPlans(func(st *embedded.Store) error { return st.SetUsagePlan(t.Context(), orphan, "default") })
	s = open(t, dir, clk)
	sender(t, s.Handler)("GET", "/invoices", demo, nil, 200)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	setPlans(func(st *embedded.Store) error {
		plans, err := st.UsagePlans(t.Context())
		if err == nil && (plans[orphan] != "" || len(plans) != 3) {
			err = fmt.Errorf("plans after the start: %v", plans)
		}
		return err
	})
}

// TestInterruptedFirstStart: a first start that died before showing the
// demo secrets is reported, not silently reused.
func TestInterruptedFirstStart(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, clock.NewManual(t0))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "bootstrapped")); err != nil {
		t.Fatal(err)
	}
	_, err := localstack.Open(t.Context(), localstack.Options{DataDir: dir, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	if err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("reopening after an interrupted first start: %v", err)
	}
}

// TestEventsAndJobs: committed changes become events in events.jsonl, and
// the scheduled jobs run against the same data.
func TestEventsAndJobs(t *testing.T) {
	dir, clk := t.TempDir(), clock.NewManual(t0)
	s := open(t, dir, clk)
	defer s.Close()
	send := sender(t, s.Handler)
	created, _ := send("POST", "/v1/keys", s.Bootstrap.AdminKey.Token.Plain(),
		map[string]any{"name": "short", "environment": "live", "scopes": []string{"invoices:read"}, "expires_in": 60}, 201)
	keyID := created["key"].(map[string]any)["id"].(string)
	clk.Advance(2 * time.Minute)
	if r, err := s.Jobs.Run(t.Context(), jobs.ExpirySweep); err != nil || r.Changed != 1 {
		t.Fatalf("sweep: %+v %v", r, err)
	}
	if err := s.PublishEvents(t.Context()); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "events.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var ev struct {
			Type  string `json:"type"`
			KeyID string `json:"key_id"`
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("events.jsonl line %q: %v", line, err)
		}
		if ev.KeyID == keyID {
			types = append(types, ev.Type)
		}
	}
	if strings.Join(types, ",") != "key.created,key.expired" {
		t.Fatalf("events of the key: %v\n%s", types, data)
	}
	if strings.Contains(string(data), created["secret"].(string)) {
		t.Fatal("a secret reached events.jsonl")
	}
}

// TestFrontDoor: the local stack answers / with a page of what runs and
// where, serves the admin API's OpenAPI document and its reference, and
// its health, 503 when the store is not usable; anything else goes to the
// gateway.
func TestFrontDoor(t *testing.T) {
	s := open(t, t.TempDir(), clock.NewManual(time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)))
	get := func(method, path string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		s.Handler.ServeHTTP(w, httptest.NewRequest(method, path, nil))
		return w
	}
	for path, want := range map[string]string{
		"/":                "/v1/reference",
		"/v1/openapi.yaml": "openapi: 3.1",
		"/v1/reference":    "/v1/keys/{id}/report-leak",
		"/health":          `"key_ring":"ok"`,
	} {
		w := get("GET", path)
		if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), want) {
			t.Errorf("GET %s: %d, want 200 with %q: %.300s", path, w.Code, want, w.Body)
		}
		if strings.Contains(w.Body.String(), "https://") && path != "/v1/openapi.yaml" {
			t.Errorf("GET %s loads or links something from elsewhere", path)
		}
	}
	if w := get("POST", "/"); w.Code != http.StatusNotFound {
		t.Errorf("POST /: %d, want the gateway's 404", w.Code)
	}
	if w := get("GET", "/v1/keys"); w.Code != http.StatusUnauthorized {
		t.Errorf("GET /v1/keys without a key: %d, want the gateway's 401", w.Code)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if w := get("GET", "/health"); w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), `"status":"unavailable"`) {
		t.Errorf("health with the store closed: %d %s", w.Code, w.Body)
	}
}
