// Package store defines what keyward persists (keys, tenants, peppers, audit
// entries, idempotency records) and the semantics every backend must share.
// The DynamoDB backend (package dynamo) runs in AWS; the embedded backend
// (package embedded) runs the local stack and tests. Both pass the suite in
// package conformance, which is the executable form of the contract below.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Sentinel errors. Backends wrap them; callers test with errors.Is.
var (
	// ErrNotFound: no such item, or it belongs to another tenant, or it has
	// expired (TTL) even if the backend has not deleted it yet.
	ErrNotFound = errors.New("store: not found")
	// ErrAlreadyExists: a create met an existing item.
	ErrAlreadyExists = errors.New("store: already exists")
	// ErrConflict: a precondition failed (stale revision, tenant not active,
	// idempotency record in the wrong state, a concurrent transaction).
	ErrConflict = errors.New("store: conflict")
	// ErrInvalidCursor: a pagination cursor that this backend did not issue
	// for this query.
	ErrInvalidCursor = errors.New("store: invalid cursor")
	// ErrChangeTooLarge: a Change needs more items than one transaction holds.
	ErrChangeTooLarge = errors.New("store: change too large")
)

// MaxChangeItems is the most items one Change may touch, DynamoDB's
// TransactWriteItems limit; the embedded store enforces it too so that code
// tested locally cannot outgrow a transaction in AWS. Every key write and
// audit entry is one item, as are the idempotency record, the key counter
// of each tenant keys are created in and of each member who creates them;
// the tenant write is TenantWriteItems.
const MaxChangeItems = 100

// KeyCounterShards is how many items the DynamoDB backend keeps a tenant's
// key count in, so that concurrent key creations do not all write one item
// (pkg/store/dynamo, CounterShards); each holds the tenant's status too.
const KeyCounterShards = 64

// TenantWriteItems is what a tenant write counts against MaxChangeItems:
// the tenant and its counter items, whose status it writes.
const TenantWriteItems = 1 + KeyCounterShards

// MaxPageSize bounds every list query.
const MaxPageSize = 100

// MaxExamined bounds the entries one listing call looks at, in both
// backends: a filter that passes over most of a collection (the active
// keys of a tenant whose keys are mostly revoked) answers a short page, or
// an empty one, with a cursor after the last entry it looked at, rather
// than reading the whole collection within one request.
const MaxExamined = 1000

// KeyStatus is the stored lifecycle state of a key.
type KeyStatus string

const (
	KeyActive   KeyStatus = "active"
	KeyExpiring KeyStatus = "expiring" // replaced by rotation, valid until ExpiresAt
	KeyRevoked  KeyStatus = "revoked"
	KeyExpired  KeyStatus = "expired"
)

// Known reports whether s is one of the statuses above. Anything else is
// corrupt data: stores refuse to write or return it, and the authorizer
// refuses a key whose status it does not recognise.
func (s KeyStatus) Known() bool {
	switch s {
	case KeyActive, KeyExpiring, KeyRevoked, KeyExpired:
		return true
	}
	return false
}

// ErrCorrupt: a stored item does not decode to a valid value (an unknown
// key status, say). It is never served as if it were valid.
var ErrCorrupt = errors.New("store: corrupt item")

// CheckKey refuses a key a store must neither write nor return.
func CheckKey(k Key) error {
	if !k.Status.Known() {
		return fmt.Errorf("%w: key %s has unknown status %q", ErrCorrupt, k.ID, k.Status)
	}
	return nil
}

// TenantStatus is the lifecycle state of a tenant.
type TenantStatus string

const (
	TenantActive     TenantStatus = "active"
	TenantOffboarded TenantStatus = "offboarded"
)

// RateLimit is a key's request budget; zero values mean the service default.
type RateLimit struct {
	RequestsPerMinute int `json:"requests_per_minute"`
	Burst             int `json:"burst,omitempty"`
}

