package embedded

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/testclock"
	"github.com/keyward/keyward/pkg/store"
	"github.com/keyward/keyward/pkg/store/conformance"
)

func TestConformanceMemory(t *testing.T) {
	conformance.Run(t, func(t *testing.T, now func() time.Time) store.Store {
		s := NewMemory(WithClock(now))
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestConformanceFile(t *testing.T) {
	conformance.Run(t, func(t *testing.T, now func() time.Time) store.Store {
		return openFile(t, filepath.Join(t.TempDir(), "keyward.journal"), now)
	})
}

// openFile opens a file store that the test closes at its end if the test
// has not closed it already.
func openFile(t *testing.T, path string, now func() time.Time) *Store {
	t.Helper()
	s, err := Open(path, WithClock(now))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// eachMode runs fn against a memory store and a file store.
func eachMode(t *testing.T, fn func(t *testing.T, s *Store, clock *testclock.Clock)) {
	t.Run("memory", func(t *testing.T) {
		clock := newClock()
		fn(t, NewMemory(WithClock(clock.Now)), clock)
	})
	t.Run("file", func(t *testing.T) {
		clock := newClock()
		fn(t, openFile(t, filepath.Join(t.TempDir(), "keyward.journal"), clock.Now), clock)
	})
}

func newClock() *testclock.Clock {
	return testclock.New(time.Date(2026, 3, 1, 12, 0, 0, 987654321, time.UTC))
}

func TestClosedStoreRefusesCalls(t *testing.T) {
	eachMode(t, func(t *testing.T, s *Store, _ *testclock.Clock) {
		ctx := t.Context()
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if _, err := s.GetKey(ctx, "k1"); !errors.Is(err, errClosed) {
			t.Fatalf("GetKey after Close: %v", err)
		}
		if err := s.CreatePepper(ctx, store.Pepper{Version: 1}); !errors.Is(err, errClosed) {
			t.Fatalf("CreatePepper after Close: %v", err)
		}
		if err := s.Close(); !errors.Is(err, errClosed) {
			t.Fatalf("second Close: %v", err)
		}
	})
}

func TestCancelledContext(t *testing.T) {
	eachMode(t, func(t *testing.T, s *Store, _ *testclock.Clock) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := s.GetTenant(ctx, "acme"); !errors.Is(err, context.Canceled) {
			t.Fatalf("GetTenant: %v", err)
		}
		tn := store.Tenant{ID: "acme", Status: store.TenantActive}
		if err := s.Apply(ctx, store.Change{Tenant: &store.TenantWrite{Tenant: tn}}); !errors.Is(err, context.Canceled) {
			t.Fatalf("Apply: %v", err)
		}
		if _, err := s.GetTenant(t.Context(), "acme"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("cancelled Apply wrote: %v", err)
		}
	})
}

// Stored values must not alias what callers passed in.
func TestWritesAreCopied(t *testing.T) {
	eachMode(t, func(t *testing.T, s *Store, clock *testclock.Clock) {
		ctx := t.Context()
		tn := store.Tenant{ID: "acme", Status: store.TenantActive, CreatedAt: clock.Now()}
		k := store.Key{ID: "k1", TenantID: "acme", Scopes: []string{"a"}, Hash: []byte{1}, Metadata: map[string]string{"m": "1"}, Notices: []string{"n"}, Status: store.KeyActive}
		a := store.AuditEntry{TenantID: "acme", ID: "a1", Details: map[string]string{"d": "1"}}
		if err := s.Apply(ctx, store.Change{Tenant: &store.TenantWrite{Tenant: tn}, Keys: []store.KeyWrite{{Key: k}}, Audit: []store.AuditEntry{a}}); err != nil {
			t.Fatalf("Apply: %v", err)
		}
		hash := []byte{2}
		if err := s.RehashKey(ctx, "k1", 0, hash, 1); err != nil {
			t.Fatalf("RehashKey: %v", err)
		}
		k.Scopes[0], k.Metadata["m"], k.Notices[0], a.Details["d"], hash[0] = "x", "x", "x", "x", 9
		got, _ := s.GetKey(ctx, "k1")
		page, _ := s.ListAudit(ctx, "acme", store.AuditQuery{Limit: 1})
		if got.Scopes[0] != "a" || got.Metadata["m"] != "1" || got.Notices[0] != "n" || got.Hash[0] != 2 || page.Entries[0].Details["d"] != "1" {
			t.Fatalf("caller's mutation reached the store: %+v %+v", got, page.Entries)
		}
	})
}

// Scan cursors carry a key id and nothing else, not even another query's
// cursor.
func TestScanCursor(t *testing.T) {
	for _, id := range []string{"k", "kAz09_-", strings.Repeat("z", maxScanID)} {
		if got, err := decodeScanCursor(encodeScanCursor(id)); err != nil || got != id {
			t.Fatalf("round trip of %q: %q %v", id, got, err)
		}
	}
	for _, bad := range []string{
		"",
		"not a cursor!",
		"%%",
		encodeScanCursor("k#1"),
		encodeScanCursor("k/../1"),
		encodeScanCursor(strings.Repeat("z", maxScanID+1)),
		store.EncodeCursor(store.KeyOrder(store.Key{ID: "k1"})),
	} {
		if id, err := decodeScanCursor(bad); !errors.Is(err, store.ErrInvalidCursor) {
			t.Fatalf("cursor %q accepted as %q (%v)", bad, id, err)
		}
	}
}

func TestRetirePepperRefusesZeroTime(t *testing.T) {
	eachMode(t, func(t *testing.T, s *Store, clock *testclock.Clock) {
		ctx := t.Context()
		if err := s.CreatePepper(ctx, store.Pepper{Version: 1, CreatedAt: clock.Now()}); err != nil {
			t.Fatal(err)
		}
		if err := s.RetirePepper(ctx, 1, time.Time{}); err == nil {
			t.Fatal("retired at the zero time")
		}
		if err := s.RetirePepper(ctx, 1, clock.Now()); err != nil {
			t.Fatalf("RetirePepper after the refusal: %v", err)
		}
	})
}

func TestAuditHookSeesCommittedEntriesOnly(t *testing.T) {
	var seen []string
	s := NewMemory(WithAuditHook(func(entries []store.AuditEntry) {
		for _, a := range entries {
			seen = append(seen, a.ID)
		}
	}))
	ctx := t.Context()
	a := store.AuditEntry{TenantID: "acme", ID: "a1", Time: time.Unix(1, 0), Action: "key.created"}
	if err := s.Apply(ctx, store.Change{Audit: []store.AuditEntry{a}}); err != nil {
		t.Fatal(err)
	}
	// A refused change reaches no one.
	if err := s.Apply(ctx, store.Change{Audit: []store.AuditEntry{a}}); err == nil {
		t.Fatal("duplicate entry accepted")
	}
	if len(seen) != 1 || seen[0] != "a1" {
		t.Fatalf("hook saw %v", seen)
	}
}
