package conformance

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/store"
)

func testListKeysPagination(t *testing.T, e *env) {
	e.tenant(t, "acme")
	keys := e.createKeys(t, "acme", 23, nil)
	want := reversedIDs(keys) // newest first
	for _, limit := range []int{1, 5, 23, 100} {
		wantEqual(t, fmt.Sprintf("ids with limit %d", limit), e.listAll(t, "acme", store.KeyQuery{Limit: limit}), want)
	}
	// An exact multiple of the limit ends without an empty trailing page.
	e.settle()
	page, err := e.s.ListKeys(e.ctx, "acme", store.KeyQuery{Limit: 23})
	if err != nil || len(page.Keys) != 23 || page.NextCursor != "" {
		t.Fatalf("single full page: %v, %d keys, cursor %q", err, len(page.Keys), page.NextCursor)
	}
	// Keys created in the same instant are ordered by id.
	e.tenant(t, "same")
	at := e.clk.Now()
	for _, id := range []string{"b00000000002", "b00000000001", "b00000000003"} {
		k := e.key("same", id)
		k.CreatedAt = at
		e.createKey(t, k)
	}
	wantEqual(t, "same-instant order", e.listAll(t, "same", store.KeyQuery{Limit: 2}), []string{"b00000000003", "b00000000002", "b00000000001"})

	for _, limit := range []int{0, -1, store.MaxPageSize + 1} {
		e.settle()
		if _, err := e.s.ListKeys(e.ctx, "acme", store.KeyQuery{Limit: limit}); err == nil {
			t.Fatalf("limit %d accepted", limit)
		}
	}
	e.settle()
	page, err = e.s.ListKeys(e.ctx, "empty", store.KeyQuery{Limit: 10})
	if err != nil || len(page.Keys) != 0 || page.NextCursor != "" {
		t.Fatalf("listing a tenant without keys: %v %+v", err, page)
	}
}

func testListKeysFilters(t *testing.T, e *env) {
	e.tenant(t, "acme")
	keys := e.createKeys(t, "acme", 30, func(i int, k *store.Key) {
		if i%3 == 0 {
			k.Environment = "test"
		}
		if i%5 == 0 {
			k.CreatedBy = "mem_bob"
		}
	})
	// Revoke a few so status filters have something to separate.
	for i, k := range keys {
		if i%4 == 0 {
			k.Status = store.KeyRevoked
			e.apply(t, store.Change{Keys: []store.KeyWrite{{Key: k, ExpectedRevision: k.Revision}}})
			keys[i].Status = store.KeyRevoked
		}
	}
	match := func(f func(k store.Key) bool) []string {
		var ids []string
		for i := len(keys) - 1; i >= 0; i-- {
			if f(keys[i]) {
				ids = append(ids, keys[i].ID)
			}
		}
		return ids
	}
	cases := []struct {
		q    store.KeyQuery
		want []string
	}{
		{store.KeyQuery{Environment: "test"}, match(func(k store.Key) bool { return k.Environment == "test" })},
		{store.KeyQuery{CreatedBy: "mem_bob"}, match(func(k store.Key) bool { return k.CreatedBy == "mem_bob" })},
		{store.KeyQuery{Status: store.KeyRevoked}, match(func(k store.Key) bool { return k.Status == store.KeyRevoked })},
		{store.KeyQuery{Status: store.KeyActive, Environment: "live"}, match(func(k store.Key) bool {
			return k.Status == store.KeyActive && k.Environment == "live"
		})},
		{store.KeyQuery{CreatedBy: "mem_nobody"}, nil},
	}
	for _, c := range cases {
		for _, limit := range []int{1, 2, 7, 100} {
			q := c.q
			q.Limit = limit
			wantEqual(t, fmt.Sprintf("filter %+v", q), e.listAll(t, "acme", q), c.want)
		}
	}
}

