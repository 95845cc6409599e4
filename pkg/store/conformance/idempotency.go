package conformance

import (
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/store"
)

func testIdempotency(t *testing.T, e *env) {
	r := store.Idempotency{TenantID: "acme", Key: "retry-1", RequestHash: "h1", CreatedAt: e.clk.Now(), ExpiresAt: e.clk.Now().Add(24 * time.Hour)}
	if err := e.s.PutIdempotency(e.ctx, r); err != nil {
		t.Fatalf("PutIdempotency: %v", err)
	}
	wantErr(t, e.s.PutIdempotency(e.ctx, r), store.ErrAlreadyExists)
	got, err := e.s.GetIdempotency(e.ctx, "acme", "retry-1")
	if err != nil || got.Done || got.RequestHash != "h1" {
		t.Fatalf("GetIdempotency: %v %+v", err, got)
	}
	_, err = e.s.GetIdempotency(e.ctx, "other", "retry-1")
	wantErr(t, err, store.ErrNotFound)

	bad := r
	bad.RequestHash = "h2"
	bad.StatusCode, bad.Body = 201, []byte(`{}`)
	wantErr(t, e.s.CompleteIdempotency(e.ctx, bad), store.ErrConflict)
	// Another claim of the same request (one that took over an abandoned
	// record) is not this one.
	later := r
	later.CreatedAt = r.CreatedAt.Add(time.Minute)
	later.StatusCode, later.Body = 201, []byte(`{}`)
	wantErr(t, e.s.CompleteIdempotency(e.ctx, later), store.ErrConflict)

	done := r
	done.StatusCode, done.Body = 201, []byte(`{"key":{"id":"key_x"}}`)
	if err := e.s.CompleteIdempotency(e.ctx, done); err != nil {
		t.Fatalf("CompleteIdempotency: %v", err)
	}
	wantErr(t, e.s.CompleteIdempotency(e.ctx, done), store.ErrConflict)
	got, err = e.s.GetIdempotency(e.ctx, "acme", "retry-1")
	if err != nil || !got.Done || got.StatusCode != 201 || string(got.Body) != string(done.Body) {
		t.Fatalf("completed record: %v %+v", err, got)
	}
	wantErr(t, e.s.CompleteIdempotency(e.ctx, store.Idempotency{TenantID: "acme", Key: "never", RequestHash: "h"}), store.ErrNotFound)

	// A finished request's record is never removed: its answer is
	// replayed, its effect never repeated.
	wantErr(t, e.s.DeleteIdempotency(e.ctx, r), store.ErrConflict)
	if got, err := e.s.GetIdempotency(e.ctx, "acme", "retry-1"); err != nil || !got.Done {
		t.Fatalf("deleting a done record removed it: %v %+v", err, got)
	}

	// Only the record the caller holds is removed: a newer claim of the
	// same key (another CreatedAt or request) stays.
	r = store.Idempotency{TenantID: "acme", Key: "retry-2", RequestHash: "h1", CreatedAt: e.clk.Now(), ExpiresAt: e.clk.Now().Add(24 * time.Hour)}
	if err := e.s.PutIdempotency(e.ctx, r); err != nil {
		t.Fatalf("PutIdempotency: %v", err)
	}
	other := r
	other.CreatedAt = r.CreatedAt.Add(time.Second)
	wantErr(t, e.s.DeleteIdempotency(e.ctx, other), store.ErrConflict)
	other = r
	other.RequestHash = "h9"
	wantErr(t, e.s.DeleteIdempotency(e.ctx, other), store.ErrConflict)
	if _, err := e.s.GetIdempotency(e.ctx, "acme", "retry-2"); err != nil {
		t.Fatalf("a refused delete removed the record: %v", err)
	}
	if err := e.s.DeleteIdempotency(e.ctx, r); err != nil {
		t.Fatalf("DeleteIdempotency: %v", err)
	}
	if err := e.s.DeleteIdempotency(e.ctx, r); err != nil {
		t.Fatalf("DeleteIdempotency of a missing record: %v", err)
	}
	_, err = e.s.GetIdempotency(e.ctx, "acme", "retry-2")
	wantErr(t, err, store.ErrNotFound)
	if err := e.s.PutIdempotency(e.ctx, r); err != nil {
		t.Fatalf("PutIdempotency after delete: %v", err)
	}
}

