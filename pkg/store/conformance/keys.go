package conformance

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/store"
)

func testKeyCreateAndGet(t *testing.T, e *env) {
	e.tenant(t, "acme")
	want := e.key("acme", "k00000000001")
	got := e.createKey(t, want)
	want.Revision = 1
	wantEqual(t, "key round trip", normal(got), normal(want))

	_, err := e.s.GetKey(e.ctx, "k00000000999")
	wantErr(t, err, store.ErrNotFound)

	dup := e.key("acme", "k00000000001")
	dup.Name = "other"
	wantErr(t, e.s.Apply(e.ctx, store.Change{Keys: []store.KeyWrite{{Key: dup}}}), store.ErrAlreadyExists)
	if k := e.getKey(t, "k00000000001"); k.Name != want.Name {
		t.Fatalf("duplicate create overwrote the key: name %q", k.Name)
	}

	// A minimal key: empty optional fields round-trip as empty.
	minimal := store.Key{ID: "k00000000002", TenantID: "acme", Name: "m", Prefix: "sk", Environment: "test",
		Last4: "wxyz", Scopes: []string{"*"}, Status: store.KeyActive, Hash: []byte{1, 2, 3}, PepperVersion: 7,
		CreatedAt: e.clk.Now(), UpdatedAt: e.clk.Now()}
	got = e.createKey(t, minimal)
	minimal.Revision = 1
	wantEqual(t, "minimal key round trip", normal(got), normal(minimal))

	// Returned values are copies: mutating them does not reach the store.
	got.Scopes[0] = "mutated"
	got.Hash[0] = 99
	again := e.getKey(t, "k00000000002")
	if again.Scopes[0] != "*" || again.Hash[0] != 1 {
		t.Fatalf("store shares memory with its callers: %+v", again)
	}

	e.wantKeyCount(t, "acme", 2)
}

func testKeyCreateNeedsActiveTenant(t *testing.T, e *env) {
	wantErr(t, e.s.Apply(e.ctx, store.Change{Keys: []store.KeyWrite{{Key: e.key("ghost", "k00000000001")}}}), store.ErrConflict)

	tn := e.tenant(t, "acme")
	tn.Status = store.TenantOffboarded
	e.apply(t, store.Change{Tenant: &store.TenantWrite{Tenant: tn, ExpectedRevision: tn.Revision}})
	wantErr(t, e.s.Apply(e.ctx, store.Change{Keys: []store.KeyWrite{{Key: e.key("acme", "k00000000002")}}}), store.ErrConflict)
	for _, id := range []string{"k00000000001", "k00000000002"} {
		_, err := e.s.GetKey(e.ctx, id)
		wantErr(t, err, store.ErrNotFound)
	}
}

func testKeyUpdate(t *testing.T, e *env) {
	e.tenant(t, "acme")
	orig := e.createKey(t, e.key("acme", "k00000000001"))

	e.clk.Advance(time.Hour)
	upd := orig
	upd.Name = "renamed"
	upd.Description = ""
	upd.Scopes = []string{"invoices:read"}
	upd.Status = store.KeyRevoked
	upd.RevokedAt = e.clk.Now()
	upd.UpdatedAt = e.clk.Now()
	upd.NotBefore = time.Time{}
	upd.ExpiresAt = e.clk.Now().Add(time.Hour)
	upd.AllowedIPs = nil
	upd.AllowedOrigins = []string{"https://a.example", "https://b.example:8443"}
	upd.AllowBrowserWrites = false
	upd.Contact = "platform@example.com"
	upd.RateLimit = store.RateLimit{RequestsPerMinute: 600}
	upd.ReplacedBy = "k00000000002"
	upd.Metadata = nil
	upd.Notices = []string{store.NoticeExpiring7d, store.NoticeExpiring1d}
	// Store-managed and immutable fields are ignored on update.
	tampered := upd
	tampered.Hash = []byte("tampered")
	tampered.PepperVersion = 9
	tampered.LastUsedAt = e.clk.Now()
	tampered.Prefix, tampered.Environment, tampered.Last4 = "xx", "test", "0000"
	tampered.CreatedAt, tampered.CreatedBy, tampered.Replaces = time.Time{}, "mallory", "k00000000000"
	e.apply(t, store.Change{Keys: []store.KeyWrite{{Key: tampered, ExpectedRevision: orig.Revision}}})

	got := e.getKey(t, orig.ID)
	upd.Revision = orig.Revision + 1
	wantEqual(t, "updated key", normal(got), normal(upd))
}