// Key is one API key. It never holds the token or its secret part: only
// the HMAC of the token under pepper PepperVersion.
//
// Hash, PepperVersion and LastUsedAt are store-managed after creation: an
// update through Apply keeps the stored values whatever the caller passes,
// and only RehashKey and TouchKey change them. ID, TenantID, Prefix,
// Environment, Last4, CreatedAt, CreatedBy and Replaces never change.
type Key struct {
	ID             string    `json:"id"`
	TenantID       string    `json:"tenant_id"`
	Name           string    `json:"name"`
	Description    string    `json:"description,omitempty"`
	Prefix         string    `json:"prefix"`
	Environment    string    `json:"environment"`
	Last4          string    `json:"last4"`
	Scopes         []string  `json:"scopes"`
	Status         KeyStatus `json:"status"`
	Hash           []byte    `json:"hash"`
	PepperVersion  int       `json:"pepper_version"`
	CreatedAt      time.Time `json:"created_at"`
	CreatedBy      string    `json:"created_by,omitempty"`
	UpdatedAt      time.Time `json:"updated_at"`
	NotBefore      time.Time `json:"not_before,omitzero"`
	ExpiresAt      time.Time `json:"expires_at,omitzero"`
	RevokedAt      time.Time `json:"revoked_at,omitzero"`
	LastUsedAt     time.Time `json:"last_used_at,omitzero"`
	AllowedIPs     []string  `json:"allowed_ips,omitempty"`
	AllowedOrigins []string  `json:"allowed_origins,omitempty"`
	// AllowBrowserWrites lets a browser key (one with AllowedOrigins) use
	// scopes other than resource:read; without it the authorizer grants
	// such a key its read scopes only.
	AllowBrowserWrites bool `json:"allow_browser_writes,omitempty"`
	// Contact is the email address to reach about the key (a leak, an
	// expiry, suspicious use); "" means the tenant's.
	Contact    string            `json:"contact,omitempty"`
	RateLimit  RateLimit         `json:"rate_limit"`
	Replaces   string            `json:"replaces,omitempty"`
	ReplacedBy string            `json:"replaced_by,omitempty"`
	Metadata   map[string]string `json:"metadata,omitempty"`
	// Notices records the notices sent about the key (NoticeExpiring7d,
	// NoticeExpiring1d, NoticeUnused), so that each goes out once: the job
	// that sends one adds it in the same revision-checked write.
	Notices []string `json:"notices,omitempty"`
	// Revision is the optimistic-concurrency counter: 1 after creation,
	// incremented by the store on every successful update.
	Revision int64 `json:"revision"`
}

// Notices sent about a key.
const (
	NoticeExpiring7d = "expiring_7d"
	NoticeExpiring1d = "expiring_1d"
	NoticeUnused     = "unused"
	NoticeLeaked     = "leaked"
	// NoticeIdentityRemoved marks a dead key whose rate-limit identity was
	// removed: bookkeeping, not an event.
	NoticeIdentityRemoved = "identity_removed"
)

// Tenant is one customer of the platform.
type Tenant struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Contact is the email address to reach about a key without its own.
	Contact      string       `json:"contact,omitempty"`
	Status       TenantStatus `json:"status"`
	CreatedAt    time.Time    `json:"created_at"`
	OffboardedAt time.Time    `json:"offboarded_at,omitzero"`
	Revision     int64        `json:"revision"`
}

// Pepper is one version of the HMAC pepper, stored only as a KMS (or local
// key ring) ciphertext.
type Pepper struct {
	Version    int       `json:"version"`
	Ciphertext []byte    `json:"ciphertext"`
	KeyID      string    `json:"key_id"` // the KMS key that wrapped it
	CreatedAt  time.Time `json:"created_at"`
	RetiredAt  time.Time `json:"retired_at,omitzero"`
}

// AuditEntry records one change. It never holds a secret, hash or pepper.
type AuditEntry struct {
	TenantID string    `json:"tenant_id"`
	ID       string    `json:"id"`
	Time     time.Time `json:"time"`
	Actor    string    `json:"actor"`
	Action   string    `json:"action"`
	KeyID    string    `json:"key_id,omitempty"`
	// Environment is the key's environment, for entries about a key: a
	// management key sees only its own environment's entries.
	Environment string `json:"environment,omitempty"`
	// KeyDisplay is the key's display form (sk_live_…abcd), so that an
	// event built from the entry names the key as people see it.
	KeyDisplay string            `json:"key_display,omitempty"`
	RequestID  string            `json:"request_id,omitempty"`
	Details    map[string]string `json:"details,omitempty"`
	ExpiresAt  time.Time         `json:"expires_at,omitzero"` // TTL; zero keeps it forever
}

