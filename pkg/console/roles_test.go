package console_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/lifecycle"
	"github.com/keyward/keyward/pkg/store"
)

// TestViewer reads keys and the audit log, and changes nothing.
func TestViewer(t *testing.T) {
	f := newFixture(t)
	bob := f.as(lifecycle.RoleDeveloper, "bob")
	k, _ := bob.create(t, createForm("bob's key"))
	viewer := f.as(lifecycle.RoleViewer, "vera")

	for _, p := range []string{"/console/keys", "/console/keys/" + apikey.PublicID(k.ID), "/console/audit"} {
		wantStatus(t, viewer.get(p), http.StatusOK)
	}
	page := viewer.get("/console/keys").Body.String()
	if strings.Contains(page, "/console/keys/new") || strings.Contains(page, "/revoke") || strings.Contains(page, "/rotate") {
		t.Error("the keys page offers a viewer changes it cannot make")
	}
	before := f.count()
	wantStatus(t, viewer.get("/console/keys/new"), http.StatusForbidden)
	wantStatus(t, viewer.post("/console/keys", createForm("nope")), http.StatusForbidden)
	wantStatus(t, viewer.post("/console/keys/"+apikey.PublicID(k.ID)+"/revoke", nil), http.StatusForbidden)
	wantStatus(t, viewer.post("/console/keys/"+apikey.PublicID(k.ID)+"/rotate", nil), http.StatusForbidden)
	wantStatus(t, viewer.get("/console/members"), http.StatusForbidden)
	wantStatus(t, viewer.post("/console/members/revoke", url.Values{"member": {"bob"}}), http.StatusForbidden)
	if f.count() != before || f.key(k.ID).Status != store.KeyActive {
		t.Fatal("a viewer changed something")
	}
}

// TestDeveloper creates keys and changes only their own; another member's
// keys, and a member's revocation, are refused by the lifecycle and the
// route's scope.
func TestDeveloper(t *testing.T) {
	f := newFixture(t)
	alice := f.as(lifecycle.RoleDeveloper, "alice")
	bob := f.as(lifecycle.RoleDeveloper, "bob")
	mine, _ := alice.create(t, createForm("alice's key"))
	if mine.CreatedBy != "alice" || mine.Environment != "test" || strings.Join(mine.Scopes, " ") != "invoices:read" {
		t.Fatalf("alice's key: %+v", mine)
	}
	theirs, _ := bob.create(t, createForm("bob's key"))

	page := alice.get("/console/keys").Body.String()
	if !strings.Contains(page, "/console/keys/"+apikey.PublicID(mine.ID)+"/revoke") {
		t.Error("the keys page does not offer to revoke alice's own key")
	}
	if strings.Contains(page, "/console/keys/"+apikey.PublicID(theirs.ID)+"/revoke") {
		t.Error("the keys page offers alice to revoke bob's key")
	}

	// The pages that ask first refuse; so does the lifecycle on the change.
	wantStatus(t, alice.get("/console/keys/"+apikey.PublicID(theirs.ID)+"/revoke"), http.StatusForbidden)
	wantStatus(t, alice.post("/console/keys/"+apikey.PublicID(theirs.ID)+"/revoke", nil), http.StatusForbidden)
	wantStatus(t, alice.post("/console/keys/"+apikey.PublicID(theirs.ID)+"/rotate", url.Values{"mode": {"now"}}), http.StatusForbidden)
	if f.key(theirs.ID).Status != store.KeyActive {
		t.Fatal("alice revoked bob's key")
	}
	wantStatus(t, alice.get("/console/members"), http.StatusForbidden)
	wantStatus(t, alice.post("/console/members/revoke", url.Values{"member": {"bob"}}), http.StatusForbidden)
	if f.key(theirs.ID).Status != store.KeyActive {
		t.Fatal("alice revoked bob's keys")
	}

	rec := alice.post("/console/keys/"+apikey.PublicID(mine.ID)+"/revoke", nil)
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/console/keys/"+apikey.PublicID(mine.ID)+"?done=revoked" {
		t.Fatalf("revoking her own key: %d %q", rec.Code, rec.Header().Get("Location"))
	}
	if f.key(mine.ID).Status != store.KeyRevoked {
		t.Fatal("alice's key is not revoked")
	}
	if !strings.Contains(alice.get(rec.Header().Get("Location")).Body.String(), "key.revoked") {
		t.Error("the key's history does not show its revocation")
	}
}

