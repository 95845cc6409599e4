package lifecycle_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/keyward/keyward/internal/dynamolocal"
	"github.com/keyward/keyward/internal/storetest"
	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/clock"
	"github.com/keyward/keyward/pkg/lifecycle"
	"github.com/keyward/keyward/pkg/pepper"
	"github.com/keyward/keyward/pkg/store"
)

func TestMain(m *testing.M) { dynamolocal.Main(m) }

type fixture struct {
	svc    *lifecycle.Service
	st     store.Store
	ring   *pepper.Ring
	format apikey.Format
	clk    *clock.Manual
	ctx    context.Context
	actor  lifecycle.Actor
	tokens []string // every token issued, to prove none is persisted
}

// run runs test against every store backend with a tenant "acme" onboarded.
func run(t *testing.T, test func(t *testing.T, f *fixture)) {
	c := clock.NewManual(time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC))
	storetest.ForEach(t, c.Now, func(t *testing.T, st store.Store) {
		ctx := t.Context()
		_, ring := storetest.Peppers(t, st, c.Now())
		format, _ := apikey.NewFormat("sk")
		f := &fixture{
			svc: lifecycle.New(st, ring, format, lifecycle.WithClock(c.Now)), st: st, ring: ring, format: format,
			clk: c, ctx: ctx, actor: lifecycle.Actor{ID: "key_admin0000001", RequestID: "req-1"},
		}
		o, err := f.svc.Onboard(ctx, lifecycle.Actor{ID: "operator"}, lifecycle.OnboardParams{TenantID: "acme", Name: "Acme"})
		if err != nil {
			t.Fatal(err)
		}
		f.tokens = append(f.tokens, o.Live.Token.Plain(), o.Test.Token.Plain())
		c.Advance(time.Second) // the admin key is older than any the test makes
		test(t, f)
		f.assertNoSecretPersisted(t)
	})
}

func (f *fixture) create(t *testing.T, tenant string, p lifecycle.CreateParams) lifecycle.Created {
	t.Helper()
	if p.Name == "" {
		p.Name = "integration"
	}
	if p.Environment == "" {
		p.Environment = apikey.Live
	}
	if p.Scopes == nil {
		p.Scopes = []string{"invoices:read"}
	}
	c, err := f.svc.Create(f.ctx, f.actor, tenant, p)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	f.tokens = append(f.tokens, c.Token.Plain())
	return c
}

// assertNoSecretPersisted scans everything the store holds that the API
// can reach (keys and audit entries) for any issued token or its secret.
func (f *fixture) assertNoSecretPersisted(t *testing.T) {
	t.Helper()
	var dump bytes.Buffer
	for _, tenant := range []string{"acme", "beta"} {
		for q := (store.KeyQuery{Limit: 100}); ; {
			page, err := f.st.ListKeys(f.ctx, tenant, q)
			if err != nil {
				t.Fatal(err)
			}
			_ = json.NewEncoder(&dump).Encode(page.Keys)
			if q.Cursor = page.NextCursor; q.Cursor == "" {
				break
			}
		}
		for q := (store.AuditQuery{Limit: 100}); ; {
			page, err := f.st.ListAudit(f.ctx, tenant, q)
			if err != nil {
				t.Fatal(err)
			}
			_ = json.NewEncoder(&dump).Encode(page.Entries)
			if q.Cursor = page.NextCursor; q.Cursor == "" {
				break
			}
		}
	}
	for _, tok := range f.tokens {
		secret := tok[len(tok)-apikey.SecretLen-apikey.ChecksumLen : len(tok)-apikey.ChecksumLen]
		if strings.Contains(dump.String(), tok) || strings.Contains(dump.String(), secret) {
			t.Fatalf("a token or its secret was persisted")
		}
	}
}

