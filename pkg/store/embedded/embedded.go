// Package embedded is the store backend of the local stack and of tests.
//
// All state lives in memory. NewMemory keeps it there only; Open also
// journals every committed write to a file (one JSON line per commit,
// fsynced before the write is acknowledged or becomes visible) and replays
// that file on the next Open. Both modes share every code path but the
// journal append, so tests of one hold for the other. The semantics are
// those of the DynamoDB backend: same sentinel errors, ordering, TTL
// filtering and transaction size limit.
package embedded

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/keyward/keyward/pkg/store"
)

var _ store.Store = (*Store)(nil)

// errClosed is returned by every call after Close.
var errClosed = errors.New("embedded: store is closed")

// Store is the embedded backend. It is safe for concurrent use.
//
// Stored values are never modified in place: a write stores a new version,
// so versions may share slices, and reads hand out deep copies.
type Store struct {
	now func() time.Time

	mu         sync.RWMutex
	closed     bool
	keys       map[string]store.Key
	tenantKeys map[string][]string // tenant id -> ids of its keys (keys never move or go away)
	tenants    map[string]store.Tenant
	peppers    map[int]store.Pepper
	audit      map[string]map[string]store.AuditEntry // tenant id -> store.AuditOrder -> entry
	idem       map[idemID]store.Idempotency
	checkpoint map[string]string // job -> cursor; a cleared one is absent

	journal *os.File // nil in memory mode
	failed  error    // the journal write that failed; no write is accepted after it
	onAudit func([]store.AuditEntry)
}

// idemID identifies an idempotency record.
type idemID struct {
	TenantID string `json:"tenant_id"`
	Key      string `json:"key"`
}

// Option configures a Store.
type Option func(*Store)

// WithClock sets the clock that decides which audit entries and idempotency
// records have expired (default time.Now).
func WithClock(now func() time.Time) Option {
	return func(s *Store) { s.now = now }
}

// WithAuditHook calls fn with the audit entries of every committed change,
// after the change is durable and in the order committed: the local
// stack's stand-in for DynamoDB Streams, from which it publishes events.
// fn runs while the store is locked, so it must not call the store.
func WithAuditHook(fn func([]store.AuditEntry)) Option {
	return func(s *Store) { s.onAudit = fn }
}

// NewMemory returns a store that keeps everything in memory only.
func NewMemory(opts ...Option) *Store {
	s := &Store{
		now:        time.Now,
		keys:       make(map[string]store.Key),
		tenantKeys: make(map[string][]string),
		tenants:    make(map[string]store.Tenant),
		peppers:    make(map[int]store.Pepper),
		audit:      make(map[string]map[string]store.AuditEntry),
		idem:       make(map[idemID]store.Idempotency),
		checkpoint: make(map[string]string),
	}
	for _, opt := range opts {
		opt(s)
	}
	return s
}

// Close releases the journal file and its lock. Every later call fails.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	s.closed = true
	if s.journal != nil {
		if err := s.journal.Close(); err != nil {
			return fmt.Errorf("embedded: close journal: %w", err)
		}
	}
	return nil
}

// rlock checks ctx and takes the read lock; the caller releases it.
func (s *Store) rlock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("embedded: %w", err)
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return errClosed
	}
	return nil
}

// lock checks ctx and takes the write lock; the caller releases it.
func (s *Store) lock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("embedded: %w", err)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errClosed
	}
	return nil
}

// GetTenant implements store.Store.
func (s *Store) GetTenant(ctx context.Context, id string) (store.Tenant, error) {
	if err := s.rlock(ctx); err != nil {
		return store.Tenant{}, err
	}
	defer s.mu.RUnlock()
	t, ok := s.tenants[id]
	if !ok {
		return store.Tenant{}, fmt.Errorf("embedded: tenant %s: %w", id, store.ErrNotFound)
	}
	return cloneTenant(t), nil
}

// GetKey implements store.Store.
func (s *Store) GetKey(ctx context.Context, id string) (store.Key, error) {
	if err := s.rlock(ctx); err != nil {
		return store.Key{}, err
	}
	defer s.mu.RUnlock()
	k, ok := s.keys[id]
	if !ok {
		return store.Key{}, fmt.Errorf("embedded: key %s: %w", id, store.ErrNotFound)
	}
	return cloneKey(k), nil
}

