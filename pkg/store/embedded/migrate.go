package embedded

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/keyward/keyward/pkg/store"
)

// journalEntry is one line of the JSON-lines journal that earlier versions
// of the local stack kept: the new version of every item one commit wrote,
// and the idempotency records and checkpoints it deleted.
type journalEntry struct {
	Keys        []store.Key         `json:"keys,omitempty"`
	Tenants     []tenantRecord      `json:"tenants,omitempty"`
	Peppers     []store.Pepper      `json:"peppers,omitempty"`
	Audit       []store.AuditEntry  `json:"audit,omitempty"`
	Idempotency []store.Idempotency `json:"idempotency,omitempty"`
	Forget      []struct {
		TenantID string `json:"tenant_id"`
		Key      string `json:"key"`
	} `json:"forget,omitempty"`
	Checkpoints map[string]string `json:"checkpoints,omitempty"`
}

// ImportJournal copies the state in an earlier version's journal at path
// into s, which must hold no keys, in one transaction that also records
// the import: calling it again after a success does nothing. The journal
// is replayed as that version did: line by line, a torn last line (an
// unacknowledged write) dropped, any other unreadable line refused,
// changing nothing. Audit entries that published does not report as
// published (that version published after its write, and could die in
// between) go to the outbox, if s keeps one.
func ImportJournal(ctx context.Context, path string, s *Store, published func(auditID string) bool) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("embedded: importing %s: %w", path, err)
	}
	keys := map[string]store.Key{}
	tenants := map[string]tenantRecord{}
	peppers := map[int]store.Pepper{}
	audit := map[string]store.AuditEntry{}
	idem := map[string]store.Idempotency{}
	checkpoints := map[string]string{}
	lines := bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
	for i, line := range lines {
		if len(line) == 0 && len(lines) == 1 {
			break
		}
		var e journalEntry
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil || dec.More() {
			if i > 0 && i == len(lines)-1 && !json.Valid(line) {
				break // torn: never acknowledged
			}
			return fmt.Errorf("embedded: importing %s: line %d is not a journal entry (%v); nothing was imported", path, i+1, err)
		}
		for _, k := range e.Keys {
			if err := store.CheckKey(k); err != nil {
				return fmt.Errorf("embedded: importing %s: line %d: %w; nothing was imported", path, i+1, err)
			}
			keys[k.ID] = k
		}
		for _, t := range e.Tenants {
			tenants[t.ID] = t
		}
		for _, p := range e.Peppers {
			peppers[p.Version] = p
		}
		for _, a := range e.Audit {
			audit[a.TenantID+"\x00"+store.AuditOrder(a)] = a
		}
		for _, r := range e.Idempotency {
			idem[r.TenantID+"\x00"+r.Key] = r
		}
		for _, f := range e.Forget {
			delete(idem, f.TenantID+"\x00"+f.Key)
		}
		for job, cursor := range e.Checkpoints {
			if cursor == "" {
				delete(checkpoints, job)
			} else {
				checkpoints[job] = cursor
			}
		}
	}
	// One transaction: an import interrupted leaves an empty database,
	// which the next start imports into again.
	return s.update(ctx, func(tx *bolt.Tx) error {
		if tx.Bucket(bMeta).Get(metaJournalImported) != nil {
			return nil
		}
		if k, _ := tx.Bucket(bKeys).Cursor().First(); k != nil {
			return fmt.Errorf("embedded: importing %s into %s, which holds keys already", path, s.path)
		}
		if err := s.put(tx, bMeta, metaJournalImported, true); err != nil {
			return err
		}
		for _, k := range keys {
			k = normalKey(k)
			if err := tx.Bucket(bTenantKeys).Put(join(k.TenantID, store.KeyOrder(k)), []byte(k.ID)); err != nil {
				return err
			}
			if err := s.putKey(tx, k, nil); err != nil {
				return err
			}
			if k.CreatedBy != "" {
				if err := s.countMemberKeys(tx, store.Member{TenantID: k.TenantID, ID: k.CreatedBy}, 1); err != nil {
					return err
				}
			}
		}
		for _, t := range tenants {
			t.Tenant = normalTenant(t.Tenant)
			if err := s.put(tx, bTenants, []byte(t.ID), t); err != nil {
				return err
			}
		}
		for _, p := range peppers {
			if err := s.put(tx, bPeppers, seq(uint64(p.Version)), normalPepper(p)); err != nil {
				return err
			}
		}
		now := s.now()
		for _, a := range slices.SortedFunc(maps.Values(audit), func(a, b store.AuditEntry) int {
			return strings.Compare(store.AuditOrder(a), store.AuditOrder(b))
		}) {
			if expired(a.ExpiresAt, now) {
				continue
			}
			a = normalAudit(a)
			if s.outbox && published != nil && !published(a.ID) {
				if err := s.enqueue(tx, a); err != nil {
					return err
				}
			}
			order := store.AuditOrder(a)
			if a.KeyID != "" {
				if err := tx.Bucket(bAuditKeys).Put(join(a.TenantID, a.KeyID, order), []byte{}); err != nil {
					return err
				}
			}
			if err := s.expireLater(tx, a.ExpiresAt, bAudit, join(a.TenantID, order)); err != nil {
				return err
			}
			if err := s.put(tx, bAudit, join(a.TenantID, order), a); err != nil {
				return err
			}
		}
		for _, r := range idem {
			if expired(r.ExpiresAt, now) {
				continue
			}
			key := join(r.TenantID, r.Key)
			if err := s.expireLater(tx, r.ExpiresAt, bIdempotency, key); err != nil {
				return err
			}
			if err := s.put(tx, bIdempotency, key, normalIdem(r)); err != nil {
				return err
			}
		}
		for job, cursor := range checkpoints {
			if err := s.put(tx, bCheckpoints, []byte(job), cursor); err != nil {
				return err
			}
		}
		return nil
	})
}