func testKeyUpdatePreconditions(t *testing.T, e *env) {
	e.tenant(t, "acme")
	e.tenant(t, "other")
	k := e.createKey(t, e.key("acme", "k00000000001"))

	stale := k
	stale.Name = "first"
	e.apply(t, store.Change{Keys: []store.KeyWrite{{Key: stale, ExpectedRevision: 1}}})
	stale.Name = "second"
	wantErr(t, e.s.Apply(e.ctx, store.Change{Keys: []store.KeyWrite{{Key: stale, ExpectedRevision: 1}}}), store.ErrConflict)

	stolen := k
	stolen.TenantID = "other"
	stolen.Name = "stolen"
	wantErr(t, e.s.Apply(e.ctx, store.Change{Keys: []store.KeyWrite{{Key: stolen, ExpectedRevision: 2}}}), store.ErrNotFound)

	missing := e.key("acme", "k00000000404")
	wantErr(t, e.s.Apply(e.ctx, store.Change{Keys: []store.KeyWrite{{Key: missing, ExpectedRevision: 1}}}), store.ErrNotFound)

	got := e.getKey(t, k.ID)
	if got.Name != "first" || got.TenantID != "acme" || got.Revision != 2 {
		t.Fatalf("failed updates changed the key: %+v", got)
	}
}

func testChangeIsAtomic(t *testing.T, e *env) {
	e.tenant(t, "acme")
	old := e.createKey(t, e.key("acme", "k00000000001"))
	bumped := old
	bumped.Name = "bumped"
	e.apply(t, store.Change{Keys: []store.KeyWrite{{Key: bumped, ExpectedRevision: old.Revision}}})

	// A rotation written against a stale revision: the new key, the old
	// key's update and the audit entries must all fail together.
	rotated := old
	rotated.Status, rotated.ReplacedBy = store.KeyExpiring, "k00000000002"
	newKey := e.key("acme", "k00000000002")
	newKey.Replaces = old.ID
	err := e.s.Apply(e.ctx, store.Change{
		Keys:  []store.KeyWrite{{Key: newKey}, {Key: rotated, ExpectedRevision: old.Revision}},
		Audit: []store.AuditEntry{e.audit("acme", "a1", old.ID), e.audit("acme", "a2", newKey.ID)},
	})
	wantErr(t, err, store.ErrConflict)
	_, err = e.s.GetKey(e.ctx, newKey.ID)
	wantErr(t, err, store.ErrNotFound)
	if got := e.getKey(t, old.ID); got.Status != store.KeyActive || got.Name != "bumped" {
		t.Fatalf("old key changed by a failed change: %+v", got)
	}
	e.settle()
	page, err := e.s.ListAudit(e.ctx, "acme", store.AuditQuery{Limit: 10})
	if err != nil || len(page.Entries) != 0 {
		t.Fatalf("audit after failed change: %v, %+v", err, page.Entries)
	}
	e.wantKeyCount(t, "acme", 1)

	// A taken audit id fails the whole change too.
	e.apply(t, store.Change{Audit: []store.AuditEntry{e.audit("acme", "a1", old.ID)}})
	err = e.s.Apply(e.ctx, store.Change{
		Keys:  []store.KeyWrite{{Key: newKey}},
		Audit: []store.AuditEntry{e.audit("acme", "a1", newKey.ID)},
	})
	wantErr(t, err, store.ErrAlreadyExists)
	_, err = e.s.GetKey(e.ctx, newKey.ID)
	wantErr(t, err, store.ErrNotFound)
}

func testChangeValidation(t *testing.T, e *env) {
	e.tenant(t, "acme")
	if err := e.s.Apply(e.ctx, store.Change{}); err == nil {
		t.Fatal("empty change accepted")
	}

	k := e.key("acme", "k00000000001")
	if err := e.s.Apply(e.ctx, store.Change{Keys: []store.KeyWrite{{Key: k}, {Key: k}}}); err == nil {
		t.Fatal("change writing one key twice accepted")
	}
	a := e.audit("acme", "a1", k.ID)
	if err := e.s.Apply(e.ctx, store.Change{Audit: []store.AuditEntry{a, a}}); err == nil {
		t.Fatal("change writing one audit entry twice accepted")
	}
	// A status no reader would recognise is corrupt data, never stored.
	for _, status := range []store.KeyStatus{"", "revokdd", "REVOKED", "disabled"} {
		bad := k
		bad.Status = status
		wantErr(t, e.s.Apply(e.ctx, store.Change{Keys: []store.KeyWrite{{Key: bad}}}), store.ErrCorrupt)
	}
	// Backends compose item keys from tenant ids with '#'.
	hashed := store.Tenant{ID: "ac#me", Status: store.TenantActive, CreatedAt: e.clk.Now()}
	if err := e.s.Apply(e.ctx, store.Change{Tenant: &store.TenantWrite{Tenant: hashed}}); err == nil {
		t.Fatal("tenant id with '#' accepted")
	}

	// 98 audit entries plus one key create, its tenant counter and its
	// member's counter: 101 items.
	var audit []store.AuditEntry
	for i := range store.MaxChangeItems - 2 {
		audit = append(audit, e.audit("acme", fmt.Sprintf("a%03d", i), k.ID))
	}
	wantErr(t, e.s.Apply(e.ctx, store.Change{Keys: []store.KeyWrite{{Key: k}}, Audit: audit}), store.ErrChangeTooLarge)
	_, err := e.s.GetKey(e.ctx, k.ID)
	wantErr(t, err, store.ErrNotFound)

	// Exactly the limit is fine.
	e.apply(t, store.Change{Keys: []store.KeyWrite{{Key: k}}, Audit: audit[:store.MaxChangeItems-3]})
	e.settle()
	page, err := e.s.ListAudit(e.ctx, "acme", store.AuditQuery{Limit: store.MaxPageSize})
	if err != nil || len(page.Entries) != store.MaxChangeItems-3 {
		t.Fatalf("audit entries after full change: %v, %d", err, len(page.Entries))
	}

	// A tenant write is the tenant and its key counters.
	other := store.Tenant{ID: "other", Name: "Other", Status: store.TenantActive, CreatedAt: e.clk.Now()}
	tooMany := audit[:store.MaxChangeItems-store.TenantWriteItems+1]
	for i := range tooMany {
		tooMany[i].TenantID = "other"
	}
	wantErr(t, e.s.Apply(e.ctx, store.Change{Tenant: &store.TenantWrite{Tenant: other}, Audit: tooMany}), store.ErrChangeTooLarge)
	e.apply(t, store.Change{Tenant: &store.TenantWrite{Tenant: other}, Audit: tooMany[1:]})
}