// ListKeys implements store.Store.
func (s *Store) ListKeys(ctx context.Context, tenantID string, q store.KeyQuery) (store.KeyPage, error) {
	if err := s.rlock(ctx); err != nil {
		return store.KeyPage{}, err
	}
	defer s.mu.RUnlock()
	var match []store.Key
	for _, id := range s.tenantKeys[tenantID] {
		k := s.keys[id]
		if (q.Environment == "" || k.Environment == q.Environment) &&
			(q.Status == "" || k.Status == q.Status) &&
			(q.CreatedBy == "" || k.CreatedBy == q.CreatedBy) {
			match = append(match, k)
		}
	}
	keys, next, err := keysNewestFirst.page(match, q.Limit, q.Cursor)
	if err != nil {
		return store.KeyPage{}, fmt.Errorf("embedded: list keys of %s: %w", tenantID, err)
	}
	return store.KeyPage{Keys: keys, NextCursor: next}, nil
}

// ListAudit implements store.Store.
func (s *Store) ListAudit(ctx context.Context, tenantID string, q store.AuditQuery) (store.AuditPage, error) {
	if err := s.rlock(ctx); err != nil {
		return store.AuditPage{}, err
	}
	defer s.mu.RUnlock()
	now := s.now()
	var match []store.AuditEntry
	for _, e := range s.audit[tenantID] {
		if !expired(e.ExpiresAt, now) && (q.KeyID == "" || e.KeyID == q.KeyID) && store.InEnvironment(e, q.Environment) {
			match = append(match, e)
		}
	}
	entries, next, err := auditNewestFirst.page(match, q.Limit, q.Cursor)
	if err != nil {
		return store.AuditPage{}, fmt.Errorf("embedded: list audit of %s: %w", tenantID, err)
	}
	return store.AuditPage{Entries: entries, NextCursor: next}, nil
}

// ListExpiring implements store.Store.
func (s *Store) ListExpiring(ctx context.Context, q store.ExpiryQuery) (store.KeyPage, error) {
	if err := s.rlock(ctx); err != nil {
		return store.KeyPage{}, err
	}
	defer s.mu.RUnlock()
	var match []store.Key
	for _, k := range s.keys {
		if (k.Status == store.KeyActive || k.Status == store.KeyExpiring) &&
			!k.ExpiresAt.IsZero() && !k.ExpiresAt.After(q.Before) {
			match = append(match, k)
		}
	}
	keys, next, err := keysSoonestFirst.page(match, q.Limit, q.Cursor)
	if err != nil {
		return store.KeyPage{}, fmt.Errorf("embedded: list expiring keys: %w", err)
	}
	return store.KeyPage{Keys: keys, NextCursor: next}, nil
}

// ScanKeys implements store.Store. Keys come in id order, and a cursor is
// the id of the last key returned; see decodeScanCursor for the ids it can
// carry.
func (s *Store) ScanKeys(ctx context.Context, cursor string, limit int) (store.KeyPage, error) {
	if err := s.rlock(ctx); err != nil {
		return store.KeyPage{}, err
	}
	defer s.mu.RUnlock()
	keys, next, err := keysByID.page(slices.Collect(maps.Values(s.keys)), limit, cursor)
	if err != nil {
		return store.KeyPage{}, fmt.Errorf("embedded: scan keys: %w", err)
	}
	return store.KeyPage{Keys: keys, NextCursor: next}, nil
}

// A listing is one order in which a query pages through items: position
// gives each item a unique sort string, pages run in ascending or
// descending position order, and a cursor encodes the position of a page's
// last item, the next page starting strictly after it.
type listing[T any] struct {
	position  func(T) string
	ascending bool
	clone     func(T) T
	// encode and decode turn positions into cursors and back; decode
	// refuses, with store.ErrInvalidCursor, anything encode cannot produce.
	encode func(string) string
	decode func(string) (string, error)
}

