package conformance

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/store"
)

// concurrently runs fn(0..n-1) in n goroutines released at once, to make
// races likely, and returns their errors by index.
func concurrently(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = fn(i)
		}()
	}
	close(start)
	wg.Wait()
	return errs
}

// testConcurrentRevokeAndRotate races a revoke against a rotation of the
// same key revision, many times: exactly one may win each race, and the
// loser leaves nothing behind.
func testConcurrentRevokeAndRotate(t *testing.T, e *env) {
	e.tenant(t, "acme")
	for round := range 8 {
		old := e.createKey(t, e.key("acme", fmt.Sprintf("r%011d", round)))
		newKey := e.key("acme", fmt.Sprintf("n%011d", round))
		newKey.Replaces = old.ID
		rotated := old
		rotated.Status, rotated.ReplacedBy = store.KeyExpiring, newKey.ID
		revoked := old
		revoked.Status, revoked.RevokedAt = store.KeyRevoked, e.clk.Now()

		changes := []store.Change{
			{Keys: []store.KeyWrite{{Key: newKey}, {Key: rotated, ExpectedRevision: old.Revision}},
				Audit: []store.AuditEntry{e.audit("acme", fmt.Sprintf("rot%d", round), old.ID)}},
			{Keys: []store.KeyWrite{{Key: revoked, ExpectedRevision: old.Revision}},
				Audit: []store.AuditEntry{e.audit("acme", fmt.Sprintf("rev%d", round), old.ID)}},
		}
		errs := concurrently(len(changes), func(i int) error { return e.s.Apply(e.ctx, changes[i]) })

		rotateWon, revokeWon := errs[0] == nil, errs[1] == nil
		if rotateWon == revokeWon {
			t.Fatalf("round %d: rotate err %v, revoke err %v: want exactly one winner", round, errs[0], errs[1])
		}
		for _, err := range errs {
			if err != nil && !errors.Is(err, store.ErrConflict) {
				t.Fatalf("round %d: loser failed with %v, want ErrConflict", round, err)
			}
		}
		got := e.getKey(t, old.ID)
		_, newErr := e.s.GetKey(e.ctx, newKey.ID)
		if rotateWon {
			if got.Status != store.KeyExpiring || got.ReplacedBy != newKey.ID || newErr != nil {
				t.Fatalf("round %d: rotation won but old=%+v new err=%v", round, got, newErr)
			}
		} else {
			if got.Status != store.KeyRevoked || got.ReplacedBy != "" || !errors.Is(newErr, store.ErrNotFound) {
				t.Fatalf("round %d: revoke won but old=%+v new err=%v", round, got, newErr)
			}
		}
		if got.Revision != old.Revision+1 {
			t.Fatalf("round %d: revision %d, want %d", round, got.Revision, old.Revision+1)
		}
		e.settle()
		page, err := e.s.ListAudit(e.ctx, "acme", store.AuditQuery{KeyID: old.ID, Limit: 10})
		if err != nil || len(page.Entries) != 1 {
			t.Fatalf("round %d: audit entries for the key: %v %+v", round, err, page.Entries)
		}
	}
}

func testConcurrentCreateSameID(t *testing.T, e *env) {
	e.tenant(t, "acme")
	errs := concurrently(6, func(i int) error {
		k := e.key("acme", "k00000000001")
		k.Name = fmt.Sprintf("writer %d", i)
		return e.s.Apply(e.ctx, store.Change{Keys: []store.KeyWrite{{Key: k}}})
	})
	winners := 0
	for _, err := range errs {
		switch {
		case err == nil:
			winners++
		case errors.Is(err, store.ErrAlreadyExists), errors.Is(err, store.ErrConflict):
		default:
			t.Fatalf("concurrent create failed with %v", err)
		}
	}
	if winners != 1 {
		t.Fatalf("%d concurrent creates of one id succeeded, want 1 (%v)", winners, errs)
	}
	e.wantKeyCount(t, "acme", 1)
}