// testIdempotentChange: a change completes the record of the request
// making it in its own transaction, or fails whole: a retry finds the
// answer, or no effect.
func testIdempotentChange(t *testing.T, e *env) {
	e.tenant(t, "acme")
	claim := store.Idempotency{TenantID: "acme", Key: "create-1", RequestHash: "h1", CreatedAt: e.clk.Now(), ExpiresAt: e.clk.Now().Add(24 * time.Hour)}
	if err := e.s.PutIdempotency(e.ctx, claim); err != nil {
		t.Fatal(err)
	}
	answer := func(r store.Idempotency) *store.Idempotency {
		r.Done, r.StatusCode, r.Body = true, 201, []byte(`{"key":{"id":"key_k00000000001"}}`)
		return &r
	}
	created := func(id string) bool {
		_, err := e.s.GetKey(e.ctx, id)
		return err == nil
	}
	// Not the claim held: another CreatedAt (taken over), another request,
	// no record (released or expired), another key.
	for name, r := range map[string]store.Idempotency{
		"taken over":    func() store.Idempotency { x := claim; x.CreatedAt = x.CreatedAt.Add(time.Second); return x }(),
		"other request": func() store.Idempotency { x := claim; x.RequestHash = "h2"; return x }(),
		"no record":     func() store.Idempotency { x := claim; x.Key = "never-claimed"; return x }(),
	} {
		k := e.key("acme", "k00000000009")
		err := e.s.Apply(e.ctx, store.Change{Keys: []store.KeyWrite{{Key: k}}, Audit: []store.AuditEntry{e.audit("acme", "a-"+name[:2], k.ID)}, Idempotency: answer(r)})
		wantErr(t, err, store.ErrConflict)
		if created(k.ID) {
			t.Fatalf("%s: the change was written without its record", name)
		}
	}
	k := e.key("acme", "k00000000001")
	e.apply(t, store.Change{Keys: []store.KeyWrite{{Key: k}}, Audit: []store.AuditEntry{e.audit("acme", "a1", k.ID)}, Idempotency: answer(claim)})
	got, err := e.s.GetIdempotency(e.ctx, "acme", "create-1")
	if err != nil || !got.Done || got.StatusCode != 201 || string(got.Body) != `{"key":{"id":"key_k00000000001"}}` || !created(k.ID) {
		t.Fatalf("completed by the change: %v %+v, key written %v", err, got, created(k.ID))
	}
	// A done record completes no second change, and is not released.
	again := e.key("acme", "k00000000002")
	wantErr(t, e.s.Apply(e.ctx, store.Change{Keys: []store.KeyWrite{{Key: again}}, Idempotency: answer(claim)}), store.ErrConflict)
	wantErr(t, e.s.DeleteIdempotency(e.ctx, claim), store.ErrConflict)
	if created(again.ID) {
		t.Fatal("a done record completed a second change")
	}
	// An expired claim completes nothing.
	late := store.Idempotency{TenantID: "acme", Key: "late", RequestHash: "h", CreatedAt: e.clk.Now(), ExpiresAt: e.clk.Now().Add(time.Minute)}
	if err := e.s.PutIdempotency(e.ctx, late); err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(time.Minute)
	wantErr(t, e.s.Apply(e.ctx, store.Change{Keys: []store.KeyWrite{{Key: again}}, Idempotency: answer(late)}), store.ErrConflict)
	if created(again.ID) {
		t.Fatal("an expired claim completed a change")
	}
}

func testIdempotencyTTL(t *testing.T, e *env) {
	r := store.Idempotency{TenantID: "acme", Key: "k", RequestHash: "h1", CreatedAt: e.clk.Now(), ExpiresAt: e.clk.Now().Add(time.Hour)}
	if err := e.s.PutIdempotency(e.ctx, r); err != nil {
		t.Fatalf("PutIdempotency: %v", err)
	}
	e.clk.Advance(time.Hour)
	_, err := e.s.GetIdempotency(e.ctx, "acme", "k")
	wantErr(t, err, store.ErrNotFound)
	wantErr(t, e.s.CompleteIdempotency(e.ctx, r), store.ErrNotFound)
	// An expired record no longer blocks its key.
	r.RequestHash, r.CreatedAt, r.ExpiresAt = "h2", e.clk.Now(), e.clk.Now().Add(time.Hour)
	if err := e.s.PutIdempotency(e.ctx, r); err != nil {
		t.Fatalf("PutIdempotency over an expired record: %v", err)
	}
	got, err := e.s.GetIdempotency(e.ctx, "acme", "k")
	if err != nil || got.RequestHash != "h2" {
		t.Fatalf("replaced record: %v %+v", err, got)
	}

	// A zero ExpiresAt never expires.
	forever := store.Idempotency{TenantID: "acme", Key: "forever", RequestHash: "h", CreatedAt: e.clk.Now()}
	if err := e.s.PutIdempotency(e.ctx, forever); err != nil {
		t.Fatalf("PutIdempotency without expiry: %v", err)
	}
	e.clk.Advance(10 * 365 * 24 * time.Hour)
	if got, err := e.s.GetIdempotency(e.ctx, "acme", "forever"); err != nil || !got.ExpiresAt.IsZero() {
		t.Fatalf("a record without expiry read back: %v %+v", err, got)
	}
	wantErr(t, e.s.PutIdempotency(e.ctx, forever), store.ErrAlreadyExists)
	forever.Done, forever.StatusCode = true, 200
	if err := e.s.CompleteIdempotency(e.ctx, forever); err != nil {
		t.Fatalf("CompleteIdempotency without expiry: %v", err)
	}
}
