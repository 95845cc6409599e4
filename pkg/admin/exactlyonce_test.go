package admin_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/storetest"
	"github.com/keyward/keyward/pkg/clock"
	"github.com/keyward/keyward/pkg/lifecycle"
	"github.com/keyward/keyward/pkg/store"
	"github.com/keyward/keyward/pkg/store/embedded"
)

// faultyStore fails the next Apply as a lost answer does: after the
// change was written (committed), or before.
type faultyStore struct {
	store.Store
	mu              sync.Mutex
	commitThenFail  int
	failWithoutWork int
	releaseFails    int // DeleteIdempotency calls that fail, as in the same outage
}

func (f *faultyStore) DeleteIdempotency(ctx context.Context, r store.Idempotency) error {
	f.mu.Lock()
	fail := f.releaseFails > 0
	if fail {
		f.releaseFails--
	}
	f.mu.Unlock()
	if fail {
		return errAmbiguous
	}
	return f.Store.DeleteIdempotency(ctx, r)
}

var errAmbiguous = errors.New("RequestTimeout: the connection was reset")

func (f *faultyStore) Apply(ctx context.Context, c store.Change) error {
	f.mu.Lock()
	commit, fail := f.commitThenFail > 0, f.failWithoutWork > 0
	if commit {
		f.commitThenFail--
	} else if fail {
		f.failWithoutWork--
	}
	f.mu.Unlock()
	switch {
	case commit:
		if err := f.Store.Apply(ctx, c); err != nil {
			return err
		}
		return errAmbiguous
	case fail:
		return errAmbiguous
	}
	return f.Store.Apply(ctx, c)
}

func (f *faultyStore) set(commitThenFail, failWithoutWork int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.commitThenFail, f.failWithoutWork = commitThenFail, failWithoutWork
}

// forEachFaultyStore runs test against both backends behind a faultyStore.
func forEachFaultyStore(t *testing.T, test func(t *testing.T, h *harness, f *faultyStore)) {
	var clk *clock.Manual
	storetest.ForEach(t, func() time.Time { return clk.Now() }, func(t *testing.T, st store.Store) {
		clk = clock.NewManual(start)
		f := &faultyStore{Store: st}
		test(t, newHarness(t, f, clk), f)
	})
}

type createAnswer struct {
	Key struct {
		ID         string
		ReplacedBy *string `json:"replaced_by"`
		Status     string
	}
	Secret      string
	PreviousKey *struct{ ID, Status string } `json:"previous_key"`
}

func decodeCreated(t *testing.T, raw []byte) createAnswer {
	t.Helper()
	var a createAnswer
	if err := json.Unmarshal(raw, &a); err != nil {
		t.Fatalf("answer %s: %v", raw, err)
	}
	return a
}