func testConcurrentIdempotency(t *testing.T, e *env) {
	errs := concurrently(6, func(int) error {
		return e.s.PutIdempotency(e.ctx, store.Idempotency{TenantID: "acme", Key: "same", RequestHash: "h",
			CreatedAt: e.clk.Now(), ExpiresAt: e.clk.Now().Add(time.Hour)})
	})
	winners := 0
	for _, err := range errs {
		if err == nil {
			winners++
		} else if !errors.Is(err, store.ErrAlreadyExists) {
			t.Fatalf("concurrent PutIdempotency failed with %v", err)
		}
	}
	if winners != 1 {
		t.Fatalf("%d concurrent PutIdempotency succeeded, want 1", winners)
	}
}

func testTenantIsolation(t *testing.T, e *env) {
	e.tenant(t, "alpha")
	e.tenant(t, "bravo")
	a := e.createKeys(t, "alpha", 4, nil)
	b := e.createKeys(t, "bravo", 3, nil)
	e.apply(t, store.Change{Audit: []store.AuditEntry{e.audit("alpha", "x1", a[0].ID), e.audit("bravo", "x1", b[0].ID)}})

	wantEqual(t, "alpha keys", e.listAll(t, "alpha", store.KeyQuery{Limit: 2}), reversedIDs(a))
	wantEqual(t, "bravo keys", e.listAll(t, "bravo", store.KeyQuery{Limit: 2}), reversedIDs(b))

	// Asking alpha's audit for bravo's key finds nothing.
	e.settle()
	page, err := e.s.ListAudit(e.ctx, "alpha", store.AuditQuery{KeyID: b[0].ID, Limit: 10})
	if err != nil || len(page.Entries) != 0 {
		t.Fatalf("alpha's audit returned bravo's entries: %v %+v", err, page.Entries)
	}
	e.settle()
	page, err = e.s.ListAudit(e.ctx, "bravo", store.AuditQuery{Limit: 10})
	if err != nil || len(page.Entries) != 1 || page.Entries[0].TenantID != "bravo" || page.Entries[0].KeyID != b[0].ID {
		t.Fatalf("bravo's audit: %v %+v", err, page.Entries)
	}

	// Alpha cannot write bravo's key by naming itself as the tenant.
	hijack := b[0]
	hijack.TenantID = "alpha"
	hijack.Scopes = []string{"*"}
	wantErr(t, e.s.Apply(e.ctx, store.Change{Keys: []store.KeyWrite{{Key: hijack, ExpectedRevision: hijack.Revision}}}), store.ErrNotFound)
	if got := e.getKey(t, b[0].ID); got.TenantID != "bravo" || reflect.DeepEqual(got.Scopes, []string{"*"}) {
		t.Fatalf("cross-tenant write landed: %+v", got)
	}

	// Idempotency keys are per tenant.
	records := map[string]store.Idempotency{}
	for _, tenant := range []string{"alpha", "bravo"} {
		r := store.Idempotency{TenantID: tenant, Key: "shared", RequestHash: tenant, CreatedAt: e.clk.Now(), ExpiresAt: e.clk.Now().Add(time.Hour)}
		if err := e.s.PutIdempotency(e.ctx, r); err != nil {
			t.Fatalf("PutIdempotency(%s): %v", tenant, err)
		}
		records[tenant] = r
	}
	if r, err := e.s.GetIdempotency(e.ctx, "bravo", "shared"); err != nil || r.RequestHash != "bravo" {
		t.Fatalf("bravo's idempotency record: %v %+v", err, r)
	}
	if err := e.s.DeleteIdempotency(e.ctx, records["alpha"]); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.GetIdempotency(e.ctx, "bravo", "shared"); err != nil {
		t.Fatalf("deleting alpha's record removed bravo's: %v", err)
	}
}