var (
	// keysNewestFirst is store.KeyQuery's order.
	keysNewestFirst = listing[store.Key]{
		position: store.KeyOrder, clone: cloneKey,
		encode: store.EncodeCursor, decode: store.DecodeCursor,
	}
	// auditNewestFirst is store.AuditQuery's order.
	auditNewestFirst = listing[store.AuditEntry]{
		position: store.AuditOrder, clone: cloneAudit,
		encode: store.EncodeCursor, decode: store.DecodeCursor,
	}
	// keysSoonestFirst is store.ExpiryQuery's order.
	keysSoonestFirst = listing[store.Key]{
		position: store.ExpiryOrder, ascending: true, clone: cloneKey,
		encode: store.EncodeCursor, decode: store.DecodeCursor,
	}
	// keysByID is ScanKeys' order.
	keysByID = listing[store.Key]{
		position: func(k store.Key) string { return k.ID }, ascending: true, clone: cloneKey,
		encode: encodeScanCursor, decode: decodeScanCursor,
	}
)

// page returns, in l's order, copies of at most limit items strictly after
// the cursor's position, and the cursor of the next page if any item is
// left after them.
func (l listing[T]) page(items []T, limit int, cursor string) ([]T, string, error) {
	if err := store.CheckLimit(limit); err != nil {
		return nil, "", err
	}
	var from string
	if cursor != "" {
		pos, err := l.decode(cursor)
		if err != nil {
			return nil, "", err
		}
		from = pos
	}
	// after reports whether position a comes after position b in l's order.
	after := func(a, b string) bool {
		if l.ascending {
			return a > b
		}
		return a < b
	}
	type positioned struct {
		pos  string
		item T
	}
	var sorted []positioned
	for _, item := range items {
		if pos := l.position(item); cursor == "" || after(pos, from) {
			sorted = append(sorted, positioned{pos, item})
		}
	}
	slices.SortFunc(sorted, func(a, b positioned) int {
		if l.ascending {
			return strings.Compare(a.pos, b.pos)
		}
		return strings.Compare(b.pos, a.pos)
	})
	var next string
	if len(sorted) > limit {
		sorted = sorted[:limit]
		next = l.encode(sorted[limit-1].pos)
	}
	var out []T
	for _, p := range sorted {
		out = append(out, l.clone(p.item))
	}
	return out, next, nil
}

// maxScanID bounds the key id a scan cursor may carry, as store.DecodeCursor
// bounds the id of a position.
const maxScanID = 64

// encodeScanCursor turns the id of the last key of a scan page into a cursor.
func encodeScanCursor(id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(id))
}

// decodeScanCursor is the inverse of encodeScanCursor. It accepts only a key
// id of the charset of store.DecodeCursor (that of generated key ids), so
// that it refuses what ScanKeys did not issue, another query's cursor
// included.
func decodeScanCursor(cursor string) (string, error) {
	if cursor == "" || len(cursor) > base64.RawURLEncoding.EncodedLen(maxScanID) {
		return "", store.ErrInvalidCursor
	}
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return "", store.ErrInvalidCursor
	}
	for _, c := range raw {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '-') {
			return "", store.ErrInvalidCursor
		}
	}
	return string(raw), nil
}