// TestAdmin changes every key and revokes a member's keys.
func TestAdmin(t *testing.T) {
	f := newFixture(t)
	bob := f.as(lifecycle.RoleDeveloper, "bob")
	k1, _ := bob.create(t, createForm("one"))
	k2, _ := bob.create(t, createForm("two"))
	k3, _ := bob.create(t, createForm("three"))
	admin := f.as(lifecycle.RoleAdmin, "ada")

	wantStatus(t, admin.post("/console/keys/"+apikey.PublicID(k1.ID)+"/revoke", nil), http.StatusSeeOther)
	if f.key(k1.ID).Status != store.KeyRevoked {
		t.Fatal("the admin did not revoke bob's key")
	}
	rec := admin.post("/console/keys/"+apikey.PublicID(k2.ID)+"/rotate", url.Values{"mode": {"overlap"}, "hours": {"1"}})
	wantStatus(t, rec, http.StatusOK)
	if len(apikey.FindAll(rec.Body.String())) != 1 || f.key(k2.ID).Status != store.KeyExpiring {
		t.Fatal("the admin did not regenerate bob's key")
	}

	members := admin.get("/console/members")
	wantStatus(t, members, http.StatusOK)
	if !strings.Contains(members.Body.String(), "/console/members/revoke?member=bob") {
		t.Fatalf("the members page does not list bob: %s", members.Body)
	}
	confirm := admin.get("/console/members/revoke?member=bob")
	wantStatus(t, confirm, http.StatusOK)
	if !strings.Contains(confirm.Body.String(), "bob") {
		t.Fatal("the confirmation does not name the member")
	}
	rec = admin.post("/console/members/revoke", url.Values{"member": {"bob"}})
	if rec.Code != http.StatusSeeOther || !strings.HasPrefix(rec.Header().Get("Location"), "/console/members?") {
		t.Fatalf("revoking bob's keys: %d %q %s", rec.Code, rec.Header().Get("Location"), rec.Body)
	}
	for _, id := range []string{k2.ID, k3.ID} {
		if st := f.key(id).Status; st != store.KeyRevoked {
			t.Fatalf("bob's key %s is %s", id, st)
		}
	}
	if !strings.Contains(admin.get(rec.Header().Get("Location")).Body.String(), "Revoked 3 keys of bob") {
		t.Error("the members page does not report the revocation")
	}
}

// TestRevocationReachesTheGateway: a created key's rate-limit identity is
// provisioned in its tier; revoking removes it and flushes the
// authorizer cache twice, as the admin API does.
func TestRevocationReachesTheGateway(t *testing.T) {
	f := newFixture(t)
	alice := f.as(lifecycle.RoleDeveloper, "alice")
	form := createForm("limited")
	form.Set("tier", "standard")
	k, _ := alice.create(t, form)
	identity := f.cfg.Gateway.RateLimitIdentity(k.TenantID, k.ID)
	if got := f.plans.tier(identity); got != "standard" || k.RateLimit.RequestsPerMinute != 600 {
		t.Fatalf("identity in tier %q, key limit %+v", got, k.RateLimit)
	}
	rec := alice.post("/console/keys/"+apikey.PublicID(k.ID)+"/rotate", url.Values{"mode": {"now"}})
	wantStatus(t, rec, http.StatusOK)
	next := f.key(f.key(k.ID).ReplacedBy)
	nextIdentity := f.cfg.Gateway.RateLimitIdentity(next.TenantID, next.ID)
	if f.plans.tier(identity) != "" || f.plans.tier(nextIdentity) != "standard" || f.flusher.count() != 2 {
		t.Fatalf("after rotating now: old %q, new %q, %d flushes", f.plans.tier(identity), f.plans.tier(nextIdentity), f.flusher.count())
	}
	wantStatus(t, alice.post("/console/keys/"+apikey.PublicID(next.ID)+"/revoke", nil), http.StatusSeeOther)
	if got := f.plans.tier(nextIdentity); got != "" {
		t.Fatalf("the revoked key's identity is still in tier %q", got)
	}
	if n := f.flusher.count(); n != 4 {
		t.Fatalf("%d flushes, want 4", n)
	}
}

// TestFormErrors: the lifecycle's refusals, and the form's own, show on
// the form, which keeps what was typed.
func TestFormErrors(t *testing.T) {
	f := newFixture(t)
	alice := f.as(lifecycle.RoleDeveloper, "alice")
	cases := []struct {
		name string
		edit func(url.Values)
		want string
	}{
		{"bad ip", func(v url.Values) { v.Set("allowed_ips", "10.0.0.0/33") }, "is not a CIDR block"},
		{"browser without origins", func(v url.Values) { v.Set("browser", "1") }, "A browser key needs at least one allowed origin"},
		{"bad origin", func(v url.Values) { v.Set("allowed_origins", "ftp://x") }, "allowed origins"},
		{"no scope", func(v url.Values) { v.Del("scope_invoices") }, "Choose read or write"},
		{"past expiry", func(v url.Values) { v.Set("expires_on", "2020-01-01") }, "must be in the future"},
		{"unknown tier", func(v url.Values) { v.Set("tier", "unlimited") }, "Choose one of the rate limits"},
		{"bad contact", func(v url.Values) { v.Set("contact", "Ops <ops@example.com>") }, "must be an email address"},
	}
	before := f.count()
	for _, c := range cases {
		form := createForm("kept name")
		c.edit(form)
		rec := alice.post("/console/keys", form)
		body := rec.Body.String()
		if rec.Code != http.StatusBadRequest || !strings.Contains(body, c.want) || !strings.Contains(body, `value="kept name"`) {
			t.Errorf("%s: %d, want 400 with %q on the form: %s", c.name, rec.Code, c.want, body)
		}
	}
	if f.count() != before {
		t.Fatal("a refused form made a key")
	}
	// A refused form may be sent again, corrected: its id is released.
	form := createForm("second try")
	form.Set("allowed_ips", "10.0.0.0/33")
	wantStatus(t, alice.post("/console/keys", form), http.StatusBadRequest)
	form.Set("allowed_ips", "10.0.0.0/8")
	k, _ := alice.create(t, form)
	if strings.Join(k.AllowedIPs, ",") != "10.0.0.0/8" {
		t.Fatalf("allowed ips %v", k.AllowedIPs)
	}
}