// TestLostCommitAnswerMakesOneKey: a create whose transaction committed
// but whose answer was lost is settled through its Idempotency-Key record:
// the caller gets its key and secret, and a retry gets the same key, never
// a second one; a create that failed without effect is retried cleanly.
func TestLostCommitAnswerMakesOneKey(t *testing.T) {
	forEachFaultyStore(t, func(t *testing.T, h *harness, f *faultyStore) {
		body := map[string]any{"name": "once", "environment": "live", "scopes": []string{"invoices:read"}}
		before := h.count("acme")

		f.set(1, 0)
		_, raw := h.ok(h.writer, "POST", "/v1/keys", body, 201, "Idempotency-Key", "lost-answer")
		first := decodeCreated(t, raw)
		if first.Secret == "" {
			t.Fatalf("the settled create handed out no secret: %s", raw)
		}
		hdr, again := h.ok(h.writer, "POST", "/v1/keys", body, 201, "Idempotency-Key", "lost-answer")
		if hdr.Get("Idempotent-Replayed") != "true" || decodeCreated(t, again).Key.ID != first.Key.ID || decodeCreated(t, again).Secret != "" {
			t.Fatalf("retry: %v %s", hdr, again)
		}
		if n := h.count("acme") - before; n != 1 {
			t.Fatalf("%d keys for one Idempotency-Key", n)
		}

		// Failed before anything was written: the claim is released, and
		// the retry makes the key.
		f.set(0, 1)
		h.fails(h.writer, "POST", "/v1/keys", body, 500, "api_error", "", "Idempotency-Key", "no-effect")
		_, raw = h.ok(h.writer, "POST", "/v1/keys", body, 201, "Idempotency-Key", "no-effect")
		if decodeCreated(t, raw).Secret == "" {
			t.Fatalf("retry after a failure without effect: %s", raw)
		}
		if n := h.count("acme") - before; n != 2 {
			t.Fatalf("%d keys after two Idempotency-Keys", n)
		}

		// Committed, and the store answers the settlement only at its
		// second try: still one key, answered with its secret.
		f.set(1, 0)
		f.releaseFails = 1
		_, raw = h.ok(h.writer, "POST", "/v1/keys", body, 201, "Idempotency-Key", "settled-late")
		if k := decodeCreated(t, raw); k.Secret == "" || h.limits.tiers[usageIdentity(t, h, k.Key.ID)] == "" {
			t.Fatalf("a create settled on a retry: %s", raw)
		}

		// Committed, and the settlement never gets an answer: 500, but the
		// key keeps its rate-limit identity (an unknown outcome undoes
		// nothing), and the retry finds the key.
		f.set(1, 0)
		f.releaseFails = 100
		h.fails(h.writer, "POST", "/v1/keys", body, 500, "api_error", "", "Idempotency-Key", "never-settled")
		f.releaseFails = 0
		hdr, raw = h.ok(h.writer, "POST", "/v1/keys", body, 201, "Idempotency-Key", "never-settled")
		k := decodeCreated(t, raw)
		if hdr.Get("Idempotent-Replayed") != "true" || h.limits.tiers[usageIdentity(t, h, k.Key.ID)] == "" {
			t.Fatalf("after an unsettled create: %v %s, identities %v", hdr, raw, h.limits.tiers)
		}
		if n := h.count("acme") - before; n != 4 {
			t.Fatalf("%d keys after four Idempotency-Keys", n)
		}
	})
}

// TestFailedCreateOrRotateLeavesNothing: a create or rotate that answers
// 5xx leaves no visible change (no key, no rate-limit identity, no old key
// marked replaced), and its retry succeeds.
func TestFailedCreateOrRotateLeavesNothing(t *testing.T) {
	forEachFaultyStore(t, func(t *testing.T, h *harness, f *faultyStore) {
		body := map[string]any{"name": "x", "environment": "live", "scopes": []string{"invoices:read"}}
		before := h.count("acme")
		identities := len(h.limits.tiers)

		// Provisioning the rate limit fails: nothing is written.
		h.limits.fail = errors.New("TooManyRequestsException")
		h.fails(h.writer, "POST", "/v1/keys", body, 500, "api_error", "", "Idempotency-Key", "c1")
		h.limits.fail = nil
		if h.count("acme") != before || len(h.limits.tiers) != identities {
			t.Fatalf("a failed create left %d keys, %d identities", h.count("acme")-before, len(h.limits.tiers)-identities)
		}
		if !strings.Contains(h.logs.String(), "TooManyRequestsException") {
			t.Fatal("the cause was not logged")
		}
		// The store refuses the write (a full disk): the identity made for
		// it is removed again.
		f.set(0, 1)
		h.fails(h.writer, "POST", "/v1/keys", body, 500, "api_error", "")
		if h.count("acme") != before || len(h.limits.tiers) != identities {
			t.Fatalf("a refused write left %d keys, %d identities", h.count("acme")-before, len(h.limits.tiers)-identities)
		}
		k := decodeCreated(t, func() []byte {
			_, raw := h.ok(h.writer, "POST", "/v1/keys", body, 201, "Idempotency-Key", "c1")
			return raw
		}())

		h.limits.fail = errors.New("TooManyRequestsException")
		h.fails(h.writer, "POST", "/v1/keys/"+k.Key.ID+"/rotate", nil, 500, "api_error", "", "Idempotency-Key", "r1")
		h.limits.fail = nil
		_, raw := h.ok(h.writer, "GET", "/v1/keys/"+k.Key.ID, nil, 200)
		if got := decodeCreated(t, []byte(`{"key":`+string(raw)+`}`)); got.Key.Status != "active" || got.Key.ReplacedBy != nil {
			t.Fatalf("a failed rotation changed the old key: %s", raw)
		}
		_, raw = h.ok(h.writer, "POST", "/v1/keys/"+k.Key.ID+"/rotate", nil, 201, "Idempotency-Key", "r1")
		if rot := decodeCreated(t, raw); rot.Secret == "" || rot.PreviousKey == nil || rot.PreviousKey.Status != "expiring" {
			t.Fatalf("retried rotation: %s", raw)
		}

		// A rate-limit change that cannot be written leaves the gateway on
		// the old limit.
		other := decodeCreated(t, func() []byte { _, raw := h.ok(h.writer, "POST", "/v1/keys", body, 201); return raw }())
		id := strings.TrimPrefix(other.Key.ID, "key_")
		f.set(0, 1)
		h.fails(h.writer, "PATCH", "/v1/keys/"+other.Key.ID, map[string]any{"rate_limit": map[string]int{"requests_per_minute": 600}}, 500, "api_error", "")
		if tier := h.limits.tiers["keywardkey"+id]; tier != "default" {
			t.Fatalf("after a failed rate-limit change the gateway enforces %q", tier)
		}
		// Written, its answer lost: the gateway keeps the new limit, the
		// one the key holds.
		f.set(1, 0)
		h.fails(h.writer, "PATCH", "/v1/keys/"+other.Key.ID, map[string]any{"rate_limit": map[string]int{"requests_per_minute": 600}}, 500, "api_error", "")
		if tier := h.limits.tiers["keywardkey"+id]; tier != "standard" {
			t.Fatalf("after a rate-limit change whose answer was lost the gateway enforces %q", tier)
		}
	})
}