// testListKeysExaminesBoundedly: a listing looks at no more than
// store.MaxExamined keys per call, so a filter that passes over most of a
// tenant's keys answers a short (here empty) page with a cursor after the
// last key it looked at, and the pages that follow find every match.
func testListKeysExaminesBoundedly(t *testing.T, e *env) {
	e.tenant(t, "acme")
	n := store.MaxExamined + 100
	var keys []store.KeyWrite
	for i := range n {
		k := e.key("acme", fmt.Sprintf("acme%06d", i))
		k.CreatedAt = e.clk.Now().Add(time.Duration(i) * time.Millisecond)
		if i < 3 { // only the three oldest match
			k.Environment = "test"
		}
		keys = append(keys, store.KeyWrite{Key: k})
	}
	for batch := range slices.Chunk(keys, store.MaxChangeItems-2) { // with the tenant's and the member's counters
		e.apply(t, store.Change{Keys: batch})
	}
	var ids []string
	q := store.KeyQuery{Environment: "test", Limit: 2}
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("pagination does not end")
		}
		e.settle()
		page, err := e.s.ListKeys(e.ctx, "acme", q)
		if err != nil {
			t.Fatalf("ListKeys: %v", err)
		}
		if pages == 0 && (len(page.Keys) != 0 || page.NextCursor == "") {
			t.Fatalf("first page, past %d keys that do not match: %d keys, cursor %q", store.MaxExamined, len(page.Keys), page.NextCursor)
		}
		for _, k := range page.Keys {
			ids = append(ids, k.ID)
		}
		if page.NextCursor == "" {
			break
		}
		q.Cursor = page.NextCursor
	}
	if want := []string{"acme000002", "acme000001", "acme000000"}; !slices.Equal(ids, want) {
		t.Fatalf("filtered keys %v, want %v", ids, want)
	}
}

func testListKeysCursor(t *testing.T, e *env) {
	e.tenant(t, "acme")
	e.createKeys(t, "acme", 3, nil)
	for _, bad := range []string{"%%%", "bm90LWEtY3Vyc29y", store.EncodeCursor("2026-03-01T12:00:00.000000000Z#a'b"), store.EncodeCursor("yesterday#k1")} {
		e.settle()
		_, err := e.s.ListKeys(e.ctx, "acme", store.KeyQuery{Limit: 1, Cursor: bad})
		wantErr(t, err, store.ErrInvalidCursor)
	}
	// A cursor is a position, not a capability: another tenant's cursor
	// pages through the caller's own keys only.
	e.tenant(t, "evil")
	e.settle()
	page, err := e.s.ListKeys(e.ctx, "acme", store.KeyQuery{Limit: 1})
	if err != nil || page.NextCursor == "" {
		t.Fatalf("first page: %v %+v", err, page)
	}
	e.settle()
	other, err := e.s.ListKeys(e.ctx, "evil", store.KeyQuery{Limit: 10, Cursor: page.NextCursor})
	if err != nil || len(other.Keys) != 0 {
		t.Fatalf("cursor crossed tenants: %v %+v", err, other.Keys)
	}
}

func testListExpiring(t *testing.T, e *env) {
	e.tenant(t, "alpha")
	e.tenant(t, "bravo")
	now := e.clk.Now()
	var want []string
	// Keys of two tenants expiring at interleaved times, some at the same
	// instant, and keys that must not appear.
	for i := range 14 {
		tenant := []string{"alpha", "bravo"}[i%2]
		k := e.key(tenant, fmt.Sprintf("x%011d", i))
		k.ExpiresAt = now.Add(time.Duration(i/2) * time.Hour)
		e.createKey(t, k)
		want = append(want, k.ID)
	}
	never := e.key("alpha", "n00000000001")
	never.ExpiresAt = time.Time{}
	e.createKey(t, never)
	later := e.key("alpha", "l00000000001")
	later.ExpiresAt = now.Add(100 * time.Hour)
	e.createKey(t, later)
	revoked := e.createKey(t, e.key("bravo", "r00000000001"))
	revoked.Status = store.KeyRevoked
	revoked.ExpiresAt = now
	e.apply(t, store.Change{Keys: []store.KeyWrite{{Key: revoked, ExpectedRevision: revoked.Revision}}})
	// An expiring (rotated) key is still due; an expired one is not.
	rotated := e.createKey(t, e.key("alpha", "o00000000001"))
	rotated.Status, rotated.ExpiresAt = store.KeyExpiring, now.Add(90*time.Minute)
	e.apply(t, store.Change{Keys: []store.KeyWrite{{Key: rotated, ExpectedRevision: rotated.Revision}}})
	gone := e.createKey(t, e.key("alpha", "g00000000001"))
	gone.Status, gone.ExpiresAt = store.KeyExpired, now
	e.apply(t, store.Change{Keys: []store.KeyWrite{{Key: gone, ExpectedRevision: gone.Revision}}})
	// Soonest first, then by id; the rotated key falls between hours 1 and 2.
	want = append(want[:4], append([]string{rotated.ID}, want[4:]...)...)

	list := func(before time.Time, limit int) []string {
		t.Helper()
		var ids []string
		q := store.ExpiryQuery{Before: before, Limit: limit}
		for pages := 0; ; pages++ {
			if pages > 50 {
				t.Fatal("ListExpiring does not end")
			}
			e.settle()
			page, err := e.s.ListExpiring(e.ctx, q)
			if err != nil {
				t.Fatalf("ListExpiring: %v", err)
			}
			for _, k := range page.Keys {
				ids = append(ids, k.ID)
			}
			if q.Cursor = page.NextCursor; q.Cursor == "" {
				return ids
			}
		}
	}
	for _, limit := range []int{1, 3, 100} {
		wantEqual(t, fmt.Sprintf("due within 7h, limit %d", limit), list(now.Add(7*time.Hour), limit), want)
	}
	wantEqual(t, "due now", list(now, 10), want[:2])
	wantEqual(t, "due within 90m", list(now.Add(90*time.Minute), 10), want[:5])
	e.settle()
	if _, err := e.s.ListExpiring(e.ctx, store.ExpiryQuery{Before: now, Limit: 1, Cursor: "%%"}); !errors.Is(err, store.ErrInvalidCursor) {
		t.Fatalf("bad cursor: %v", err)
	}
	e.settle()
	if _, err := e.s.ListExpiring(e.ctx, store.ExpiryQuery{Before: now, Limit: 0}); err == nil {
		t.Fatal("limit 0 accepted")
	}

	// A key leaves the list when it is revoked or its expiry is cleared.
	first := e.getKey(t, want[0])
	first.ExpiresAt = time.Time{}
	e.apply(t, store.Change{Keys: []store.KeyWrite{{Key: first, ExpectedRevision: first.Revision}}})
	second := e.getKey(t, want[1])
	second.Status = store.KeyRevoked
	e.apply(t, store.Change{Keys: []store.KeyWrite{{Key: second, ExpectedRevision: second.Revision}}})
	wantEqual(t, "due now after changes", list(now, 10), []string(nil))
}