func testTouchKey(t *testing.T, e *env) {
	e.tenant(t, "acme")
	k := e.createKey(t, e.key("acme", "k00000000001"))
	now := e.clk.Now()
	wrote, err := e.s.TouchKey(e.ctx, k.ID, now, 5*time.Minute)
	if err != nil || !wrote {
		t.Fatalf("first touch: %v %v", wrote, err)
	}
	wrote, err = e.s.TouchKey(e.ctx, k.ID, now.Add(4*time.Minute), 5*time.Minute)
	if err != nil || wrote {
		t.Fatalf("touch within the interval: %v %v", wrote, err)
	}
	wrote, err = e.s.TouchKey(e.ctx, k.ID, now.Add(6*time.Minute), 5*time.Minute)
	if err != nil || !wrote {
		t.Fatalf("touch after the interval: %v %v", wrote, err)
	}
	got := e.getKey(t, k.ID)
	if !got.LastUsedAt.Equal(now.Add(6*time.Minute)) || got.Revision != k.Revision {
		t.Fatalf("after touches: last used %v revision %d", got.LastUsedAt, got.Revision)
	}
	// An update does not roll LastUsedAt back.
	got.Name = "renamed"
	got.LastUsedAt = time.Time{}
	e.apply(t, store.Change{Keys: []store.KeyWrite{{Key: got, ExpectedRevision: got.Revision}}})
	if again := e.getKey(t, k.ID); !again.LastUsedAt.Equal(now.Add(6 * time.Minute)) {
		t.Fatalf("update reset LastUsedAt to %v", again.LastUsedAt)
	}
	_, err = e.s.TouchKey(e.ctx, "k00000000404", now, time.Minute)
	wantErr(t, err, store.ErrNotFound)
}

func testRehashKey(t *testing.T, e *env) {
	e.tenant(t, "acme")
	k := e.createKey(t, e.key("acme", "k00000000001"))
	newHash := bytes.Repeat([]byte{0xAB}, 32)
	if err := e.s.RehashKey(e.ctx, k.ID, newHash, 3); err != nil {
		t.Fatalf("RehashKey: %v", err)
	}
	got := e.getKey(t, k.ID)
	if !bytes.Equal(got.Hash, newHash) || got.PepperVersion != 3 || got.Revision != k.Revision {
		t.Fatalf("after rehash: %+v", got)
	}
	// A second process racing with the first loses cleanly, and one whose
	// view of the peppers is stale cannot move the key back.
	wantErr(t, e.s.RehashKey(e.ctx, k.ID, []byte("other"), 3), store.ErrConflict)
	wantErr(t, e.s.RehashKey(e.ctx, k.ID, []byte("older"), 2), store.ErrConflict)
	if got := e.getKey(t, k.ID); !bytes.Equal(got.Hash, newHash) || got.PepperVersion != 3 {
		t.Fatalf("a stale rehash moved the key to version %d", got.PepperVersion)
	}
	wantErr(t, e.s.RehashKey(e.ctx, "k00000000404", newHash, 3), store.ErrNotFound)
	// An update with the pre-rehash copy keeps the new hash.
	k.Name = "renamed"
	e.apply(t, store.Change{Keys: []store.KeyWrite{{Key: k, ExpectedRevision: k.Revision}}})
	if got := e.getKey(t, k.ID); !bytes.Equal(got.Hash, newHash) || got.PepperVersion != 3 {
		t.Fatalf("update rolled the hash back: version %d", got.PepperVersion)
	}
}