func (f *fixture) auditActions(t *testing.T, tenant, keyID string) []string {
	t.Helper()
	page, err := f.st.ListAudit(f.ctx, tenant, store.AuditQuery{KeyID: keyID, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range page.Entries {
		actions = append(actions, e.Action)
	}
	return actions
}

func TestCreate(t *testing.T) {
	run(t, func(t *testing.T, f *fixture) {
		expires := f.clk.Now().Add(30 * 24 * time.Hour)
		c := f.create(t, "acme", lifecycle.CreateParams{
			Name: "billing sync", Description: "nightly export", Environment: apikey.Test,
			Scopes: []string{"invoices:read", "customers:write"}, ExpiresAt: expires,
			AllowedIPs: []string{"203.0.113.7", "2001:db8::1/32"}, AllowedOrigins: []string{"HTTPS://App.Example.com:443"},
			AllowBrowserWrites: true, CreatedBy: "mem_alice", Metadata: map[string]string{"team": "billing"},
		})
		tok, err := f.format.Parse(c.Token.Plain())
		if err != nil || tok.Environment() != apikey.Test || tok.ID() != c.Key.ID {
			t.Fatalf("issued token does not parse as a test key: %v", err)
		}
		stored, err := f.st.GetKey(f.ctx, c.Key.ID)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := f.ring.Verify(f.ctx, stored.PepperVersion, c.Token.Plain(), stored.Hash); !ok || err != nil {
			t.Fatalf("stored hash does not verify the token: %v", err)
		}
		want := map[string]any{
			"status": stored.Status, "last4": stored.Last4, "ips": strings.Join(stored.AllowedIPs, ","),
			"origins": strings.Join(stored.AllowedOrigins, ","), "rate": stored.RateLimit, "expires": stored.ExpiresAt.Equal(expires),
			"browser writes": stored.AllowBrowserWrites,
		}
		got := map[string]any{
			"status": store.KeyActive, "last4": c.Token.Last4(), "ips": "203.0.113.7/32,2001:db8::/32",
			"origins": "https://app.example.com", "rate": store.RateLimit{RequestsPerMinute: 60, Burst: 10}, "expires": true,
			"browser writes": true,
		}
		if fmt.Sprint(want) != fmt.Sprint(got) {
			t.Fatalf("stored key:\n got %v\nwant %v", want, got)
		}
		if acts := f.auditActions(t, "acme", c.Key.ID); fmt.Sprint(acts) != "[key.created]" {
			t.Fatalf("audit %v", acts)
		}
		if got, err := f.svc.Get(f.ctx, "acme", c.Key.ID); err != nil || got.Name != "billing sync" {
			t.Fatalf("Get: %v %+v", err, got)
		}
	})
}

func TestCreateValidation(t *testing.T) {
	run(t, func(t *testing.T, f *fixture) {
		now := f.clk.Now()
		long := strings.Repeat("x", 600)
		tooMany := make(map[string]string)
		for i := range 21 {
			tooMany[fmt.Sprint(i)] = "v"
		}
		cases := []struct {
			field string
			edit  func(p *lifecycle.CreateParams)
		}{
			{"name", func(p *lifecycle.CreateParams) { p.Name = "" }},
			{"name", func(p *lifecycle.CreateParams) { p.Name = " padded" }},
			{"name", func(p *lifecycle.CreateParams) { p.Name = "bell\a" }},
			{"name", func(p *lifecycle.CreateParams) { p.Name = long }},
			{"description", func(p *lifecycle.CreateParams) { p.Description = long }},
			{"environment", func(p *lifecycle.CreateParams) { p.Environment = "prod" }},
			{"scopes", func(p *lifecycle.CreateParams) { p.Scopes = []string{} }},
			{"scopes", func(p *lifecycle.CreateParams) { p.Scopes = []string{"invoices"} }},
			{"scopes", func(p *lifecycle.CreateParams) { p.Scopes = []string{"a:read", "a:read"} }},
			{"expires_at", func(p *lifecycle.CreateParams) { p.ExpiresAt = now.Add(-time.Second) }},
			{"expires_at", func(p *lifecycle.CreateParams) { p.ExpiresAt = now.Add(lifecycle.MaxLifetime + time.Hour) }},
			{"allowed_ips", func(p *lifecycle.CreateParams) { p.AllowedIPs = []string{"10.0.0.0/33"} }},
			{"allowed_ips", func(p *lifecycle.CreateParams) { p.AllowedIPs = []string{"example.com"} }},
			{"allowed_ips", func(p *lifecycle.CreateParams) { p.AllowedIPs = []string{"fe80::1%eth0"} }},
			{"allowed_ips", func(p *lifecycle.CreateParams) { p.AllowedIPs = []string{"::ffff:10.0.0.1"} }},
			{"contact", func(p *lifecycle.CreateParams) { p.Contact = "not an address" }},
			{"contact", func(p *lifecycle.CreateParams) { p.Contact = "Ops <ops@example.com>" }},
			{"contact", func(p *lifecycle.CreateParams) { p.Contact = " ops@example.com" }},
			{"contact", func(p *lifecycle.CreateParams) { p.Contact = "ops@localhost" }},
			{"contact", func(p *lifecycle.CreateParams) { p.Contact = "ops@example.com, eve@example.com" }},
			{"contact", func(p *lifecycle.CreateParams) { p.Contact = strings.Repeat("a", 250) + "@example.com" }},
			{"allowed_origins", func(p *lifecycle.CreateParams) { p.AllowedOrigins = []string{"*"} }},
			{"allowed_origins", func(p *lifecycle.CreateParams) { p.AllowedOrigins = []string{"https://*.example.com"} }},
			{"allowed_origins", func(p *lifecycle.CreateParams) { p.AllowedOrigins = []string{"https://example.com/path"} }},
			{"allowed_origins", func(p *lifecycle.CreateParams) { p.AllowedOrigins = []string{"ftp://example.com"} }},
			{"allowed_origins", func(p *lifecycle.CreateParams) { p.AllowedOrigins = []string{"example.com"} }},
			{"allowed_origins", func(p *lifecycle.CreateParams) { p.AllowedOrigins = []string{"https://user@example.com"} }},
			{"allowed_origins", func(p *lifecycle.CreateParams) { p.AllowedOrigins = []string{"https://example.com:99999"} }},
			// Browser keys are safe by default: reading only unless allowed,
			// never a management scope.
			{"scopes", func(p *lifecycle.CreateParams) {
				p.AllowedOrigins, p.Scopes = []string{"https://app.example.com"}, []string{"invoices:write"}
			}},
			{"scopes", func(p *lifecycle.CreateParams) {
				p.AllowedOrigins, p.Scopes = []string{"https://app.example.com"}, []string{"invoices:*"}
			}},
			{"scopes", func(p *lifecycle.CreateParams) {
				p.AllowedOrigins, p.Scopes = []string{"https://app.example.com"}, []string{"messaging:send"}
			}},
			{"scopes", func(p *lifecycle.CreateParams) {
				p.AllowedOrigins, p.Scopes = []string{"https://app.example.com"}, []string{"keys:read"}
			}},
			{"scopes", func(p *lifecycle.CreateParams) {
				p.AllowedOrigins, p.Scopes, p.AllowBrowserWrites = []string{"https://app.example.com"}, []string{"keys:write"}, true
			}},
			{"scopes", func(p *lifecycle.CreateParams) {
				p.AllowedOrigins, p.Scopes, p.AllowBrowserWrites = []string{"https://app.example.com"}, []string{"*"}, true
			}},
			{"allow_browser_writes", func(p *lifecycle.CreateParams) { p.AllowBrowserWrites = true }},
			{"rate_limit.requests_per_minute", func(p *lifecycle.CreateParams) { p.RateLimit.RequestsPerMinute = -1 }},
			{"rate_limit.burst", func(p *lifecycle.CreateParams) { p.RateLimit = store.RateLimit{RequestsPerMinute: 10, Burst: 11} }},
			{"created_by", func(p *lifecycle.CreateParams) { p.CreatedBy = "alice smith" }},
			{"metadata", func(p *lifecycle.CreateParams) { p.Metadata = tooMany }},
			{"metadata", func(p *lifecycle.CreateParams) { p.Metadata = map[string]string{"k": long} }},
		}
		for _, c := range cases {
			p := lifecycle.CreateParams{Name: "ok", Environment: apikey.Live, Scopes: []string{"invoices:read"}}
			c.edit(&p)
			_, err := f.svc.Create(f.ctx, f.actor, "acme", p)
			var ve *lifecycle.ValidationError
			if !errors.As(err, &ve) || ve.Field != c.field {
				t.Errorf("%+v: error %v, want a validation error on %s", p, err, c.field)
			}
		}
		page, _ := f.st.ListKeys(f.ctx, "acme", store.KeyQuery{Limit: 100})
		if len(page.Keys) != 2 { // the admin keys only
			t.Fatalf("refused creates left %d keys", len(page.Keys)-2)
		}
		if _, err := f.svc.Create(f.ctx, f.actor, "nobody", lifecycle.CreateParams{Name: "x", Environment: apikey.Live, Scopes: []string{"*"}}); !errors.Is(err, lifecycle.ErrTenantInactive) {
			t.Fatalf("create in a missing tenant: %v", err)
		}
	})
}

func TestGetAndListAreTenantScoped(t *testing.T) {
	run(t, func(t *testing.T, f *fixture) {
		if _, err := f.svc.Onboard(f.ctx, lifecycle.Actor{ID: "operator"}, lifecycle.OnboardParams{TenantID: "beta", Name: "Beta"}); err != nil {
			t.Fatal(err)
		}
		a := f.create(t, "acme", lifecycle.CreateParams{})
		if _, err := f.svc.Get(f.ctx, "beta", a.Key.ID); !errors.Is(err, lifecycle.ErrNotFound) {
			t.Fatalf("beta read acme's key: %v", err)
		}
		if _, err := f.svc.Revoke(f.ctx, f.actor, "beta", a.Key.ID); !errors.Is(err, lifecycle.ErrNotFound) {
			t.Fatalf("beta revoked acme's key: %v", err)
		}
		name := "hijacked"
		if _, err := f.svc.Update(f.ctx, f.actor, "beta", a.Key.ID, lifecycle.UpdateParams{Name: &name}); !errors.Is(err, lifecycle.ErrNotFound) {
			t.Fatalf("beta updated acme's key: %v", err)
		}
		if _, _, err := f.svc.Rotate(f.ctx, f.actor, "beta", a.Key.ID, 0); !errors.Is(err, lifecycle.ErrNotFound) {
			t.Fatalf("beta rotated acme's key: %v", err)
		}
		page, err := f.svc.List(f.ctx, "beta", store.KeyQuery{Limit: 100})
		if err != nil || len(page.Keys) != 2 || page.Keys[0].TenantID != "beta" || page.Keys[1].TenantID != "beta" {
			t.Fatalf("beta's listing: %v %+v", err, page.Keys)
		}
		if got, _ := f.svc.Get(f.ctx, "acme", a.Key.ID); got.Status != store.KeyActive || got.Name != "integration" {
			t.Fatalf("acme's key after beta's attempts: %+v", got)
		}
	})
}

func TestListValidationAndEffectiveStatus(t *testing.T) {
	run(t, func(t *testing.T, f *fixture) {
		c := f.create(t, "acme", lifecycle.CreateParams{ExpiresAt: f.clk.Now().Add(time.Hour)})
		for _, q := range []store.KeyQuery{{Limit: 0}, {Limit: 101}, {Limit: 5, Environment: "prod"}, {Limit: 5, Status: "gone"},
			{Limit: 5, Cursor: "garbage!"}, {Limit: 5, CreatedBy: "a b"}} {
			var ve *lifecycle.ValidationError
			if _, err := f.svc.List(f.ctx, "acme", q); !errors.As(err, &ve) {
				t.Errorf("List(%+v): %v, want a validation error", q, err)
			}
		}
		f.clk.Advance(time.Hour)
		got, _ := f.svc.Get(f.ctx, "acme", c.Key.ID)
		page, _ := f.svc.List(f.ctx, "acme", store.KeyQuery{Limit: 1})
		if got.Status != store.KeyExpired || page.Keys[0].Status != store.KeyExpired {
			t.Fatalf("a key past its expiry shows %q / %q", got.Status, page.Keys[0].Status)
		}
	})
}

func TestUpdate(t *testing.T) {
	run(t, func(t *testing.T, f *fixture) {
		c := f.create(t, "acme", lifecycle.CreateParams{AllowedIPs: []string{"10.0.0.0/8"}, Metadata: map[string]string{"a": "b"}})
		f.clk.Advance(time.Minute)
		name, scopes, none := "renamed", []string{"invoices:write"}, []string{}
		rate := store.RateLimit{RequestsPerMinute: 600, Burst: 50}
		expires := f.clk.Now().Add(48 * time.Hour)
		got, err := f.svc.Update(f.ctx, f.actor, "acme", c.Key.ID, lifecycle.UpdateParams{
			Name: &name, Scopes: &scopes, AllowedIPs: &none, RateLimit: &rate, ExpiresAt: &expires,
		})
		if err != nil {
			t.Fatal(err)
		}
		stored, _ := f.st.GetKey(f.ctx, c.Key.ID)
		if stored.Name != name || fmt.Sprint(stored.Scopes) != "[invoices:write]" || len(stored.AllowedIPs) != 0 ||
			stored.RateLimit != rate || !stored.ExpiresAt.Equal(expires) || stored.Metadata["a"] != "b" ||
			stored.Revision != 2 || got.Revision != 2 || !stored.UpdatedAt.Equal(f.clk.Now()) {
			t.Fatalf("after update: %+v", stored)
		}
		page, _ := f.st.ListAudit(f.ctx, "acme", store.AuditQuery{KeyID: c.Key.ID, Limit: 1})
		if e := page.Entries[0]; e.Action != lifecycle.ActionKeyUpdated || e.Details["fields"] != "name,scopes,allowed_ips,rate_limit,expires_at" || e.Actor != f.actor.ID || e.RequestID != "req-1" {
			t.Fatalf("audit entry %+v", e)
		}

		var ve *lifecycle.ValidationError
		bad := []string{"nope"}
		if _, err := f.svc.Update(f.ctx, f.actor, "acme", c.Key.ID, lifecycle.UpdateParams{Scopes: &bad}); !errors.As(err, &ve) || ve.Field != "scopes" {
			t.Fatalf("bad scopes: %v", err)
		}
		if again, _ := f.st.GetKey(f.ctx, c.Key.ID); again.Revision != 2 {
			t.Fatal("a refused update changed the key")
		}
		if _, err := f.svc.Revoke(f.ctx, f.actor, "acme", c.Key.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.Update(f.ctx, f.actor, "acme", c.Key.ID, lifecycle.UpdateParams{Name: &name}); !errors.Is(err, lifecycle.ErrConflict) {
			t.Fatalf("update of a revoked key: %v", err)
		}
	})
}

// TestContact: a key's contact is set at creation, changed and cleared by
// an update, and carried to the key's replacement by rotation.
func TestContact(t *testing.T) {
	run(t, func(t *testing.T, f *fixture) {
		c := f.create(t, "acme", lifecycle.CreateParams{Contact: "billing@example.com"})
		if stored, _ := f.st.GetKey(f.ctx, c.Key.ID); stored.Contact != "billing@example.com" {
			t.Fatalf("contact after create: %q", stored.Contact)
		}
		other := "platform+keys@example.co.uk"
		if _, err := f.svc.Update(f.ctx, f.actor, "acme", c.Key.ID, lifecycle.UpdateParams{Contact: &other}); err != nil {
			t.Fatal(err)
		}
		replacement, _, err := f.svc.Rotate(f.ctx, f.actor, "acme", c.Key.ID, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if replacement.Key.Contact != other {
			t.Fatalf("the replacement's contact %q, want %q", replacement.Key.Contact, other)
		}
		var ve *lifecycle.ValidationError
		bad := "ops at example.com"
		if _, err := f.svc.Update(f.ctx, f.actor, "acme", replacement.Key.ID, lifecycle.UpdateParams{Contact: &bad}); !errors.As(err, &ve) || ve.Field != "contact" {
			t.Fatalf("bad contact: %v", err)
		}
		none := ""
		if _, err := f.svc.Update(f.ctx, f.actor, "acme", replacement.Key.ID, lifecycle.UpdateParams{Contact: &none}); err != nil {
			t.Fatal(err)
		}
		if stored, _ := f.st.GetKey(f.ctx, replacement.Key.ID); stored.Contact != "" {
			t.Fatalf("contact after clearing: %q", stored.Contact)
		}
	})
}

// TestContactInEvents: the key.expiring, key.unused and key.leaked
// entries, from which their events are built, carry the key's contact,
// or its tenant's when it has none, or none.
func TestContactInEvents(t *testing.T) {
	run(t, func(t *testing.T, f *fixture) {
		if _, err := f.svc.Onboard(f.ctx, lifecycle.Actor{ID: "operator"}, lifecycle.OnboardParams{TenantID: "beta", Name: "Beta", Contact: "sec@beta.example"}); err != nil {
			t.Fatal(err)
		}
		own := f.create(t, "beta", lifecycle.CreateParams{Contact: "team@beta.example"})
		inherits := f.create(t, "beta", lifecycle.CreateParams{})
		none := f.create(t, "acme", lifecycle.CreateParams{})
		latest := func(tenant, id string) store.AuditEntry {
			page, err := f.st.ListAudit(f.ctx, tenant, store.AuditQuery{KeyID: id, Limit: 1})
			if err != nil || len(page.Entries) == 0 {
				t.Fatalf("audit of %s: %v", id, err)
			}
			return page.Entries[0]
		}
		job := lifecycle.Actor{ID: "job"}
		for _, c := range []struct {
			key     lifecycle.Created
			tenant  string
			contact string
		}{{own, "beta", "team@beta.example"}, {inherits, "beta", "sec@beta.example"}, {none, "acme", ""}} {
			f.clk.Advance(time.Second) // entries list newest first
			k, _ := f.st.GetKey(f.ctx, c.key.Key.ID)
			if _, err := f.svc.Notify(f.ctx, job, k, store.NoticeUnused, lifecycle.ActionKeyUnused, map[string]string{"days": "30"}); err != nil {
				t.Fatal(err)
			}
			if e := latest(c.tenant, k.ID); e.Action != lifecycle.ActionKeyUnused || e.Details["contact"] != c.contact || e.Details["days"] != "30" {
				t.Fatalf("%s: unused entry %+v, want contact %q", k.ID, e, c.contact)
			}
			f.clk.Advance(time.Second)
			k, _ = f.st.GetKey(f.ctx, c.key.Key.ID)
			if _, _, err := f.svc.Leak(f.ctx, job, k, false, map[string]string{"source": "content"}); err != nil {
				t.Fatal(err)
			}
			if e := latest(c.tenant, k.ID); e.Action != lifecycle.ActionKeyLeaked || e.Details["contact"] != c.contact {
				t.Fatalf("%s: leaked entry %+v, want contact %q", k.ID, e, c.contact)
			}
		}
	})
}

// TestUpdateBrowserRules: an update is judged on the key it leaves, so
// no sequence of updates makes a browser key that writes without its
// owner's say, or holds a management scope, or turns its public secret
// into a server key; rotation carries the permission; a key stored before
// the rules can still be changed in other ways.
func TestUpdateBrowserRules(t *testing.T) {
	run(t, func(t *testing.T, f *fixture) {
		c := f.create(t, "acme", lifecycle.CreateParams{Scopes: []string{"invoices:write"}})
		origins, writes, read, scopesWrite := []string{"https://app.example.com"}, true, []string{"invoices:read"}, []string{"invoices:write"}
		var ve *lifecycle.ValidationError
		if _, err := f.svc.Update(f.ctx, f.actor, "acme", c.Key.ID, lifecycle.UpdateParams{AllowedOrigins: &origins}); !errors.As(err, &ve) || ve.Field != "scopes" {
			t.Fatalf("origins on a writing key: %v", err)
		}
		if _, err := f.svc.Update(f.ctx, f.actor, "acme", c.Key.ID, lifecycle.UpdateParams{AllowBrowserWrites: &writes}); !errors.As(err, &ve) || ve.Field != "allow_browser_writes" {
			t.Fatalf("browser writes on a server key: %v", err)
		}
		k, err := f.svc.Update(f.ctx, f.actor, "acme", c.Key.ID, lifecycle.UpdateParams{AllowedOrigins: &origins, AllowBrowserWrites: &writes})
		if err != nil || !k.AllowBrowserWrites {
			t.Fatalf("allowed browser writes: %v %+v", err, k)
		}
		off := false
		if _, err := f.svc.Update(f.ctx, f.actor, "acme", c.Key.ID, lifecycle.UpdateParams{AllowBrowserWrites: &off}); !errors.As(err, &ve) || ve.Field != "scopes" {
			t.Fatalf("withdrawing browser writes from a writing key: %v", err)
		}
		admin := []string{"keys:read"}
		if _, err := f.svc.Update(f.ctx, f.actor, "acme", c.Key.ID, lifecycle.UpdateParams{Scopes: &admin}); !errors.As(err, &ve) || ve.Field != "scopes" {
			t.Fatalf("a management scope on a browser key: %v", err)
		}
		if _, err = f.svc.Update(f.ctx, f.actor, "acme", c.Key.ID, lifecycle.UpdateParams{Scopes: &read, AllowBrowserWrites: &off}); err != nil {
			t.Fatal(err)
		}
		if _, err = f.svc.Update(f.ctx, f.actor, "acme", c.Key.ID, lifecycle.UpdateParams{AllowBrowserWrites: &writes}); err != nil {
			t.Fatal(err)
		}
		nk, _, err := f.svc.Rotate(f.ctx, f.actor, "acme", c.Key.ID, time.Hour)
		if err != nil || !nk.Key.AllowBrowserWrites || fmt.Sprint(nk.Key.AllowedOrigins) != "[https://app.example.com]" {
			t.Fatalf("rotation: %v %+v", err, nk.Key)
		}
		f.tokens = append(f.tokens, nk.Token.Plain())
		none := []string{}
		if _, err := f.svc.Update(f.ctx, f.actor, "acme", nk.Key.ID, lifecycle.UpdateParams{AllowedOrigins: &none}); !errors.As(err, &ve) || ve.Field != "allowed_origins" {
			t.Fatalf("a browser key made a server key: %v", err)
		}

		// A key stored before the rules: writing, no permission.
		legacy, err := f.st.GetKey(f.ctx, nk.Key.ID)
		if err != nil {
			t.Fatal(err)
		}
		legacy.Scopes, legacy.AllowBrowserWrites = []string{"invoices:write", "keys:admin"}, false
		if err := f.st.Apply(f.ctx, store.Change{Keys: []store.KeyWrite{{Key: legacy, ExpectedRevision: legacy.Revision}}}); err != nil {
			t.Fatal(err)
		}
		soon, renamed := f.clk.Now().Add(time.Hour), "storefront"
		if _, err := f.svc.Update(f.ctx, f.actor, "acme", nk.Key.ID, lifecycle.UpdateParams{Name: &renamed, ExpiresAt: &soon}); err != nil {
			t.Fatalf("narrowing a key stored before the rules: %v", err)
		}
		if _, err := f.svc.Update(f.ctx, f.actor, "acme", nk.Key.ID, lifecycle.UpdateParams{Scopes: &scopesWrite}); !errors.As(err, &ve) || ve.Field != "scopes" {
			t.Fatalf("its scopes changed against the rules: %v", err)
		}
	})
}

func TestRotate(t *testing.T) {
	run(t, func(t *testing.T, f *fixture) {
		old := f.create(t, "acme", lifecycle.CreateParams{
			Scopes: []string{"invoices:read", "customers:write"}, AllowedIPs: []string{"192.0.2.0/24"},
			RateLimit: store.RateLimit{RequestsPerMinute: 120}, CreatedBy: "mem_bob", Metadata: map[string]string{"env": "prod"},
		})
		f.clk.Advance(time.Second)
		nk, oldAfter, err := f.svc.Rotate(f.ctx, f.actor, "acme", old.Key.ID, lifecycle.DefaultOverlap)
		if err != nil {
			t.Fatal(err)
		}
		f.tokens = append(f.tokens, nk.Token.Plain())
		n := nk.Key
		if n.ID == old.Key.ID || n.Replaces != old.Key.ID || oldAfter.ReplacedBy != n.ID || n.Name != old.Key.Name ||
			fmt.Sprint(n.Scopes) != fmt.Sprint(old.Key.Scopes) || fmt.Sprint(n.AllowedIPs) != "[192.0.2.0/24]" ||
			n.RateLimit != old.Key.RateLimit || n.CreatedBy != "mem_bob" || n.Metadata["env"] != "prod" || !n.ExpiresAt.IsZero() {
			t.Fatalf("replacement does not inherit: %+v", n)
		}
		if oldAfter.Status != store.KeyExpiring || !oldAfter.ExpiresAt.Equal(f.clk.Now().Add(lifecycle.DefaultOverlap)) {
			t.Fatalf("old key after rotation: %s until %v", oldAfter.Status, oldAfter.ExpiresAt)
		}
		if _, _, err := f.svc.Rotate(f.ctx, f.actor, "acme", old.Key.ID, time.Hour); !errors.Is(err, lifecycle.ErrConflict) {
			t.Fatalf("second rotation of a replaced key: %v", err)
		}
		f.clk.Advance(lifecycle.DefaultOverlap)
		if got, _ := f.svc.Get(f.ctx, "acme", old.Key.ID); got.Status != store.KeyExpired {
			t.Fatalf("old key after the overlap: %s", got.Status)
		}
		if acts := f.auditActions(t, "acme", old.Key.ID); fmt.Sprint(acts) != "[key.rotated key.created]" {
			t.Fatalf("old key audit %v", acts)
		}
		if acts := f.auditActions(t, "acme", n.ID); fmt.Sprint(acts) != "[key.created]" {
			t.Fatalf("new key audit %v", acts)
		}
	})
}

func TestRotateNeverOutlivesOldExpiry(t *testing.T) {
	run(t, func(t *testing.T, f *fixture) {
		end := f.clk.Now().Add(2 * time.Hour)
		old := f.create(t, "acme", lifecycle.CreateParams{ExpiresAt: end})
		nk, oldAfter, err := f.svc.Rotate(f.ctx, f.actor, "acme", old.Key.ID, 12*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		f.tokens = append(f.tokens, nk.Token.Plain())
		if !nk.Key.ExpiresAt.Equal(end) || !oldAfter.ExpiresAt.Equal(end) {
			t.Fatalf("new expires %v, old %v; both must end at %v", nk.Key.ExpiresAt, oldAfter.ExpiresAt, end)
		}

		now := f.create(t, "acme", lifecycle.CreateParams{})
		nk, oldAfter, err = f.svc.Rotate(f.ctx, f.actor, "acme", now.Key.ID, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.tokens = append(f.tokens, nk.Token.Plain())
		if oldAfter.Status != store.KeyExpired || !oldAfter.ExpiresAt.Equal(f.clk.Now()) {
			t.Fatalf("rotation with no overlap left the old key %s until %v", oldAfter.Status, oldAfter.ExpiresAt)
		}
		for _, bad := range []time.Duration{-time.Second, lifecycle.MaxOverlap + time.Second} {
			var ve *lifecycle.ValidationError
			if _, _, err := f.svc.Rotate(f.ctx, f.actor, "acme", nk.Key.ID, bad); !errors.As(err, &ve) || ve.Field != "expire_old_in" {
				t.Fatalf("overlap %v: %v", bad, err)
			}
		}
		// The overlap of a replaced key can be cut short but not stretched.
		later := f.clk.Now().Add(24 * time.Hour)
		if _, err := f.svc.Update(f.ctx, f.actor, "acme", old.Key.ID, lifecycle.UpdateParams{ExpiresAt: &later}); err == nil {
			t.Fatal("stretched a replaced key's overlap")
		}
		sooner := f.clk.Now().Add(time.Minute)
		if _, err := f.svc.Update(f.ctx, f.actor, "acme", old.Key.ID, lifecycle.UpdateParams{ExpiresAt: &sooner}); err != nil {
			t.Fatalf("cutting the overlap short: %v", err)
		}
	})
}

func TestRevoke(t *testing.T) {
	run(t, func(t *testing.T, f *fixture) {
		c := f.create(t, "acme", lifecycle.CreateParams{})
		f.clk.Advance(time.Second)
		got, err := f.svc.Revoke(f.ctx, f.actor, "acme", c.Key.ID)
		if err != nil || got.Status != store.KeyRevoked || !got.RevokedAt.Equal(f.clk.Now()) {
			t.Fatalf("Revoke: %v %+v", err, got)
		}
		again, err := f.svc.Revoke(f.ctx, f.actor, "acme", c.Key.ID)
		if err != nil || again.Revision != got.Revision {
			t.Fatalf("second revoke: %v, revision %d -> %d", err, got.Revision, again.Revision)
		}
		if acts := f.auditActions(t, "acme", c.Key.ID); fmt.Sprint(acts) != "[key.revoked key.created]" {
			t.Fatalf("audit %v", acts)
		}
		if _, _, err := f.svc.Rotate(f.ctx, f.actor, "acme", c.Key.ID, time.Hour); !errors.Is(err, lifecycle.ErrConflict) {
			t.Fatalf("rotating a revoked key: %v", err)
		}
		if _, err := f.svc.Revoke(f.ctx, f.actor, "acme", "nope00000000"); !errors.Is(err, lifecycle.ErrNotFound) {
			t.Fatalf("revoking a missing key: %v", err)
		}
	})
}

// TestConcurrentRevokeAndRotate: whatever the interleaving, a revoke always
// ends the key, and a rotation either completes or leaves nothing behind.
func TestConcurrentRevokeAndRotate(t *testing.T) {
	run(t, func(t *testing.T, f *fixture) {
		for range 5 {
			c := f.create(t, "acme", lifecycle.CreateParams{})
			var wg sync.WaitGroup
			var rotErr error
			var rotated lifecycle.Created
			wg.Add(2)
			go func() {
				defer wg.Done()
				rotated, _, rotErr = f.svc.Rotate(f.ctx, f.actor, "acme", c.Key.ID, time.Hour)
			}()
			go func() {
				defer wg.Done()
				if _, err := f.svc.Revoke(f.ctx, f.actor, "acme", c.Key.ID); err != nil {
					t.Errorf("Revoke: %v", err)
				}
			}()
			wg.Wait()
			old, _ := f.st.GetKey(f.ctx, c.Key.ID)
			if old.Status != store.KeyRevoked {
				t.Fatalf("revoke lost: %s", old.Status)
			}
			if rotErr == nil {
				f.tokens = append(f.tokens, rotated.Token.Plain())
				if _, err := f.st.GetKey(f.ctx, rotated.Key.ID); err != nil || old.ReplacedBy != rotated.Key.ID {
					t.Fatalf("rotation reported success but left %+v / %v", old, err)
				}
			} else if !errors.Is(rotErr, lifecycle.ErrConflict) || old.ReplacedBy != "" {
				t.Fatalf("rotation failed with %v, old key %+v", rotErr, old)
			}
		}
	})
}

func TestRevokeMember(t *testing.T) {
	run(t, func(t *testing.T, f *fixture) {
		var bobs []lifecycle.Created
		for i := range 120 { // more than a page and several transactions
			by := "mem_bob"
			if i%4 == 0 {
				by = "mem_carol"
			}
			c := f.create(t, "acme", lifecycle.CreateParams{CreatedBy: by})
			if by == "mem_bob" {
				bobs = append(bobs, c)
			}
		}
		if _, err := f.svc.Revoke(f.ctx, f.actor, "acme", bobs[0].Key.ID); err != nil {
			t.Fatal(err)
		}
		n, err := f.svc.RevokeMember(f.ctx, f.actor, "acme", "mem_bob")
		if err != nil || n != len(bobs)-1 {
			t.Fatalf("RevokeMember = %d, %v; want %d", n, err, len(bobs)-1)
		}
		page, _ := f.svc.List(f.ctx, "acme", store.KeyQuery{Status: store.KeyActive, Limit: 100})
		for _, k := range page.Keys {
			if k.CreatedBy == "mem_bob" {
				t.Fatalf("bob's key %s survived", k.ID)
			}
		}
		if len(page.Keys) != 32 { // carol's 30 and the admin keys
			t.Fatalf("%d active keys remain, want 32", len(page.Keys))
		}
		if n, err := f.svc.RevokeMember(f.ctx, f.actor, "acme", "mem_bob"); n != 0 || err != nil {
			t.Fatalf("second RevokeMember = %d, %v", n, err)
		}
		var ve *lifecycle.ValidationError
		if _, err := f.svc.RevokeMember(f.ctx, f.actor, "acme", "bad id"); !errors.As(err, &ve) {
			t.Fatalf("bad member id: %v", err)
		}
	})
}

func TestOnboardAndOffboard(t *testing.T) {
	run(t, func(t *testing.T, f *fixture) {
		o, err := f.svc.Onboard(f.ctx, lifecycle.Actor{ID: "operator"}, lifecycle.OnboardParams{TenantID: "beta", Name: "Beta"})
		if err != nil {
			t.Fatal(err)
		}
		tn, admin := o.Tenant, o.Live
		f.tokens = append(f.tokens, admin.Token.Plain(), o.Test.Token.Plain())
		if tn.Status != store.TenantActive || fmt.Sprint(admin.Key.Scopes) != "[keys:admin]" || admin.Key.TenantID != "beta" ||
			admin.Key.Environment != "live" {
			t.Fatalf("onboarded %+v with key %+v", tn, admin.Key)
		}
		if k := o.Test.Key; k.Environment != "test" || fmt.Sprint(k.Scopes) != "[keys:admin]" || k.TenantID != "beta" || o.Test.Token.Environment() != "test" {
			t.Fatalf("onboarded test key %+v", k)
		}
		if _, err := f.svc.Onboard(f.ctx, lifecycle.Actor{ID: "operator"}, lifecycle.OnboardParams{TenantID: "beta", Name: "Again"}); !errors.Is(err, lifecycle.ErrConflict) {
			t.Fatalf("second onboarding: %v", err)
		}
		for _, bad := range []string{"", "B", "x", "has space", strings.Repeat("a", 64), "-lead"} {
			var ve *lifecycle.ValidationError
			if _, err := f.svc.Onboard(f.ctx, lifecycle.Actor{ID: "operator"}, lifecycle.OnboardParams{TenantID: bad, Name: "n"}); !errors.As(err, &ve) {
				t.Errorf("tenant id %q: %v", bad, err)
			}
		}
		for range 130 {
			f.create(t, "beta", lifecycle.CreateParams{})
		}
		survivor := f.create(t, "acme", lifecycle.CreateParams{})

		n, err := f.svc.Offboard(f.ctx, lifecycle.Actor{ID: "operator"}, "beta")
		if err != nil || n != 132 { // and both admin keys
			t.Fatalf("Offboard = %d, %v; want 132", n, err)
		}
		page, _ := f.svc.List(f.ctx, "beta", store.KeyQuery{Status: store.KeyActive, Limit: 100})
		if len(page.Keys) != 0 {
			t.Fatalf("%d keys of an offboarded tenant still active", len(page.Keys))
		}
		if _, err := f.svc.Create(f.ctx, f.actor, "beta", lifecycle.CreateParams{Name: "late", Environment: apikey.Live, Scopes: []string{"*"}}); !errors.Is(err, lifecycle.ErrTenantInactive) {
			t.Fatalf("create after offboarding: %v", err)
		}
		if n, err := f.svc.Offboard(f.ctx, lifecycle.Actor{ID: "operator"}, "beta"); n != 0 || err != nil {
			t.Fatalf("second Offboard = %d, %v", n, err)
		}
		if k, _ := f.svc.Get(f.ctx, "acme", survivor.Key.ID); k.Status != store.KeyActive {
			t.Fatal("offboarding beta touched acme's key")
		}
		if _, err := f.svc.Offboard(f.ctx, lifecycle.Actor{ID: "operator"}, "nobody"); !errors.Is(err, lifecycle.ErrNotFound) {
			t.Fatalf("offboarding a missing tenant: %v", err)
		}
	})
}

// TestActorAllowVetsTheKeyAsWritten: a permission is checked against the
// key each change reads, not against an earlier read.
func TestActorAllowVetsTheKeyAsWritten(t *testing.T) {
	run(t, func(t *testing.T, f *fixture) {
		c := f.create(t, "acme", lifecycle.CreateParams{})
		// Someone upgrades the key after the caller looked at it.
		upgraded := []string{"keys:admin"}
		if _, err := f.svc.Update(f.ctx, f.actor, "acme", c.Key.ID, lifecycle.UpdateParams{Scopes: &upgraded}); err != nil {
			t.Fatal(err)
		}
		refuse := errors.New("may not change management keys")
		actor := f.actor
		actor.Allow = func(k store.Key) error {
			if slices.Contains(k.Scopes, "keys:admin") {
				return refuse
			}
			return nil
		}
		name := "renamed"
		if _, err := f.svc.Update(f.ctx, actor, "acme", c.Key.ID, lifecycle.UpdateParams{Name: &name}); !errors.Is(err, refuse) {
			t.Fatalf("Update: %v", err)
		}
		if _, _, err := f.svc.Rotate(f.ctx, actor, "acme", c.Key.ID, 0); !errors.Is(err, refuse) {
			t.Fatalf("Rotate: %v", err)
		}
		if _, err := f.svc.Revoke(f.ctx, actor, "acme", c.Key.ID); !errors.Is(err, refuse) {
			t.Fatalf("Revoke: %v", err)
		}
		if k, _ := f.st.GetKey(f.ctx, c.Key.ID); k.Status != store.KeyActive || k.Name == name {
			t.Fatalf("a refused change landed: %+v", k)
		}
	})
}

// TestLeakReportOfAnySizeRevokes: a report's details are bounded before
// they are stored, so an oversized one (GitHub's reports may be 1 MB; a
// DynamoDB item holds 400 KB) cannot make the revocation it causes fail.
func TestLeakReportOfAnySizeRevokes(t *testing.T) {
	run(t, func(t *testing.T, f *fixture) {
		c := f.create(t, "acme", lifecycle.CreateParams{})
		huge := "https://github.com/o/r/blob/main/" + strings.Repeat("é", 450_000)
		_, revoked, err := f.svc.Leak(f.ctx, lifecycle.Actor{ID: "github"}, c.Key, true, map[string]string{"url": huge, "source": "content"})
		if err != nil || !revoked {
			t.Fatalf("Leak: revoked %v, %v", revoked, err)
		}
		page, err := f.st.ListAudit(f.ctx, "acme", store.AuditQuery{KeyID: c.Key.ID, Limit: 10})
		if err != nil || len(page.Entries) == 0 {
			t.Fatal(err)
		}
		i := slices.IndexFunc(page.Entries, func(a store.AuditEntry) bool { return a.Action == lifecycle.ActionKeyLeaked })
		if i < 0 {
			t.Fatalf("no %s entry", lifecycle.ActionKeyLeaked)
		}
		url := page.Entries[i].Details["url"]
		if len(url) > 2048 || !strings.HasSuffix(url, "…(truncated)") || !utf8.ValidString(url) || page.Entries[i].Details["source"] != "content" {
			t.Fatalf("stored details: url of %d bytes, %v", len(url), page.Entries[i].Details["source"])
		}
	})
}