// TestBrowserKeyAndApplication: origins, application, write scope.
func TestBrowserKeyAndApplication(t *testing.T) {
	f := newFixture(t)
	alice := f.as(lifecycle.RoleDeveloper, "alice")
	form := createForm("web")
	form.Set("browser", "1")
	form.Set("allowed_origins", "https://app.example.com\nhttps://www.example.com")
	form.Set("application", "storefront")
	form.Set("contact", "web-team@example.com")
	form.Set("scope_customers", "write")
	form.Set("expires_on", "2026-06-30")
	// A browser key reads only, unless its maker says otherwise.
	if w := alice.post("/console/keys", form); w.Code != 400 || !strings.Contains(w.Body.String(), "only reads unless you tick") {
		t.Fatalf("a writing browser key without consent: %d %s", w.Code, w.Body)
	}
	form.Set("browser_writes", "1")
	k, _ := alice.create(t, form)
	if strings.Join(k.AllowedOrigins, " ") != "https://app.example.com https://www.example.com" ||
		k.Metadata["application"] != "storefront" || strings.Join(k.Scopes, " ") != "customers:write invoices:read" ||
		k.ExpiresAt.Format("2006-01-02T15") != "2026-07-01T00" || !k.AllowBrowserWrites || k.Contact != "web-team@example.com" {
		t.Fatalf("key %+v", k)
	}
	if page := alice.get("/console/keys/" + apikey.PublicID(k.ID)).Body.String(); !strings.Contains(page, "web-team@example.com") {
		t.Fatalf("the key page does not show the contact: %s", page)
	}
}

// TestKeyPageShowsUsage: the key page charts the key's last day of
// requests an hour a bar and lists its recent requests, newest first,
// and never usage the store holds under another tenant.
func TestKeyPageShowsUsage(t *testing.T) {
	f := newFixture(t)
	alice := f.as(lifecycle.RoleDeveloper, "alice")
	k, _ := alice.create(t, createForm("used"))
	if page := alice.get("/console/keys/" + apikey.PublicID(k.ID)).Body.String(); !strings.Contains(page, "No requests in the last day") {
		t.Fatalf("an unused key's page: %s", page)
	}
	now := f.clk.Now()
	for i, at := range []time.Time{now.Add(-3 * time.Hour), now.Add(-time.Minute)} {
		m := store.UsageMinute{KeyID: k.ID, TenantID: k.TenantID, Minute: at.UTC().Truncate(time.Minute), First: at, Last: at,
			Counts: store.UsageCounts{OK: 40, ServerError: int64(i), InvalidSecret: 2},
			Recent: []store.RecentRequest{{Time: at, Method: "GET", Route: fmt.Sprintf("/invoices/{id}/r%d", i), Status: 200, SourceIP: "203.0.113.9", LatencyMS: 4}}}
		if _, err := f.st.AddUsage(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
	// An hour the store holds under another tenant is never shown.
	foreign := now.Add(-2 * time.Hour)
	if _, err := f.st.AddUsage(t.Context(), store.UsageMinute{KeyID: k.ID, TenantID: "other", Minute: foreign.UTC().Truncate(time.Minute),
		First: foreign, Last: foreign, Counts: store.UsageCounts{OK: 1000},
		Recent: []store.RecentRequest{{Time: foreign, Method: "GET", Route: "/foreign", Status: 200, SourceIP: "198.51.100.1"}}}); err != nil {
		t.Fatal(err)
	}
	page := alice.get("/console/keys/" + apikey.PublicID(k.ID)).Body.String()
	if strings.Contains(page, "/foreign") {
		t.Fatalf("the key page shows another tenant's usage: %s", page)
	}
	for _, want := range []string{"81 requests, 1 refused", "4 attempts with a wrong secret", `<svg class="usage"`, `height="80"></rect>`} {
		if !strings.Contains(page, want) {
			t.Fatalf("the key page lacks %q: %s", want, page)
		}
	}
	if newer, older := strings.Index(page, "/invoices/{id}/r1"), strings.Index(page, "/invoices/{id}/r0"); newer < 0 || older < newer {
		t.Fatalf("recent requests not newest first: %s", page)
	}
}