// slowWrites makes each write take step of the clock, once step is set.
type slowWrites struct {
	store.Store
	clk  *clock.Manual
	step *time.Duration
}

func (s slowWrites) Apply(ctx context.Context, c store.Change) error {
	s.clk.Advance(*s.step)
	return s.Store.Apply(ctx, c)
}

// TestIncompleteRevocationSaysSo: a member revocation that reaches its
// time budget answers 503 revocation_incomplete with Retry-After, after
// flushing the cache for what it did revoke; calling again finishes it.
func TestIncompleteRevocationSaysSo(t *testing.T) {
	clk := clock.NewManual(time.Date(2026, 4, 1, 10, 0, 0, 0, time.UTC))
	step := time.Duration(0)
	h := newHarness(t, slowWrites{Store: storetest.Temp(t, embedded.WithClock(clk.Now)), clk: clk, step: &step}, clk,
		lifecycle.WithRevokeBudget(5*time.Second))
	const n = 120
	for range n {
		h.create(h.admin, map[string]any{"name": "bot", "environment": "live", "scopes": []string{"invoices:read"}, "created_by": "mem_bot"})
	}
	step = 3 * time.Second // two transactions of a page pass the budget
	flushes := h.flusher.count()
	status, hdr, body := h.do(h.admin, "POST", "/v1/members/mem_bot/revoke-keys", nil)
	var env struct {
		Error struct{ Type, Code, Message string }
	}
	if err := json.Unmarshal(body, &env); err != nil || status != 503 || env.Error.Code != "revocation_incomplete" ||
		hdr.Get("Retry-After") != "1" || !strings.Contains(env.Error.Message, "100 keys") {
		t.Fatalf("the first call: %d %v %s", status, hdr, body)
	}
	if h.flusher.count() != flushes+1 {
		t.Fatal("the keys the first call revoked were not flushed from the cache")
	}
	_, body = h.ok(h.admin, "POST", "/v1/members/mem_bot/revoke-keys", nil, 200)
	var done struct{ Revoked int }
	if err := json.Unmarshal(body, &done); err != nil || done.Revoked != n-100 {
		t.Fatalf("the second call: %s", body)
	}
}

// usageIdentity is the rate-limit identity of an acme key, by public id.
func usageIdentity(t *testing.T, h *harness, publicID string) string {
	t.Helper()
	return h.gw.RateLimitIdentity("acme", strings.TrimPrefix(publicID, "key_"))
}