// Apply implements store.Store. Every precondition is checked before
// anything is written, so a failed Change leaves no trace.
func (s *Store) Apply(ctx context.Context, c store.Change) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if err := c.Validate(); err != nil {
		return fmt.Errorf("embedded: apply: %w", err)
	}
	creates := c.CreatesByTenant()
	// The tenant this change writes replaces the stored one, so its new
	// status is the one that must allow the creates.
	if w := c.Tenant; w != nil && creates[w.Tenant.ID] > 0 && w.Tenant.Status != store.TenantActive {
		return fmt.Errorf("embedded: apply: keys created in tenant %s, written as %s: %w", w.Tenant.ID, w.Tenant.Status, store.ErrConflict)
	}
	// Checked in the order of the DynamoDB transaction's items (keys, the
	// tenant, counters, audit), so that the first failure is reported alike.
	var e entry
	for _, w := range c.Keys {
		k, err := s.keyWrite(w)
		if err != nil {
			return err
		}
		e.Keys = append(e.Keys, k)
	}
	if c.Tenant != nil {
		t, err := s.tenantWrite(*c.Tenant, creates[c.Tenant.Tenant.ID])
		if err != nil {
			return err
		}
		e.Tenants = append(e.Tenants, t)
	}
	for _, id := range slices.Sorted(maps.Keys(creates)) {
		if c.Tenant != nil && c.Tenant.Tenant.ID == id {
			continue // counted by tenantWrite
		}
		t, ok := s.tenants[id]
		if !ok || t.Status != store.TenantActive {
			return fmt.Errorf("embedded: apply: keys created in tenant %s, which is missing or not active: %w", id, store.ErrConflict)
		}
		t.KeyCount += creates[id]
		e.Tenants = append(e.Tenants, t)
	}
	now := s.now()
	for _, a := range c.Audit {
		if old, ok := s.audit[a.TenantID][store.AuditOrder(a)]; ok && !expired(old.ExpiresAt, now) {
			return fmt.Errorf("embedded: apply: audit entry %s/%s: %w", a.TenantID, a.ID, store.ErrAlreadyExists)
		}
		e.Audit = append(e.Audit, cloneAudit(a))
	}
	return s.commit(e)
}

// keyWrite checks w against the stored key and returns the version to store.
func (s *Store) keyWrite(w store.KeyWrite) (store.Key, error) {
	k := cloneKey(w.Key)
	stored, ok := s.keys[k.ID]
	if w.ExpectedRevision == 0 {
		if ok {
			return store.Key{}, fmt.Errorf("embedded: apply: key %s: %w", k.ID, store.ErrAlreadyExists)
		}
		k.Revision = 1
		return k, nil
	}
	if !ok || stored.TenantID != k.TenantID {
		return store.Key{}, fmt.Errorf("embedded: apply: key %s in tenant %s: %w", k.ID, k.TenantID, store.ErrNotFound)
	}
	if stored.Revision != w.ExpectedRevision {
		return store.Key{}, fmt.Errorf("embedded: apply: key %s is at revision %d, not %d: %w", k.ID, stored.Revision, w.ExpectedRevision, store.ErrConflict)
	}
	// Only the mutable fields come from the caller; see store.Key.
	stored.Name = k.Name
	stored.Description = k.Description
	stored.Scopes = k.Scopes
	stored.Status = k.Status
	stored.UpdatedAt = k.UpdatedAt
	stored.NotBefore = k.NotBefore
	stored.ExpiresAt = k.ExpiresAt
	stored.RevokedAt = k.RevokedAt
	stored.AllowedIPs = k.AllowedIPs
	stored.AllowedOrigins = k.AllowedOrigins
	stored.RateLimit = k.RateLimit
	stored.ReplacedBy = k.ReplacedBy
	stored.Metadata = k.Metadata
	stored.Notices = k.Notices
	stored.Revision = w.ExpectedRevision + 1
	return stored, nil
}

// tenantWrite checks w against the stored tenant and returns the version to
// store, counting the keys the same change creates in it.
func (s *Store) tenantWrite(w store.TenantWrite, created int64) (store.Tenant, error) {
	t := cloneTenant(w.Tenant)
	stored, ok := s.tenants[t.ID]
	switch {
	case w.ExpectedRevision == 0 && ok:
		return store.Tenant{}, fmt.Errorf("embedded: apply: tenant %s: %w", t.ID, store.ErrAlreadyExists)
	case w.ExpectedRevision != 0 && !ok:
		return store.Tenant{}, fmt.Errorf("embedded: apply: tenant %s: %w", t.ID, store.ErrNotFound)
	case stored.Revision != w.ExpectedRevision:
		return store.Tenant{}, fmt.Errorf("embedded: apply: tenant %s is at revision %d, not %d: %w", t.ID, stored.Revision, w.ExpectedRevision, store.ErrConflict)
	}
	t.KeyCount = stored.KeyCount + created // stored is zero on create
	t.Revision = w.ExpectedRevision + 1
	return t, nil
}

