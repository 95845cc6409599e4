package store

import (
	"encoding/base64"
	"fmt"
	"strings"
	"time"
)

// sortTimeLayout is fixed-width UTC with nanoseconds, so that the string
// order of two timestamps is their time order: backends sort and compare
// these strings instead of parsing times.
const sortTimeLayout = "2006-01-02T15:04:05.000000000Z"

// SortTime formats t for lexicographic ordering.
func SortTime(t time.Time) string { return t.UTC().Format(sortTimeLayout) }

// KeyOrder is a key's position in a tenant's listing.
func KeyOrder(k Key) string { return SortTime(k.CreatedAt) + "#" + k.ID }

// ExpiryOrder is a key's position in ExpiryQuery's order, soonest first.
func ExpiryOrder(k Key) string { return SortTime(k.ExpiresAt) + "#" + k.ID }

// AuditOrder is an audit entry's position in a tenant's audit log.
func AuditOrder(e AuditEntry) string { return SortTime(e.Time) + "#" + e.ID }

// EncodeCursor turns the position of the last item of a page into an opaque
// cursor. Pages run newest first, so the next page holds the items strictly
// before that position.
func EncodeCursor(position string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(position))
}

// DecodeCursor is the inverse of EncodeCursor. It accepts only what
// EncodeCursor can produce from KeyOrder or AuditOrder, so a cursor cannot
// smuggle anything into a backend query.
func DecodeCursor(cursor string) (string, error) {
	if len(cursor) > 128 {
		return "", ErrInvalidCursor
	}
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return "", ErrInvalidCursor
	}
	position := string(raw)
	ts, id, ok := strings.Cut(position, "#")
	if !ok || len(ts) != len(sortTimeLayout) || id == "" || len(id) > 64 {
		return "", ErrInvalidCursor
	}
	if _, err := time.Parse(sortTimeLayout, ts); err != nil {
		return "", ErrInvalidCursor
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '-') {
			return "", ErrInvalidCursor
		}
	}
	return position, nil
}

// CheckLimit rejects a page size outside 1..MaxPageSize.
func CheckLimit(limit int) error {
	if limit < 1 || limit > MaxPageSize {
		return fmt.Errorf("store: page limit %d outside 1..%d", limit, MaxPageSize)
	}
	return nil
}

// CheckTenantID refuses an empty tenant id or one containing '#', which
// backends use to compose item keys from a tenant id and another part.
func CheckTenantID(id string) error {
	if id == "" || strings.Contains(id, "#") {
		return fmt.Errorf("store: tenant id %q is empty or contains '#'", id)
	}
	return nil
}

// CreatesByTenant counts the keys a Change creates in each tenant: each such
// tenant's KeyCount grows by that much, and each must be active.
func (c Change) CreatesByTenant() map[string]int64 {
	var n map[string]int64
	for _, w := range c.Keys {
		if w.ExpectedRevision == 0 {
			if n == nil {
				n = make(map[string]int64)
			}
			n[w.Key.TenantID]++
		}
	}
	return n
}

// Member is one member of one tenant.
type Member struct{ TenantID, ID string }

// CreatesByMember counts the keys c creates per member who created them.
func (c Change) CreatesByMember() map[Member]int64 {
	var n map[Member]int64
	for _, w := range c.Keys {
		if w.ExpectedRevision == 0 && w.Key.CreatedBy != "" {
			if n == nil {
				n = make(map[Member]int64)
			}
			n[Member{w.Key.TenantID, w.Key.CreatedBy}]++
		}
	}
	return n
}

// Validate checks what both backends must refuse before writing anything:
// an empty or oversized change, missing identifiers, and the same key or
// audit entry written twice (which a DynamoDB transaction refuses too).
func (c Change) Validate() error {
	items := len(c.Keys) + len(c.Audit)
	if r := c.Idempotency; r != nil {
		items++
		if err := CheckTenantID(r.TenantID); err != nil {
			return err
		}
		if r.Key == "" || !r.Done {
			return fmt.Errorf("store: an idempotency record completed by a change needs a key and Done")
		}
	}
	if c.Tenant != nil {
		items += TenantWriteItems
		if err := CheckTenantID(c.Tenant.Tenant.ID); err != nil {
			return err
		}
	}
	for tenant := range c.CreatesByTenant() {
		if c.Tenant == nil || c.Tenant.Tenant.ID != tenant {
			items++ // the tenant's counter update
		}
	}
	items += len(c.CreatesByMember()) // each member's counter update
	if items == 0 {
		return fmt.Errorf("store: empty change")
	}
	if items > MaxChangeItems {
		return fmt.Errorf("%w: %d items, at most %d", ErrChangeTooLarge, items, MaxChangeItems)
	}
	seen := make(map[string]bool, len(c.Keys))
	for _, w := range c.Keys {
		if w.Key.ID == "" {
			return fmt.Errorf("store: key write without id")
		}
		if err := CheckKey(w.Key); err != nil {
			return err
		}
		if err := CheckTenantID(w.Key.TenantID); err != nil {
			return err
		}
		if strings.Contains(w.Key.CreatedBy, "#") {
			return fmt.Errorf("store: created_by %q contains '#'", w.Key.CreatedBy)
		}
		if seen[w.Key.ID] {
			return fmt.Errorf("store: key %s written twice in one change", w.Key.ID)
		}
		seen[w.Key.ID] = true
	}
	entries := make(map[string]bool, len(c.Audit))
	for _, e := range c.Audit {
		if e.ID == "" {
			return fmt.Errorf("store: audit entry without id")
		}
		if err := CheckTenantID(e.TenantID); err != nil {
			return err
		}
		at := e.TenantID + "/" + AuditOrder(e)
		if entries[at] {
			return fmt.Errorf("store: audit entry %s written twice in one change", e.ID)
		}
		entries[at] = true
	}
	return nil
}

// InEnvironment reports whether an audit entry belongs in a listing of
// environment env (AuditQuery.Environment): entries about a key of env,
// and entries about no key. Entries written before audit entries carried
// their environment are placed by their key's display form.
func InEnvironment(e AuditEntry, env string) bool {
	switch {
	case env == "" || e.KeyID == "":
		return true
	case e.Environment != "":
		return e.Environment == env
	}
	return strings.Contains(e.KeyDisplay, "_"+env+"_")
}