// TestChangesThatTakeAccessHappenOnce: a report-leak or a PATCH whose
// change was written but whose answer was lost is replayed, not run again
// (one key.leaked event, one key.updated), and the replay flushes the
// authorizer cache again, in case the first request died before its flush.
func TestChangesThatTakeAccessHappenOnce(t *testing.T) {
	forEachFaultyStore(t, func(t *testing.T, h *harness, f *faultyStore) {
		body := map[string]any{"name": "x", "environment": "live", "scopes": []string{"invoices:read"}}
		k := decodeCreated(t, func() []byte { _, raw := h.ok(h.writer, "POST", "/v1/keys", body, 201); return raw }())
		for _, c := range []struct {
			method, path string
			body         any
			action       string
		}{
			{"PATCH", "/v1/keys/" + k.Key.ID, map[string]any{"scopes": []string{"invoices:read", "customers:read"}}, lifecycle.ActionKeyUpdated},
			{"POST", "/v1/keys/" + k.Key.ID + "/report-leak", map[string]string{"url": "https://paste.example/x"}, lifecycle.ActionKeyLeaked},
		} {
			f.set(1, 0) // written, answer lost
			h.ok(h.writer, c.method, c.path, c.body, 200, "Idempotency-Key", c.action)
			h.clk.Advance(3 * time.Minute) // past the takeover delay
			flushes := h.flusher.count()
			hdr, _ := h.ok(h.writer, c.method, c.path, c.body, 200, "Idempotency-Key", c.action)
			if hdr.Get("Idempotent-Replayed") != "true" || h.flusher.count() != flushes+1 {
				t.Fatalf("%s %s again: %v, %d flushes", c.method, c.path, hdr, h.flusher.count()-flushes)
			}
			page, err := h.st.ListAudit(t.Context(), "acme", store.AuditQuery{KeyID: strings.TrimPrefix(k.Key.ID, "key_"), Limit: 100})
			n := 0
			for _, e := range page.Entries {
				if e.Action == c.action {
					n++
				}
			}
			if err != nil || n != 1 {
				t.Fatalf("%d %s entries for one Idempotency-Key (%v)", n, c.action, err)
			}
		}
	})
}

// lostClaim applies its first PutIdempotency and loses the answer, as the
// SDK's retry of a timed-out PutItem meets the record it wrote.
type lostClaim struct {
	store.Store
	once bool
}

func (l *lostClaim) PutIdempotency(ctx context.Context, r store.Idempotency) error {
	if l.once {
		l.once = false
		if err := l.Store.PutIdempotency(ctx, r); err != nil {
			return err
		}
	}
	return l.Store.PutIdempotency(ctx, r)
}

// TestOwnClaimIsNotInUse: a request that meets its own claim goes on.
func TestOwnClaimIsNotInUse(t *testing.T) {
	clk := clock.NewManual(start)
	st := &lostClaim{Store: storetest.Temp(t, embedded.WithClock(clk.Now)), once: true}
	h := newHarness(t, st, clk)
	st.once = true
	_, raw := h.ok(h.writer, "POST", "/v1/keys", map[string]any{"name": "x", "environment": "live", "scopes": []string{"invoices:read"}}, 201, "Idempotency-Key", "P1")
	if decodeCreated(t, raw).Secret == "" {
		t.Fatalf("answer %s", raw)
	}
}

// TestAmbiguousRevocationIsFlushed: a member revocation whose only write
// failed ambiguously (it may have been applied) answers 500, and flushes
// the authorizer cache anyway.
func TestAmbiguousRevocationIsFlushed(t *testing.T) {
	forEachFaultyStore(t, func(t *testing.T, h *harness, f *faultyStore) {
		h.create(h.admin, map[string]any{"name": "bot", "environment": "live", "scopes": []string{"invoices:read"}, "created_by": "mem_bot"})
		flushes := h.flusher.count()
		f.set(1, 0) // written, answer lost
		h.fails(h.admin, "POST", "/v1/members/mem_bot/revoke-keys", nil, 500, "api_error", "")
		if h.flusher.count() != flushes+1 {
			t.Fatal("a revocation that may have been written was not flushed from the cache")
		}
	})
}
