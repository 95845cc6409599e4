package embedded

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"maps"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/keyward/keyward/pkg/store"
)

// castagnoli is CRC-32C, which hardware computes.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// recordVersion is the first byte of every value.
const recordVersion = 1

// checksum covers a value's bucket and key too, so a value moved to
// another key, or a key damaged in its page, fails it.
func checksum(bucket, key, payload []byte) uint32 {
	c := crc32.Update(0, castagnoli, bucket)
	c = crc32.Update(c, castagnoli, []byte{0})
	c = crc32.Update(c, castagnoli, key)
	c = crc32.Update(c, castagnoli, []byte{0})
	return crc32.Update(c, castagnoli, payload)
}

// encode is a value as stored: its version, its checksum, its JSON.
func encode(bucket, key []byte, v any) ([]byte, error) {
	payload, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("embedded: encoding %s: %w", bucket, err)
	}
	out := make([]byte, 5+len(payload))
	out[0] = recordVersion
	binary.BigEndian.PutUint32(out[1:5], checksum(bucket, key, payload))
	copy(out[5:], payload)
	return out, nil
}

// decode checks a stored value and decodes it into v, strictly.
func (s *Store) decode(bucket, key, raw []byte, v any) error {
	if len(raw) < 5 || raw[0] != recordVersion || binary.BigEndian.Uint32(raw[1:5]) != checksum(bucket, key, raw[5:]) {
		return s.damagedFile(fmt.Sprintf("bucket %s, key %q: checksum mismatch", bucket, key))
	}
	dec := json.NewDecoder(bytes.NewReader(raw[5:]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return s.damagedFile(fmt.Sprintf("bucket %s, key %q: %v", bucket, key, err))
	}
	return nil
}

// put encodes v and stores it under key in bucket.
func (s *Store) put(tx *bolt.Tx, bucket, key []byte, v any) error {
	raw, err := encode(bucket, key, v)
	if err != nil {
		return err
	}
	return tx.Bucket(bucket).Put(key, raw)
}

// get decodes the value under key in bucket into v; false if missing.
func (s *Store) get(tx *bolt.Tx, bucket, key []byte, v any) (bool, error) {
	raw := tx.Bucket(bucket).Get(key)
	if raw == nil {
		return false, nil
	}
	return true, s.decode(bucket, key, raw, v)
}

// getKey reads a key by id, checked like every key read. A record read
// again unchanged (the authorizer reads its key on every decision) comes
// from keyCache rather than from its JSON again. With remember, the write
// count read before tx began, it caches the key read, also for
// keyCache.unchanged: GetKey does, listings and scans do not, so that a
// job's pass over every key does not push the keys in use out.
func (s *Store) getKey(tx *bolt.Tx, id string, remember *uint64) (store.Key, bool, error) {
	raw := tx.Bucket(bKeys).Get([]byte(id))
	if raw == nil {
		return store.Key{}, false, nil
	}
	if k, ok := s.keys.lookup(id, raw, remember); ok {
		return k, true, nil
	}
	var k store.Key
	if err := s.decode(bKeys, []byte(id), raw, &k); err != nil {
		return store.Key{}, false, err
	}
	if k.ID != id {
		return store.Key{}, false, s.damagedFile(fmt.Sprintf("key %q holds key %q", id, k.ID))
	}
	if err := store.CheckKey(k); err != nil {
		return store.Key{}, false, fmt.Errorf("embedded: %w", err)
	}
	k = normalKey(k)
	if remember == nil {
		return k, true, nil
	}
	s.keys.remember(id, raw, k, *remember)
	return cloneKey(k), true, nil
}

// maxCachedKeys bounds keyCache: about 2 KB each.
const maxCachedKeys = 4096

// keyCache holds keys as decoded, by the exact bytes they were decoded
// from: a lookup needs the stored record to be byte for byte the one that
// was decoded (and checked), so it is never stale, whatever changed the
// record and in whatever transaction. Without a transaction, unchanged
// needs the store's write count to be what it was before the transaction
// that read the record began.
type keyCache struct {
	mu sync.RWMutex
	m  map[string]cachedKey
}

type cachedKey struct {
	raw    []byte
	key    store.Key
	writes uint64
}

// unchanged returns a copy of the key cached for id if no write has
// ended since it was read.
func (c *keyCache) unchanged(id string, writes uint64) (store.Key, bool) {
	c.mu.RLock()
	e, ok := c.m[id]
	c.mu.RUnlock()
	if !ok || e.writes != writes {
		return store.Key{}, false
	}
	return cloneKey(e.key), true
}

// lookup returns a copy of the key decoded from raw, if cached; with
// writes, it notes that the record was read as it is before that count.
func (c *keyCache) lookup(id string, raw []byte, writes *uint64) (store.Key, bool) {
	c.mu.RLock()
	e, ok := c.m[id]
	c.mu.RUnlock()
	if !ok || !bytes.Equal(e.raw, raw) {
		return store.Key{}, false
	}
	if writes != nil && e.writes != *writes {
		c.remember(id, e.raw, e.key, *writes)
	}
	return cloneKey(e.key), true
}

// remember caches k as decoded from raw, which it copies (bbolt's bytes
// are valid only in their transaction), as read by a transaction begun at
// the write count writes.
func (c *keyCache) remember(id string, raw []byte, k store.Key, writes uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxCachedKeys {
		c.m = make(map[string]cachedKey, maxCachedKeys)
	}
	c.m[id] = cachedKey{raw: bytes.Clone(raw), key: k, writes: writes}
}

// cloneKey copies k's slices and map, as every read returns its own.
func cloneKey(k store.Key) store.Key {
	k.Scopes, k.Hash, k.Notices = slices.Clone(k.Scopes), slices.Clone(k.Hash), slices.Clone(k.Notices)
	k.AllowedIPs, k.AllowedOrigins = slices.Clone(k.AllowedIPs), slices.Clone(k.AllowedOrigins)
	k.Metadata = maps.Clone(k.Metadata)
	return k
}

// seq is a sequence number or pepper version as an ordered key.
func seq(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

// join makes a compound key; ids never hold NUL.
func join(parts ...string) []byte {
	n := len(parts) - 1
	for _, p := range parts {
		n += len(p)
	}
	out := make([]byte, 0, n)
	for i, p := range parts {
		if i > 0 {
			out = append(out, 0)
		}
		out = append(out, p...)
	}
	return out
}

// expired reports whether a TTL attribute has passed; zero never expires.
// Like DynamoDB's TTL filter, an item is gone at its ExpiresAt, not after.
func expired(expiresAt, now time.Time) bool {
	return !expiresAt.IsZero() && !expiresAt.After(now)
}

// The normal functions canonicalise what comes back from JSON as the other
// backend returns it: times in UTC.

func normalKey(k store.Key) store.Key {
	for _, t := range []*time.Time{&k.CreatedAt, &k.UpdatedAt, &k.NotBefore, &k.ExpiresAt, &k.RevokedAt, &k.LastUsedAt} {
		*t = t.UTC()
	}
	return k
}

// tenantRecord is a tenant as stored, with the count of the keys created
// in it (store.Store.KeyCount).
type tenantRecord struct {
	store.Tenant
	KeyCount int64 `json:"key_count"`
}

func normalTenant(t store.Tenant) store.Tenant {
	t.CreatedAt, t.OffboardedAt = t.CreatedAt.UTC(), t.OffboardedAt.UTC()
	return t
}

func normalPepper(p store.Pepper) store.Pepper {
	p.CreatedAt, p.RetiredAt = p.CreatedAt.UTC(), p.RetiredAt.UTC()
	return p
}

func normalAudit(e store.AuditEntry) store.AuditEntry {
	e.Time, e.ExpiresAt = e.Time.UTC(), e.ExpiresAt.UTC()
	return e
}

func normalIdem(r store.Idempotency) store.Idempotency {
	r.CreatedAt, r.ExpiresAt = r.CreatedAt.UTC(), r.ExpiresAt.UTC()
	return r
}
