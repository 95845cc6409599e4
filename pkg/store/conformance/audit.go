package conformance

import (
	"fmt"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/store"
)

func testAudit(t *testing.T, e *env) {
	e.tenant(t, "acme")
	var want []store.AuditEntry
	for i := range 12 {
		keyID := "k00000000001"
		if i%2 == 1 {
			keyID = "k00000000002"
		}
		a := e.audit("acme", fmt.Sprintf("a%02d", i), keyID)
		if i == 11 {
			a.KeyID, a.Details = "", nil // a tenant-level entry
		}
		e.apply(t, store.Change{Audit: []store.AuditEntry{a}})
		want = append([]store.AuditEntry{a}, want...)
		e.clk.Advance(time.Second)
	}
	var got []store.AuditEntry
	q := store.AuditQuery{Limit: 5}
	for {
		e.settle()
		page, err := e.s.ListAudit(e.ctx, "acme", q)
		if err != nil {
			t.Fatalf("ListAudit: %v", err)
		}
		for _, a := range page.Entries {
			got = append(got, normalAudit(a))
		}
		if page.NextCursor == "" {
			break
		}
		q.Cursor = page.NextCursor
	}
	for i := range want {
		want[i] = normalAudit(want[i])
	}
	wantEqual(t, "audit log", got, want)

	var forKey []string
	q = store.AuditQuery{KeyID: "k00000000002", Limit: 2}
	for {
		e.settle()
		page, err := e.s.ListAudit(e.ctx, "acme", q)
		if err != nil {
			t.Fatalf("ListAudit by key: %v", err)
		}
		for _, a := range page.Entries {
			forKey = append(forKey, a.ID)
		}
		if page.NextCursor == "" {
			break
		}
		q.Cursor = page.NextCursor
	}
	wantEqual(t, "audit of one key", forKey, []string{"a09", "a07", "a05", "a03", "a01"})

	e.settle()
	_, err := e.s.ListAudit(e.ctx, "acme", store.AuditQuery{Limit: 1, Cursor: "!"})
	wantErr(t, err, store.ErrInvalidCursor)
}

// testAuditEnvironment: a listing for one environment holds the entries
// about its keys and those about no key, also entries written without an
// environment (placed by their key's display form).
func testAuditEnvironment(t *testing.T, e *env) {
	e.tenant(t, "acme")
	for _, edit := range []func() store.AuditEntry{
		func() store.AuditEntry {
			a := e.audit("acme", "live1", "k00000000001")
			a.Environment = "live"
			return a
		},
		func() store.AuditEntry {
			a := e.audit("acme", "test1", "k00000000002")
			a.Environment, a.KeyDisplay = "test", "sk_test_…abcd"
			return a
		},
		func() store.AuditEntry {
			a := e.audit("acme", "tenant", "")
			a.KeyDisplay = ""
			return a
		},
		func() store.AuditEntry {
			a := e.audit("acme", "legacy", "k00000000003")
			a.KeyDisplay = "sk_test_…wxyz" // written before entries carried their environment
			return a
		},
	} {
		e.apply(t, store.Change{Audit: []store.AuditEntry{edit()}})
		e.clk.Advance(time.Second)
	}
	for env, want := range map[string][]string{
		"live": {"tenant", "live1"},
		"test": {"legacy", "tenant", "test1"},
		"":     {"legacy", "tenant", "test1", "live1"},
	} {
		var got []string
		q := store.AuditQuery{Environment: env, Limit: 1}
		for {
			e.settle()
			page, err := e.s.ListAudit(e.ctx, "acme", q)
			if err != nil {
				t.Fatalf("ListAudit(%q): %v", env, err)
			}
			for _, a := range page.Entries {
				got = append(got, a.ID)
			}
			if page.NextCursor == "" {
				break
			}
			q.Cursor = page.NextCursor
		}
		wantEqual(t, "audit of environment "+env, got, want)
	}
	e.settle()
	page, err := e.s.ListAudit(e.ctx, "acme", store.AuditQuery{Environment: "test", KeyID: "k00000000002", Limit: 10})
	if err != nil || len(page.Entries) != 1 || page.Entries[0].Environment != "test" {
		t.Fatalf("audit of a test key in the test environment: %v, %+v", err, page.Entries)
	}
}

func testAuditTTL(t *testing.T, e *env) {
	e.tenant(t, "acme")
	kept := e.audit("acme", "kept", "k00000000001")
	kept.ExpiresAt = e.clk.Now().Add(48 * time.Hour)
	forever := e.audit("acme", "forever", "k00000000001")
	soon := e.audit("acme", "soon", "k00000000001")
	soon.ExpiresAt = e.clk.Now().Add(time.Hour)
	gone := e.audit("acme", "gone", "k00000000001")
	gone.ExpiresAt = e.clk.Now().Add(-time.Second)
	e.apply(t, store.Change{Audit: []store.AuditEntry{kept, forever, soon, gone}})

	ids := func(q store.AuditQuery) []string {
		e.settle()
		page, err := e.s.ListAudit(e.ctx, "acme", q)
		if err != nil {
			t.Fatalf("ListAudit: %v", err)
		}
		var ids []string
		for _, a := range page.Entries {
			ids = append(ids, a.ID)
		}
		return ids
	}
	// Same time for all: ordered by id descending.
	wantEqual(t, "live entries", ids(store.AuditQuery{Limit: 10}), []string{"soon", "kept", "forever"})
	e.clk.Advance(2 * time.Hour)
	wantEqual(t, "after an hour", ids(store.AuditQuery{Limit: 10}), []string{"kept", "forever"})
	wantEqual(t, "by key after an hour", ids(store.AuditQuery{KeyID: "k00000000001", Limit: 10}), []string{"kept", "forever"})
	// An expired id is free again.
	gone.ExpiresAt = time.Time{}
	e.apply(t, store.Change{Audit: []store.AuditEntry{gone}})
	wantEqual(t, "reused id", ids(store.AuditQuery{Limit: 10}), []string{"kept", "gone", "forever"})
}