// testListingsBeforeSettling lists right after writes, before a lagging
// store's indexes show them: a listing may leave out what was just
// written, but whatever it returns is the key as it is now, once, in
// order, matching the filters; and every key not written since the last
// settle is there.
func testListingsBeforeSettling(t *testing.T, e *env) {
	e.tenant(t, "acme")
	now := e.clk.Now()
	keys := e.createKeys(t, "acme", 12, func(i int, k *store.Key) {
		k.ExpiresAt = now.Add(time.Duration(i+1) * time.Hour)
	})
	e.settle()
	if p, ok := e.s.(Pauser); ok {
		defer p.PauseIndexes()()
	}
	touched := map[string]bool{}
	for i, k := range keys {
		switch i % 4 {
		case 0:
			k.Status, k.RevokedAt = store.KeyRevoked, e.clk.Now()
		case 1:
			k.ExpiresAt = k.ExpiresAt.Add(30 * time.Minute) // a later position in the expiry window
		case 2:
			k.ExpiresAt = k.ExpiresAt.Add(20 * time.Hour) // out of the window
		default:
			continue
		}
		e.apply(t, store.Change{Keys: []store.KeyWrite{{Key: k, ExpectedRevision: k.Revision}}})
		touched[k.ID] = true
	}
	for i := range 3 {
		k := e.createKey(t, e.key("acme", fmt.Sprintf("new%09d", i)))
		touched[k.ID] = true
		e.clk.Advance(time.Millisecond)
	}
	current := map[string]store.Key{}
	for _, k := range keys {
		current[k.ID] = normal(e.getKey(t, k.ID))
	}
	// check pages through a listing at once, each key judged as read now.
	check := func(what string, page func(cursor string) (store.KeyPage, error), want func(k store.Key) bool, before func(a, b store.Key) bool) {
		t.Helper()
		seen := map[string]bool{}
		var last store.Key
		cursor := ""
		for pages := 0; ; pages++ {
			if pages > 50 {
				t.Fatalf("%s: does not end", what)
			}
			p, err := page(cursor)
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			for _, k := range p.Keys {
				now := normal(e.getKey(t, k.ID))
				wantEqual(t, what+": listed key as read now", normal(k), now)
				if seen[k.ID] || !want(k) || (last.ID != "" && !before(last, k)) {
					t.Fatalf("%s: %s listed twice, out of order or against the filter", what, k.ID)
				}
				seen[k.ID], last = true, k
			}
			if cursor = p.NextCursor; cursor == "" {
				break
			}
		}
		for id, k := range current {
			if !touched[id] && want(k) && !seen[id] {
				t.Fatalf("%s: untouched key %s left out", what, id)
			}
		}
	}
	newestFirst := func(a, b store.Key) bool { return store.KeyOrder(a) > store.KeyOrder(b) }
	active := func(k store.Key) bool { return k.Status == store.KeyActive }
	for _, limit := range []int{1, 4, 100} {
		check(fmt.Sprintf("active keys, limit %d", limit), func(cursor string) (store.KeyPage, error) {
			return e.s.ListKeys(e.ctx, "acme", store.KeyQuery{Status: store.KeyActive, Limit: limit, Cursor: cursor})
		}, active, newestFirst)
		check(fmt.Sprintf("keys of mem_alice, limit %d", limit), func(cursor string) (store.KeyPage, error) {
			return e.s.ListKeys(e.ctx, "acme", store.KeyQuery{CreatedBy: "mem_alice", Limit: limit, Cursor: cursor})
		}, func(k store.Key) bool { return k.CreatedBy == "mem_alice" }, newestFirst)
		before := now.Add(12 * time.Hour)
		check(fmt.Sprintf("expiring, limit %d", limit), func(cursor string) (store.KeyPage, error) {
			return e.s.ListExpiring(e.ctx, store.ExpiryQuery{Before: before, Limit: limit, Cursor: cursor})
		}, func(k store.Key) bool {
			return active(k) && !k.ExpiresAt.IsZero() && !k.ExpiresAt.After(before)
		}, func(a, b store.Key) bool { return store.ExpiryOrder(a) < store.ExpiryOrder(b) })
	}
}