// SystemTenant is the audit namespace of changes that belong to no tenant
// (pepper rotations). It is not a valid tenant id, so no tenant can read it.
const SystemTenant = "_system"

// Idempotency is the record of one Idempotency-Key within a tenant.
type Idempotency struct {
	TenantID    string    `json:"tenant_id"`
	Key         string    `json:"key"`
	RequestHash string    `json:"request_hash"`
	Done        bool      `json:"done"`
	StatusCode  int       `json:"status_code,omitempty"`
	Body        []byte    `json:"body,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	ExpiresAt   time.Time `json:"expires_at"` // TTL; zero never expires
}

// KeyWrite creates a key (ExpectedRevision 0) or replaces the mutable fields
// of an existing one whose stored Revision equals ExpectedRevision and whose
// TenantID equals Key.TenantID.
//
// A create fails with ErrAlreadyExists if the id is taken, and with
// ErrConflict unless the key's tenant exists and is active. An update fails
// with ErrNotFound if the key is missing or belongs to another tenant, and
// with ErrConflict if the revision is stale. The store sets Revision.
type KeyWrite struct {
	Key              Key
	ExpectedRevision int64
}

// TenantWrite creates a tenant (ExpectedRevision 0; ErrAlreadyExists if it
// exists) or replaces it if its stored Revision equals ExpectedRevision
// (ErrNotFound if missing, ErrConflict if stale).
type TenantWrite struct {
	Tenant           Tenant
	ExpectedRevision int64
}

// Change is one atomic write: every part applies or none does. Audit entries
// are created: ErrAlreadyExists if an unexpired entry of the tenant has the
// same Time and ID (an expired one counts as absent, as everywhere). IDs are
// random, so in practice the ID alone identifies an entry.
//
// Idempotency, if set, completes the record of the request making the
// change (Done, StatusCode and Body), in the same transaction: the stored
// record must be unexpired, in progress and the same claim (same CreatedAt
// and RequestHash), or the change fails with ErrConflict and writes nothing.
// So a retry of the request finds either the finished record, or no change
// at all, whatever failed in between; and a claim taken over or released
// meanwhile can never be completed by the request that lost it.
type Change struct {
	Keys        []KeyWrite
	Tenant      *TenantWrite
	Audit       []AuditEntry
	Idempotency *Idempotency
}

// KeyQuery filters and pages a tenant's keys, newest first (CreatedAt
// descending, then ID descending). Empty filters match everything.
type KeyQuery struct {
	Environment string
	Status      KeyStatus
	CreatedBy   string
	Limit       int // 1 to MaxPageSize
	Cursor      string
}

// KeyPage is one page of keys; NextCursor is empty on the last page.
//
// Skipped are the ids of keys the page would have held that do not decode
// to a valid key (ErrCorrupt): they are left out, so that one corrupt item
// cannot stop a listing, or the revocation of a tenant's other keys, and
// are named for the caller to report. (GetKey still fails on them, and the
// authorizer refuses them.)
type KeyPage struct {
	Keys       []Key
	NextCursor string
	Skipped    []string
}

// AuditQuery pages a tenant's audit entries, newest first (Time descending,
// then ID descending), optionally those of one key. Expired entries are
// never returned. A non-empty Environment keeps the entries about keys of
// that environment and those about no key (the tenant's own).
type AuditQuery struct {
	KeyID       string
	Environment string
	Limit       int // 1 to MaxPageSize
	Cursor      string
}

// AuditPage is one page of audit entries; NextCursor is empty on the last page.
type AuditPage struct {
	Entries    []AuditEntry
	NextCursor string
}

// ExpiryQuery pages, across tenants, the keys whose status is active or
// expiring and whose ExpiresAt is set and not after Before, soonest first
// (ExpiresAt ascending, then ID ascending): the scheduled jobs' work list.
type ExpiryQuery struct {
	Before time.Time
	Limit  int // 1 to MaxPageSize
	Cursor string
}

// Store is everything keyward persists. Consumers that need less declare
// their own narrower interface; this one is the contract the conformance
// suite holds every backend to.
type Store interface {
	// GetTenant returns a tenant by id.
	GetTenant(ctx context.Context, id string) (Tenant, error)
	// GetKey is the authorizer's lookup: one strongly consistent read by id,
	// whatever the tenant. Callers acting for a tenant must check TenantID.
	GetKey(ctx context.Context, id string) (Key, error)
	// ListKeys pages through one tenant's keys.
	ListKeys(ctx context.Context, tenantID string, q KeyQuery) (KeyPage, error)
	// KeyCount is how many keys were ever created in the tenant, counted
	// in the transactions that create them, so that offboarding knows
	// when a listing has shown them all, whatever an index's propagation
	// delay. MemberKeyCount is the same for the keys with CreatedBy
	// member (0 if none).
	KeyCount(ctx context.Context, tenantID string) (int64, error)
	MemberKeyCount(ctx context.Context, tenantID, member string) (int64, error)
	// ListAudit pages through one tenant's audit entries.
	ListAudit(ctx context.Context, tenantID string, q AuditQuery) (AuditPage, error)
	// Apply writes a Change atomically.
	Apply(ctx context.Context, c Change) error

	// TouchKey sets LastUsedAt to at if the stored value is older than
	// at-minInterval (or unset) and reports whether it wrote. It does not
	// change Revision. ErrNotFound if the key is missing.
	TouchKey(ctx context.Context, id string, at time.Time, minInterval time.Duration) (bool, error)
	// RehashKey replaces Hash and PepperVersion if the stored PepperVersion
	// is older than toVersion: a key only ever moves to a newer pepper, so a
	// process whose view of the peppers is stale cannot move it back
	// (ErrConflict otherwise, ErrNotFound if missing). It does not change
	// Revision.
	RehashKey(ctx context.Context, id string, hash []byte, toVersion int) error

	// ListExpiring pages through keys due to expire (see ExpiryQuery).
	ListExpiring(ctx context.Context, q ExpiryQuery) (KeyPage, error)
	// ScanKeys pages through every key of every tenant, in an order that is
	// stable from page to page; limit is 1 to MaxPageSize, and an empty
	// NextCursor ends the scan. Cursors are the backend's own
	// (ErrInvalidCursor for one it did not issue).
	ScanKeys(ctx context.Context, cursor string, limit int) (KeyPage, error)

	// ListPeppers returns every pepper version, oldest first.
	ListPeppers(ctx context.Context) ([]Pepper, error)
	// CreatePepper stores a new version (ErrAlreadyExists if taken).
	CreatePepper(ctx context.Context, p Pepper) error
	// RetirePepper marks a version retired at at (ErrNotFound if missing,
	// ErrConflict if retired already).
	RetirePepper(ctx context.Context, version int, at time.Time) error

	// GetCheckpoint returns where a scheduled job stopped ("" if it has
	// not, or finished); PutCheckpoint records it ("" clears it).
	GetCheckpoint(ctx context.Context, job string) (string, error)
	PutCheckpoint(ctx context.Context, job, cursor string) error

	// PutIdempotency creates a record; ErrAlreadyExists if an unexpired one
	// exists for the same tenant and key (an expired one is replaced).
	PutIdempotency(ctx context.Context, r Idempotency) error
	// GetIdempotency returns an unexpired record (ErrNotFound otherwise).
	GetIdempotency(ctx context.Context, tenantID, key string) (Idempotency, error)
	// CompleteIdempotency stores the response of the unfinished record r
	// claims (same tenant, key, CreatedAt and RequestHash): ErrNotFound if
	// missing or expired, ErrConflict if done already or another claim's.
	CompleteIdempotency(ctx context.Context, r Idempotency) error
	// DeleteIdempotency removes the record r describes (same tenant, key,
	// CreatedAt and RequestHash) while it is in progress, so that a request
	// that failed without effect, or one abandoned, can be retried with the
	// same key. No error if it is gone; ErrConflict if another request holds
	// the key by now, whose claim must not be removed, or if the record is
	// done: a change that completed it (Change.Idempotency) happened, and
	// its answer must be replayed, not its effect repeated.
	DeleteIdempotency(ctx context.Context, r Idempotency) error

	UsageStore
}

// Effective returns k with the status it has at now: a key past its expiry
// is expired even before the sweep has written so.
func (k Key) Effective(now time.Time) Key {
	k.Status = k.StatusAt(now)
	return k
}

// StatusAt is the status k has at now (Effective's, without the copy).
func (k *Key) StatusAt(now time.Time) KeyStatus {
	if (k.Status == KeyActive || k.Status == KeyExpiring) && !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt) {
		return KeyExpired
	}
	return k.Status
}
