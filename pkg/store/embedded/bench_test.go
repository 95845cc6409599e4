package embedded

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/keyward/keyward/pkg/store"
)

// benchKey is the n-th key of a benchmark, as the service writes one.
func benchKey(n int) store.Key {
	now := newClock().Now()
	return store.Key{ID: fmt.Sprintf("k%011d", n), TenantID: "acme", Name: "bench", Prefix: "keyward", Environment: "live",
		Last4: "abcd", Scopes: []string{"invoices:read"}, Status: store.KeyActive, Hash: make([]byte, 32), PepperVersion: 1,
		CreatedAt: now, UpdatedAt: now, RateLimit: store.RateLimit{RequestsPerMinute: 600}}
}

// benchStore is a store holding tenant acme.
func benchStore(b *testing.B, s *Store) *Store {
	tenant := store.Tenant{ID: "acme", Name: "Acme", Status: store.TenantActive, CreatedAt: newClock().Now()}
	if err := s.Apply(b.Context(), store.Change{Tenant: &store.TenantWrite{Tenant: tenant}}); err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkCreateKeyDurable is one key created as the local stack creates
// one: the key, its audit entry and its outbox entry in one transaction,
// synced to disk before Apply returns.
func BenchmarkCreateKeyDurable(b *testing.B) {
	s := benchStore(b, openFile(b, filepath.Join(b.TempDir(), "keyward.db"), newClock().Now, WithOutbox()))
	ctx := b.Context()
	b.ResetTimer()
	for i := range b.N {
		k := benchKey(i)
		c := store.Change{Keys: []store.KeyWrite{{Key: k}},
			Audit: []store.AuditEntry{{TenantID: "acme", ID: k.ID, Time: k.CreatedAt, Actor: "bench", Action: "key.created", KeyID: k.ID}}}
		if err := s.Apply(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
}

// fill adds n keys to tenant acme.
func fill(b *testing.B, s *Store, n int) {
	const perChange = 50 // within a transaction's 100 items, the tenant counted
	for start := 0; start < n; start += perChange {
		var c store.Change
		for i := start; i < min(start+perChange, n); i++ {
			c.Keys = append(c.Keys, store.KeyWrite{Key: benchKey(i)})
		}
		if err := s.Apply(b.Context(), c); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGetKey is the local authorizer's read: one key by id, its
// checksum verified, among 100,000 (in a file written without fsync,
// which reads do not need).
func BenchmarkGetKey(b *testing.B) {
	s := benchStore(b, openTemp(b, newClock().Now))
	ctx := b.Context()
	const keys = 100_000
	fill(b, s, keys)
	b.ResetTimer()
	for i := range b.N {
		if _, err := s.GetKey(ctx, benchKey(i%keys).ID); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpen is a start of the local stack's store holding 100,000
// keys: bbolt's open and the consistency check that walks every page.
func BenchmarkOpen(b *testing.B) {
	path := filepath.Join(b.TempDir(), "keyward.db")
	s := benchStore(b, openFile(b, path, newClock().Now))
	fill(b, s, 100_000)
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		s, err := Open(path)
		if err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}