// TouchKey implements store.Store.
func (s *Store) TouchKey(ctx context.Context, id string, at time.Time, minInterval time.Duration) (bool, error) {
	if err := s.lock(ctx); err != nil {
		return false, err
	}
	defer s.mu.Unlock()
	k, ok := s.keys[id]
	if !ok {
		return false, fmt.Errorf("embedded: touch key %s: %w", id, store.ErrNotFound)
	}
	if !k.LastUsedAt.IsZero() && !k.LastUsedAt.Before(at.Add(-minInterval)) {
		return false, nil
	}
	k.LastUsedAt = at.UTC()
	if err := s.commit(entry{Keys: []store.Key{k}}); err != nil {
		return false, err
	}
	return true, nil
}

// RehashKey implements store.Store.
func (s *Store) RehashKey(ctx context.Context, id string, fromVersion int, hash []byte, toVersion int) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	k, ok := s.keys[id]
	if !ok {
		return fmt.Errorf("embedded: rehash key %s: %w", id, store.ErrNotFound)
	}
	if k.PepperVersion != fromVersion {
		return fmt.Errorf("embedded: rehash key %s: pepper version is %d, not %d: %w", id, k.PepperVersion, fromVersion, store.ErrConflict)
	}
	k.Hash = cloneSlice(hash)
	k.PepperVersion = toVersion
	return s.commit(entry{Keys: []store.Key{k}})
}

// ListPeppers implements store.Store.
func (s *Store) ListPeppers(ctx context.Context) ([]store.Pepper, error) {
	if err := s.rlock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	var out []store.Pepper
	for _, v := range slices.Sorted(maps.Keys(s.peppers)) {
		out = append(out, clonePepper(s.peppers[v]))
	}
	return out, nil
}

// CreatePepper implements store.Store.
func (s *Store) CreatePepper(ctx context.Context, p store.Pepper) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if _, ok := s.peppers[p.Version]; ok {
		return fmt.Errorf("embedded: create pepper %d: %w", p.Version, store.ErrAlreadyExists)
	}
	return s.commit(entry{Peppers: []store.Pepper{clonePepper(p)}})
}

// RetirePepper implements store.Store. A zero at is refused: it would
// leave the version looking unretired.
func (s *Store) RetirePepper(ctx context.Context, version int, at time.Time) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if at.IsZero() {
		return fmt.Errorf("embedded: retire pepper %d: zero retirement time", version)
	}
	p, ok := s.peppers[version]
	if !ok {
		return fmt.Errorf("embedded: retire pepper %d: %w", version, store.ErrNotFound)
	}
	if !p.RetiredAt.IsZero() {
		return fmt.Errorf("embedded: retire pepper %d: retired already: %w", version, store.ErrConflict)
	}
	p.RetiredAt = at.UTC()
	return s.commit(entry{Peppers: []store.Pepper{p}})
}

// GetCheckpoint implements store.Store.
func (s *Store) GetCheckpoint(ctx context.Context, job string) (string, error) {
	if err := s.rlock(ctx); err != nil {
		return "", err
	}
	defer s.mu.RUnlock()
	return s.checkpoint[job], nil
}

// PutCheckpoint implements store.Store.
func (s *Store) PutCheckpoint(ctx context.Context, job, cursor string) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if s.checkpoint[job] == cursor {
		return nil // nothing changes (an absent checkpoint reads as "")
	}
	return s.commit(entry{Checkpoints: map[string]string{job: cursor}})
}

// PutIdempotency implements store.Store.
func (s *Store) PutIdempotency(ctx context.Context, r store.Idempotency) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	id := idemID{r.TenantID, r.Key}
	if old, ok := s.idem[id]; ok && !expired(old.ExpiresAt, s.now()) {
		return fmt.Errorf("embedded: put idempotency %s/%s: %w", r.TenantID, r.Key, store.ErrAlreadyExists)
	}
	return s.commit(entry{Idempotency: []store.Idempotency{cloneIdem(r)}})
}

// GetIdempotency implements store.Store.
func (s *Store) GetIdempotency(ctx context.Context, tenantID, key string) (store.Idempotency, error) {
	if err := s.rlock(ctx); err != nil {
		return store.Idempotency{}, err
	}
	defer s.mu.RUnlock()
	r, ok := s.idem[idemID{tenantID, key}]
	if !ok || expired(r.ExpiresAt, s.now()) {
		return store.Idempotency{}, fmt.Errorf("embedded: idempotency %s/%s: %w", tenantID, key, store.ErrNotFound)
	}
	return cloneIdem(r), nil
}