func testScanKeys(t *testing.T, e *env) {
	e.tenant(t, "alpha")
	e.tenant(t, "bravo")
	e.createKeys(t, "alpha", 9, nil)
	e.createKeys(t, "bravo", 8, nil)
	// Non-key items must not disturb the scan.
	e.apply(t, store.Change{Audit: []store.AuditEntry{e.audit("alpha", "a1", "")}})
	if err := e.s.CreatePepper(e.ctx, store.Pepper{Version: 1, Ciphertext: []byte("c"), CreatedAt: e.clk.Now()}); err != nil {
		t.Fatal(err)
	}
	for _, limit := range []int{1, 4, 100} {
		ScanEachOnce(t, e.s, limit, 17)
	}
	if _, err := e.s.ScanKeys(e.ctx, "not a cursor!", 5); !errors.Is(err, store.ErrInvalidCursor) {
		t.Fatalf("bad cursor: %v", err)
	}
	if _, err := e.s.ScanKeys(e.ctx, "", 0); err == nil {
		t.Fatal("limit 0 accepted")
	}
}

// ScanEachOnce pages through every key with ScanKeys and fails unless the
// scan ends, respects limit, and returns each of want keys exactly once.
func ScanEachOnce(t *testing.T, s store.Store, limit, want int) {
	t.Helper()
	seen := map[string]int{}
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 10*want+10 {
			t.Fatalf("limit %d: ScanKeys does not end", limit)
		}
		page, err := s.ScanKeys(t.Context(), cursor, limit)
		if err != nil {
			t.Fatalf("limit %d: ScanKeys: %v", limit, err)
		}
		if len(page.Keys) > limit {
			t.Fatalf("page of %d, limit %d", len(page.Keys), limit)
		}
		for _, k := range page.Keys {
			seen[k.ID]++
		}
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	if len(seen) != want {
		t.Fatalf("limit %d: scanned %d distinct keys, want %d", limit, len(seen), want)
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("limit %d: key %s scanned %d times", limit, id, n)
		}
	}
}

// SkippedOnce pages through the tenant's keys one at a time and checks
// that the one key that does not decode is reported as skipped by exactly
// one page, whichever page boundary it falls next to, so that a
// revocation counting what it saw counts it once. A backend's own tests
// call it after damaging a stored key.
func SkippedOnce(t *testing.T, s store.Store, tenant string) {
	t.Helper()
	var skipped []string
	q := store.KeyQuery{Limit: 1}
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatal("pagination does not end")
		}
		page, err := s.ListKeys(t.Context(), tenant, q)
		if err != nil {
			t.Fatal(err)
		}
		skipped = append(skipped, page.Skipped...)
		if q.Cursor = page.NextCursor; q.Cursor == "" {
			break
		}
	}
	if len(skipped) != 1 {
		t.Fatalf("pages of one key reported %v as skipped", skipped)
	}
}