// CompleteIdempotency implements store.Store.
func (s *Store) CompleteIdempotency(ctx context.Context, r store.Idempotency) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	stored, ok := s.idem[idemID{r.TenantID, r.Key}]
	if !ok || expired(stored.ExpiresAt, s.now()) {
		return fmt.Errorf("embedded: complete idempotency %s/%s: %w", r.TenantID, r.Key, store.ErrNotFound)
	}
	if stored.Done || stored.RequestHash != r.RequestHash {
		return fmt.Errorf("embedded: complete idempotency %s/%s: done already or another request: %w", r.TenantID, r.Key, store.ErrConflict)
	}
	stored.Done = true
	stored.StatusCode = r.StatusCode
	stored.Body = cloneSlice(r.Body)
	return s.commit(entry{Idempotency: []store.Idempotency{stored}})
}

// DeleteIdempotency implements store.Store.
func (s *Store) DeleteIdempotency(ctx context.Context, r store.Idempotency) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	id := idemID{r.TenantID, r.Key}
	cur, ok := s.idem[id]
	if !ok {
		return nil
	}
	if !cur.CreatedAt.Equal(r.CreatedAt) || cur.RequestHash != r.RequestHash {
		return fmt.Errorf("embedded: delete idempotency record: another request holds the key: %w", store.ErrConflict)
	}
	return s.commit(entry{Forget: []idemID{id}})
}

// expired reports whether a TTL attribute has passed; zero never expires.
// Like DynamoDB's TTL filter, an item is gone at its ExpiresAt, not after.
func expired(expiresAt, now time.Time) bool {
	return !expiresAt.IsZero() && !expiresAt.After(now)
}

// The clone functions deep-copy values crossing the API in either
// direction, so callers never share memory with the store. They also
// canonicalise what the journal could not reproduce exactly: times become
// UTC without a monotonic reading, and empty slices and maps become nil.

func cloneKey(k store.Key) store.Key {
	k.Scopes = cloneSlice(k.Scopes)
	k.Hash = cloneSlice(k.Hash)
	k.AllowedIPs = cloneSlice(k.AllowedIPs)
	k.AllowedOrigins = cloneSlice(k.AllowedOrigins)
	k.Metadata = cloneMap(k.Metadata)
	k.Notices = cloneSlice(k.Notices)
	k.CreatedAt = k.CreatedAt.UTC()
	k.UpdatedAt = k.UpdatedAt.UTC()
	k.NotBefore = k.NotBefore.UTC()
	k.ExpiresAt = k.ExpiresAt.UTC()
	k.RevokedAt = k.RevokedAt.UTC()
	k.LastUsedAt = k.LastUsedAt.UTC()
	return k
}

func cloneTenant(t store.Tenant) store.Tenant {
	t.CreatedAt = t.CreatedAt.UTC()
	t.OffboardedAt = t.OffboardedAt.UTC()
	return t
}

func clonePepper(p store.Pepper) store.Pepper {
	p.Ciphertext = cloneSlice(p.Ciphertext)
	p.CreatedAt = p.CreatedAt.UTC()
	p.RetiredAt = p.RetiredAt.UTC()
	return p
}

func cloneAudit(e store.AuditEntry) store.AuditEntry {
	e.Details = cloneMap(e.Details)
	e.Time = e.Time.UTC()
	e.ExpiresAt = e.ExpiresAt.UTC()
	return e
}

func cloneIdem(r store.Idempotency) store.Idempotency {
	r.Body = cloneSlice(r.Body)
	r.CreatedAt = r.CreatedAt.UTC()
	r.ExpiresAt = r.ExpiresAt.UTC()
	return r
}

func cloneSlice[S ~[]E, E any](s S) S {
	if len(s) == 0 {
		return nil
	}
	return slices.Clone(s)
}

func cloneMap[M ~map[K]V, K comparable, V any](m M) M {
	if len(m) == 0 {
		return nil
	}
	return maps.Clone(m)
}
