// Package keys is the key lifecycle: create (the token is returned once),
// get, list, update, rotate with an overlap window, revoke, revoke every key
// of a member or of an offboarded tenant, and onboard tenants. Every change
// is written together with its audit entry in one store transaction. The
// admin API, the rotation jobs and the local stack all call this package.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/clock"
	"github.com/keyward/keyward/pkg/store"
)

// Errors of the lifecycle; *ValidationError reports bad input.
var (
	// ErrNotFound: no such key in the caller's tenant (another tenant's key
	// is reported exactly like a missing one).
	ErrNotFound = errors.New("keys: not found")
	// ErrConflict: the key's state does not allow the change (rotating a
	// revoked key, updating an expired one), or a concurrent change won
	// every retry.
	ErrConflict = errors.New("keys: conflict")
	// ErrTenantInactive: the tenant does not exist or has been offboarded.
	ErrTenantInactive = errors.New("keys: tenant not active")
)

// ConflictError is an ErrConflict with a reason fit to show the caller.
type ConflictError struct {
	Reason string
	Err    error // the store's error, if any, for logs
}

func (e *ConflictError) Error() string {
	if e.Err != nil {
		return "keys: conflict: " + e.Reason + ": " + e.Err.Error()
	}
	return "keys: conflict: " + e.Reason
}

// Is makes errors.Is(err, ErrConflict) hold.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

func (e *ConflictError) Unwrap() error { return e.Err }

func conflict(format string, args ...any) error {
	return &ConflictError{Reason: fmt.Sprintf(format, args...)}
}

// Store is what the lifecycle reads and writes: keys and tenants, and the
// idempotency records of the changes it writes with a Receipt.
type Store interface {
	GetTenant(ctx context.Context, id string) (store.Tenant, error)
	GetKey(ctx context.Context, id string) (store.Key, error)
	ListKeys(ctx context.Context, tenantID string, q store.KeyQuery) (store.KeyPage, error)
	KeyCount(ctx context.Context, tenantID string) (int64, error)
	MemberKeyCount(ctx context.Context, tenantID, member string) (int64, error)
	Apply(ctx context.Context, c store.Change) error
	GetCheckpoint(ctx context.Context, job string) (string, error)
	PutCheckpoint(ctx context.Context, job, cursor string) error
	GetIdempotency(ctx context.Context, tenantID, key string) (store.Idempotency, error)
	DeleteIdempotency(ctx context.Context, r store.Idempotency) error
}

// Hasher computes the stored hash of a new token under the current pepper.
type Hasher interface {
	Hash(ctx context.Context, token string) (version int, sum []byte, err error)
}

// Actor is who makes a change, for the audit log.
type Actor struct {
	ID        string // "key_<id>" of a management key, "operator", "system:<job>"
	RequestID string
	// Allow, if set, vets the key as read inside each change to it, so that
	// a permission checked against one version of a key cannot be used on
	// a newer one (a key upgraded to keys:admin meanwhile, say).
	Allow func(store.Key) error
	// Bounds limit what a management key sees and hands out; the zero
	// value limits nothing.
	Bounds Bounds
	// Receipt, if set, completes the request's Idempotency-Key record in
	// the transaction of the change it makes: Create, Rotate and Onboard,
	// whose effect a retry must never repeat.
	Receipt *Receipt
	// Prepare, if set, runs before a change that creates keys is written.
	Prepare Prepare
}

// vet applies the actor's bounds and Allow to a key it is about to change.
func (a Actor) vet(k store.Key) error {
	if !a.Bounds.Sees(k) {
		return ErrNotFound
	}
	if a.Allow != nil {
		return a.Allow(k)
	}
	return nil
}

// Audit actions.
const (
	ActionKeyCreated       = "key.created"
	ActionKeyUpdated       = "key.updated"
	ActionKeyRotated       = "key.rotated"
	ActionKeyRevoked       = "key.revoked"
	ActionTenantCreated    = "tenant.created"
	ActionTenantOffboarded = "tenant.offboarded"
	ActionKeyExpired       = "key.expired"
	ActionKeyExpiring      = "key.expiring"
	ActionKeyUnused        = "key.unused"
	ActionPepperRotated    = "pepper.rotated"
	ActionKeyLeaked        = "key.leaked"
)

// Rotation overlap bounds: 0 expires the old key at once; the default is
// Recurly's twelve hours.
const (
	DefaultOverlap = 12 * time.Hour
	MaxOverlap     = 7 * 24 * time.Hour
)

// AdminScope is the scope of a tenant's first management key.
const AdminScope = "keys:admin"

// Service runs the key lifecycle.
type Service struct {
	store    Store
	hasher   Hasher
	format   apikey.Format
	now      func() time.Time
	auditTTL time.Duration
	// revokeBudget bounds one call of a bulk revocation (revoke.go).
	revokeBudget time.Duration
	sleep        func(context.Context, time.Duration) error
	log          *slog.Logger
}

// Option configures a Service.
type Option func(*Service)

// WithLogger sets where the lifecycle reports what it passed over (a key
// that does not decode); default slog.Default().
func WithLogger(l *slog.Logger) Option { return func(s *Service) { s.log = l } }

// WithClock sets the clock (tests use a fake one).
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// WithSleep sets how the service waits between retries (tests move a
// fake clock instead).
func WithSleep(sleep func(context.Context, time.Duration) error) Option {
	return func(s *Service) { s.sleep = sleep }
}

// WithAuditRetention sets how long audit entries live; 0 keeps them forever.
func WithAuditRetention(d time.Duration) Option { return func(s *Service) { s.auditTTL = d } }

// DefaultAuditRetention keeps a little over a year of audit history.
const DefaultAuditRetention = 400 * 24 * time.Hour

// New returns a Service that issues tokens of format. hasher may be nil
// for a service that never mints keys (the scheduled jobs), which then
// refuses to.
func New(st Store, hasher Hasher, format apikey.Format, opts ...Option) *Service {
	s := &Service{
		store: st, hasher: hasher, format: format, now: time.Now,
		auditTTL: DefaultAuditRetention, revokeBudget: DefaultRevokeBudget, sleep: clock.Sleep, log: slog.Default(),
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// CreateParams describe a new key. Zero values mean "none", except
// RateLimit, whose zero fields take the defaults.
type CreateParams struct {
	Name           string
	Description    string
	Environment    apikey.Environment
	Scopes         []string
	ExpiresAt      time.Time
	AllowedIPs     []string
	AllowedOrigins []string
	RateLimit      store.RateLimit
	CreatedBy      string
	Metadata       map[string]string
}

// Created is a new key with its token, which exists nowhere else: the
// caller hands it to the key's owner once and forgets it.
type Created struct {
	Key   store.Key
	Token apikey.Token
}

// newKey validates p and mints a key with a fresh token for tenant.
func (s *Service) newKey(ctx context.Context, tenant string, p CreateParams, now time.Time) (Created, error) {
	if err := validName(p.Name); err != nil {
		return Created{}, err
	}
	if err := validText("description", p.Description, 0, maxDescriptionLen); err != nil {
		return Created{}, err
	}
	if err := validEnvironment(p.Environment); err != nil {
		return Created{}, err
	}
	scopes, err := validScopes(p.Scopes)
	if err != nil {
		return Created{}, err
	}
	if !p.ExpiresAt.IsZero() {
		if err := validExpiry("expires_at", p.ExpiresAt, now); err != nil {
			return Created{}, err
		}
	}
	ips, err := normalIPs(p.AllowedIPs)
	if err != nil {
		return Created{}, err
	}
	origins, err := normalOrigins(p.AllowedOrigins)
	if err != nil {
		return Created{}, err
	}
	rate, err := normalRateLimit(p.RateLimit)
	if err != nil {
		return Created{}, err
	}
	if p.CreatedBy != "" {
		if err := validMemberID("created_by", p.CreatedBy); err != nil {
			return Created{}, err
		}
	}
	meta, err := validMetadata(p.Metadata)
	if err != nil {
		return Created{}, err
	}

	if s.hasher == nil {
		return Created{}, errors.New("keys: this service was built without a hasher and cannot mint keys")
	}
	tok, err := s.format.Generate(p.Environment)
	if err != nil {
		return Created{}, fmt.Errorf("keys: generating token: %w", err)
	}
	version, sum, err := s.hasher.Hash(ctx, tok.Plain())
	if err != nil {
		return Created{}, fmt.Errorf("keys: hashing token: %w", err)
	}
	k := store.Key{
		ID: tok.ID(), TenantID: tenant, Name: p.Name, Description: p.Description,
		Prefix: tok.Prefix(), Environment: string(p.Environment), Last4: tok.Last4(),
		Scopes: scopes, Status: store.KeyActive, Hash: sum, PepperVersion: version,
		CreatedAt: now, CreatedBy: p.CreatedBy, UpdatedAt: now, ExpiresAt: p.ExpiresAt.UTC(),
		AllowedIPs: ips, AllowedOrigins: origins, RateLimit: rate, Metadata: meta,
	}
	return Created{Key: k, Token: tok}, nil
}

// Create issues a new key in an active tenant, in the actor's environment
// when p names none, and within the actor's bounds.
func (s *Service) Create(ctx context.Context, actor Actor, tenant string, p CreateParams) (Created, error) {
	if p.Environment == "" {
		p.Environment = apikey.Environment(actor.Bounds.Environment)
	}
	if err := s.requireActiveTenant(ctx, tenant); err != nil {
		return Created{}, err
	}
	now := s.now().UTC()
	c, err := s.newKey(ctx, tenant, p, now)
	if err != nil {
		return Created{}, err
	}
	if err := actor.Bounds.admit(c.Key); err != nil {
		return Created{}, err
	}
	entry, err := s.audit(ActionKeyCreated, c.Key, actor, now, nil)
	if err != nil {
		return Created{}, err
	}
	err = s.write(ctx, actor, store.Change{Keys: []store.KeyWrite{{Key: c.Key}}, Audit: []store.AuditEntry{entry}})
	if err != nil {
		return Created{}, s.writeError("creating key", err)
	}
	c.Key.Revision = 1
	return c, nil
}

func (s *Service) requireActiveTenant(ctx context.Context, tenant string) error {
	t, err := s.store.GetTenant(ctx, tenant)
	if errors.Is(err, store.ErrNotFound) {
		return ErrTenantInactive
	}
	if err != nil {
		return fmt.Errorf("keys: reading tenant: %w", err)
	}
	if t.Status != store.TenantActive {
		return ErrTenantInactive
	}
	return nil
}

// writeError maps a failed Apply: a create refused because the tenant went
// inactive meanwhile, or a lost race, is a conflict for the caller.
func (s *Service) writeError(what string, err error) error {
	switch {
	case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrAlreadyExists):
		return &ConflictError{Reason: what + " lost to a concurrent change; retry", Err: err}
	case errors.Is(err, store.ErrNotFound):
		return ErrNotFound
	}
	return fmt.Errorf("keys: %s: %w", what, err)
}

// Get returns one of the tenant's keys, with its effective status.
func (s *Service) Get(ctx context.Context, tenant, id string) (store.Key, error) {
	k, err := s.store.GetKey(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && k.TenantID != tenant) {
		return store.Key{}, ErrNotFound
	}
	if err != nil {
		return store.Key{}, fmt.Errorf("keys: reading key: %w", err)
	}
	return k.Effective(s.now()), nil
}

// Stored returns one of the tenant's keys as stored, for a change the
// caller makes from it (Leak): Get shows the status the key has at now.
func (s *Service) Stored(ctx context.Context, tenant, id string) (store.Key, error) {
	k, err := s.store.GetKey(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && k.TenantID != tenant) {
		return store.Key{}, ErrNotFound
	}
	if err != nil {
		return store.Key{}, fmt.Errorf("keys: reading key: %w", err)
	}
	return k, nil
}

// List returns a page of the tenant's keys, newest first.
func (s *Service) List(ctx context.Context, tenant string, q store.KeyQuery) (store.KeyPage, error) {
	if err := store.CheckLimit(q.Limit); err != nil {
		return store.KeyPage{}, invalid("limit", "must be 1 to %d", store.MaxPageSize)
	}
	if q.Environment != "" {
		if err := validEnvironment(apikey.Environment(q.Environment)); err != nil {
			return store.KeyPage{}, err
		}
	}
	switch q.Status {
	case "", store.KeyActive, store.KeyExpiring, store.KeyRevoked, store.KeyExpired:
	default:
		return store.KeyPage{}, invalid("status", "must be active, expiring, revoked or expired")
	}
	if q.CreatedBy != "" {
		if err := validMemberID("created_by", q.CreatedBy); err != nil {
			return store.KeyPage{}, err
		}
	}
	page, err := s.store.ListKeys(ctx, tenant, q)
	if errors.Is(err, store.ErrInvalidCursor) {
		return store.KeyPage{}, invalid("cursor", "is not a cursor from this listing")
	}
	if err != nil {
		return store.KeyPage{}, fmt.Errorf("keys: listing keys: %w", err)
	}
	now := s.now()
	for i := range page.Keys {
		page.Keys[i] = page.Keys[i].Effective(now)
	}
	return page, nil
}

// UpdateParams change a key; nil fields stay as they are. A pointer to a
// zero value clears the field (no expiry, no IP list, ...), except Name
// and Scopes, which a key must keep.
type UpdateParams struct {
	Name           *string
	Description    *string
	Scopes         *[]string
	AllowedIPs     *[]string
	AllowedOrigins *[]string
	RateLimit      *store.RateLimit
	ExpiresAt      *time.Time
	Metadata       *map[string]string
}

// changedFields lists the fields an update names, for the audit entry.
func (p UpdateParams) changedFields() string {
	var f []string
	add := func(set bool, name string) {
		if set {
			f = append(f, name)
		}
	}
	add(p.Name != nil, "name")
	add(p.Description != nil, "description")
	add(p.Scopes != nil, "scopes")
	add(p.AllowedIPs != nil, "allowed_ips")
	add(p.AllowedOrigins != nil, "allowed_origins")
	add(p.RateLimit != nil, "rate_limit")
	add(p.ExpiresAt != nil, "expires_at")
	add(p.Metadata != nil, "metadata")
	return strings.Join(f, ",")
}

// apply validates p and applies it to k.
func (p UpdateParams) apply(k *store.Key, now time.Time) error {
	if p.Name != nil {
		if err := validName(*p.Name); err != nil {
			return err
		}
		k.Name = *p.Name
	}
	if p.Description != nil {
		if err := validText("description", *p.Description, 0, maxDescriptionLen); err != nil {
			return err
		}
		k.Description = *p.Description
	}
	if p.Scopes != nil {
		scopes, err := validScopes(*p.Scopes)
		if err != nil {
			return err
		}
		k.Scopes = scopes
	}
	if p.AllowedIPs != nil {
		ips, err := normalIPs(*p.AllowedIPs)
		if err != nil {
			return err
		}
		k.AllowedIPs = ips
	}
	if p.AllowedOrigins != nil {
		origins, err := normalOrigins(*p.AllowedOrigins)
		if err != nil {
			return err
		}
		k.AllowedOrigins = origins
	}
	if p.RateLimit != nil {
		rate, err := normalRateLimit(*p.RateLimit)
		if err != nil {
			return err
		}
		k.RateLimit = rate
	}
	if p.ExpiresAt != nil {
		at := p.ExpiresAt.UTC()
		if !at.IsZero() {
			if err := validExpiry("expires_at", at, now); err != nil {
				return err
			}
		}
		// A replaced key's overlap may be cut short, never stretched.
		if k.Status == store.KeyExpiring && (at.IsZero() || at.After(k.ExpiresAt)) {
			return invalid("expires_at", "of a key replaced by rotation can only move earlier")
		}
		k.ExpiresAt = at
	}
	if p.Metadata != nil {
		meta, err := validMetadata(*p.Metadata)
		if err != nil {
			return err
		}
		k.Metadata = meta
	}
	return nil
}

// maxAttempts bounds read-modify-write retries when concurrent changes to
// the same key keep winning.
const maxAttempts = 4

// mutate reads a key of the tenant, lets change edit it (and add keys
// and audit entries to the change), and writes it with a revision check,
// retrying on a lost race. change returns done=true to write nothing.
func (s *Service) mutate(ctx context.Context, actor Actor, tenant, id string, change func(k *store.Key, c *store.Change, now time.Time) (done bool, err error)) (store.Key, error) {
	for range maxAttempts {
		k, err := s.store.GetKey(ctx, id)
		if errors.Is(err, store.ErrNotFound) || (err == nil && k.TenantID != tenant) {
			return store.Key{}, ErrNotFound
		}
		if err != nil {
			return store.Key{}, fmt.Errorf("keys: reading key: %w", err)
		}
		if err := actor.vet(k); err != nil {
			return store.Key{}, err
		}
		// The key as stored: a status that only the clock has changed
		// (Effective) is for decisions, never written back, or an expired
		// key would leave the expiry sweep's list before the sweep ends its
		// cached decisions.
		now := s.now().UTC()
		rev := k.Revision
		var c store.Change
		done, err := change(&k, &c, now)
		if err != nil || done {
			return k.Effective(now), err
		}
		k.UpdatedAt = now
		c.Keys = append([]store.KeyWrite{{Key: k, ExpectedRevision: rev}}, c.Keys...)
		err = s.write(ctx, actor, c)
		if err == nil {
			k.Revision = rev + 1
			return k.Effective(now), nil
		}
		if !errors.Is(err, store.ErrConflict) {
			return store.Key{}, s.writeError("writing key", err)
		}
	}
	return store.Key{}, conflict("key_%s changed concurrently; retry", id)
}

func usable(k store.Key, now time.Time) error {
	switch k.Effective(now).Status {
	case store.KeyRevoked:
		return conflict("the key is revoked")
	case store.KeyExpired:
		return conflict("the key has expired")
	}
	return nil
}

// Update changes a key's settings; the authorizer sees the change on the
// very next request, since it reads the key on every uncached decision.
func (s *Service) Update(ctx context.Context, actor Actor, tenant, id string, p UpdateParams) (store.Key, error) {
	return s.mutate(ctx, actor, tenant, id, func(k *store.Key, c *store.Change, now time.Time) (bool, error) {
		if err := usable(*k, now); err != nil {
			return false, err
		}
		old := *k
		if err := p.apply(k, now); err != nil {
			return false, err
		}
		if err := actor.Bounds.admitUpdate(p, old, *k); err != nil {
			return false, err
		}
		entry, err := s.audit(ActionKeyUpdated, *k, actor, now, map[string]string{"fields": p.changedFields()})
		c.Audit = append(c.Audit, entry)
		return false, err
	})
}

// Revoke ends a key at once. Revoking a revoked key changes nothing.
func (s *Service) Revoke(ctx context.Context, actor Actor, tenant, id string) (store.Key, error) {
	return s.mutate(ctx, actor, tenant, id, func(k *store.Key, c *store.Change, now time.Time) (bool, error) {
		return s.revokeInto(k, c, actor, now, "")
	})
}

// revokeInto marks k revoked and adds its audit entry to c; it reports
// done when k is already revoked.
func (s *Service) revokeInto(k *store.Key, c *store.Change, actor Actor, now time.Time, reason string) (bool, error) {
	if k.Status == store.KeyRevoked {
		return true, nil
	}
	k.Status, k.RevokedAt, k.UpdatedAt = store.KeyRevoked, now, now
	var details map[string]string
	if reason != "" {
		details = map[string]string{"reason": reason}
	}
	entry, err := s.audit(ActionKeyRevoked, *k, actor, now, details)
	c.Audit = append(c.Audit, entry)
	return false, err
}

// Rotate replaces a key: the new key inherits every setting of the old one
// and never outlives its expiry; the old key keeps working for overlap (0
// ends it at once) and then expires.
func (s *Service) Rotate(ctx context.Context, actor Actor, tenant, id string, overlap time.Duration) (Created, store.Key, error) {
	if overlap < 0 || overlap > MaxOverlap {
		return Created{}, store.Key{}, invalid("expire_old_in", "must be 0 to %d seconds", int(MaxOverlap.Seconds()))
	}
	if err := s.requireActiveTenant(ctx, tenant); err != nil {
		return Created{}, store.Key{}, err
	}
	var created Created
	old, err := s.mutate(ctx, actor, tenant, id, func(k *store.Key, c *store.Change, now time.Time) (bool, error) {
		if err := usable(*k, now); err != nil {
			return false, err
		}
		if k.Status == store.KeyExpiring {
			return false, conflict("the key was already replaced by key_%s", k.ReplacedBy)
		}
		// The replacement inherits the key's restrictions.
		if err := actor.Bounds.admit(*k); err != nil {
			return false, err
		}
		nk, err := s.newKey(ctx, tenant, CreateParams{
			Name: k.Name, Description: k.Description, Environment: apikey.Environment(k.Environment),
			Scopes: k.Scopes, AllowedIPs: k.AllowedIPs, AllowedOrigins: k.AllowedOrigins,
			RateLimit: k.RateLimit, CreatedBy: k.CreatedBy, Metadata: k.Metadata,
		}, now)
		if err != nil {
			return false, fmt.Errorf("keys: minting the replacement: %w", err)
		}
		nk.Key.ExpiresAt = k.ExpiresAt // set after validation: it may be close
		nk.Key.Replaces = k.ID
		created = nk

		end := now.Add(overlap)
		if !k.ExpiresAt.IsZero() && k.ExpiresAt.Before(end) {
			end = k.ExpiresAt
		}
		k.ExpiresAt, k.ReplacedBy = end, nk.Key.ID
		k.Status = store.KeyExpiring
		if overlap == 0 {
			k.Status = store.KeyExpired
		}
		rotated, err := s.audit(ActionKeyRotated, *k, actor, now, map[string]string{
			"replaced_by": apikey.PublicID(nk.Key.ID), "old_expires_at": end.Format(time.RFC3339)})
		if err != nil {
			return false, err
		}
		born, err := s.audit(ActionKeyCreated, nk.Key, actor, now, map[string]string{"replaces": apikey.PublicID(k.ID)})
		c.Keys = append(c.Keys, store.KeyWrite{Key: nk.Key})
		c.Audit = append(c.Audit, rotated, born)
		return false, err
	})
	if err != nil {
		return Created{}, store.Key{}, err
	}
	created.Key.Revision = 1
	return created, old, nil
}

var tenantIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{1,62}$`)

// OnboardParams describe a new tenant.
type OnboardParams struct {
	TenantID string
	Name     string
	// RateLimit is the first key's: the highest tier the deployment has,
	// since every key the tenant makes with it stays within its bounds.
	RateLimit store.RateLimit
}

// Onboarded is a new tenant with its first management keys, whose tokens
// exist nowhere else.
type Onboarded struct {
	Tenant store.Tenant
	Live   Created // keys:admin in the live environment
	Test   Created // keys:admin in the test environment
}

// Onboard creates a tenant together with its first management keys, one
// per environment (a management key acts in its own environment only):
// scope keys:admin, no expiry or address restriction. Their tokens are
// returned once.
func (s *Service) Onboard(ctx context.Context, actor Actor, p OnboardParams) (Onboarded, error) {
	if !tenantIDPattern.MatchString(p.TenantID) {
		return Onboarded{}, invalid("tenant_id", "must be 2 to 63 lowercase letters, digits, '_' or '-', starting with a letter or digit")
	}
	if err := validText("name", p.Name, 1, maxNameLen); err != nil {
		return Onboarded{}, err
	}
	now := s.now().UTC()
	o := Onboarded{Tenant: store.Tenant{ID: p.TenantID, Name: p.Name, Status: store.TenantActive, CreatedAt: now}}
	created, err := s.entry(o.Tenant.ID, ActionTenantCreated, nil, actor, now, nil)
	if err != nil {
		return Onboarded{}, err
	}
	c := store.Change{Tenant: &store.TenantWrite{Tenant: o.Tenant}, Audit: []store.AuditEntry{created}}
	for _, first := range []struct {
		env apikey.Environment
		dst *Created
	}{{apikey.Live, &o.Live}, {apikey.Test, &o.Test}} {
		dst := first.dst
		if *dst, err = s.newKey(ctx, p.TenantID, CreateParams{
			Name: "Admin key", Environment: first.env, Scopes: []string{AdminScope}, RateLimit: p.RateLimit,
		}, now); err != nil {
			return Onboarded{}, err
		}
		entry, err := s.audit(ActionKeyCreated, dst.Key, actor, now, nil)
		if err != nil {
			return Onboarded{}, err
		}
		c.Keys = append(c.Keys, store.KeyWrite{Key: dst.Key})
		c.Audit = append(c.Audit, entry)
	}
	err = s.write(ctx, actor, c)
	if errors.Is(err, store.ErrAlreadyExists) {
		return Onboarded{}, conflict("tenant %s exists", o.Tenant.ID)
	}
	if err != nil {
		return Onboarded{}, s.writeError("onboarding tenant", err)
	}
	o.Tenant.Revision, o.Live.Key.Revision, o.Test.Key.Revision = 1, 1, 1
	return o, nil
}

// Tenant returns a tenant.
func (s *Service) Tenant(ctx context.Context, id string) (store.Tenant, error) {
	t, err := s.store.GetTenant(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return store.Tenant{}, ErrNotFound
	}
	if err != nil {
		return store.Tenant{}, fmt.Errorf("keys: reading tenant: %w", err)
	}
	return t, nil
}

// Expire marks k expired if its expiry (or rotation overlap) has passed.
// k is the key as listed; if it changed since, or another run expired it
// first, Expire does nothing and reports false, so concurrent sweeps
// cannot both apply the change.
func (s *Service) Expire(ctx context.Context, actor Actor, k store.Key) (bool, error) {
	now := s.now().UTC()
	if k.Status != store.KeyActive && k.Status != store.KeyExpiring || k.ExpiresAt.IsZero() || now.Before(k.ExpiresAt) {
		return false, nil
	}
	rev := k.Revision
	k.Status, k.UpdatedAt = store.KeyExpired, now
	entry, err := s.audit(ActionKeyExpired, k, actor, now, map[string]string{"expires_at": k.ExpiresAt.Format(time.RFC3339)})
	if err != nil {
		return false, err
	}
	return s.applyOnce(ctx, store.Change{Keys: []store.KeyWrite{{Key: k, ExpectedRevision: rev}}, Audit: []store.AuditEntry{entry}})
}

// Notify records that notice was sent about k (an audit entry with action,
// which becomes an event) unless it was already; like Expire, it writes
// against k's listed revision and reports false if it lost a race.
func (s *Service) Notify(ctx context.Context, actor Actor, k store.Key, notice, action string, details map[string]string) (bool, error) {
	if slices.Contains(k.Notices, notice) {
		return false, nil
	}
	now := s.now().UTC()
	rev := k.Revision
	k.Notices = append(slices.Clone(k.Notices), notice)
	entry, err := s.audit(action, k, actor, now, details)
	if err != nil {
		return false, err
	}
	return s.applyOnce(ctx, store.Change{Keys: []store.KeyWrite{{Key: k, ExpectedRevision: rev}}, Audit: []store.AuditEntry{entry}})
}

// Mark records a bookkeeping notice on k (no audit entry, no event: the
// key's access does not change), against its listed revision like Notify.
func (s *Service) Mark(ctx context.Context, k store.Key, notice string) (bool, error) {
	if slices.Contains(k.Notices, notice) {
		return false, nil
	}
	rev := k.Revision
	k.Notices = append(slices.Clone(k.Notices), notice)
	return s.applyOnce(ctx, store.Change{Keys: []store.KeyWrite{{Key: k, ExpectedRevision: rev}}})
}

// applyOnce writes a revision-checked change; a lost race is no error.
func (s *Service) applyOnce(ctx context.Context, c store.Change) (bool, error) {
	err := s.store.Apply(ctx, c)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrNotFound):
		return false, nil
	}
	return false, fmt.Errorf("keys: %w", err)
}

// RecordPepperRotation audits a new pepper version in the system
// namespace, from which the pepper.rotated event is published.
func (s *Service) RecordPepperRotation(ctx context.Context, actor Actor, version int) error {
	e, err := s.entry(store.SystemTenant, ActionPepperRotated, nil, actor, s.now().UTC(), map[string]string{"version": strconv.Itoa(version)})
	if err != nil {
		return err
	}
	if err := s.store.Apply(ctx, store.Change{Audit: []store.AuditEntry{e}}); err != nil {
		return fmt.Errorf("keys: recording pepper rotation: %w", err)
	}
	return nil
}

// Leak records that key k (as stored: store.GetKey or Stored, never Get's
// effective view, whose status is not written back) was found exposed,
// with where (details: url, source): a key.leaked event, and, if revoke is
// set and the key still works, its revocation, in one change. It returns
// the key as written and whether it revoked it. A report about a key that
// changed since it was read is applied to the fresh key.
func (s *Service) Leak(ctx context.Context, actor Actor, k store.Key, revoke bool, details map[string]string) (store.Key, bool, error) {
	revoked := false
	leak := func(k *store.Key, c *store.Change, now time.Time) (bool, error) {
		revoked = false
		if !slices.Contains(k.Notices, store.NoticeLeaked) {
			k.Notices = append(slices.Clone(k.Notices), store.NoticeLeaked)
		}
		if live := k.Effective(now).Status; revoke && (live == store.KeyActive || live == store.KeyExpiring) {
			if _, err := s.revokeInto(k, c, actor, now, "leaked"); err != nil {
				return false, err
			}
			revoked = true
		}
		entry, err := s.audit(ActionKeyLeaked, *k, actor, now, details)
		c.Audit = append(c.Audit, entry)
		return false, err
	}
	// First against the key as the caller read it: one read per report.
	if err := actor.vet(k); err != nil {
		return store.Key{}, false, err
	}
	now := s.now().UTC()
	rev, written := k.Revision, k
	var c store.Change
	if _, err := leak(&written, &c, now); err != nil {
		return store.Key{}, false, err
	}
	written.UpdatedAt = now
	c.Keys = append([]store.KeyWrite{{Key: written, ExpectedRevision: rev}}, c.Keys...)
	err := s.write(ctx, actor, c)
	if err == nil {
		written.Revision = rev + 1
		return written.Effective(now), revoked, nil
	}
	if !errors.Is(err, store.ErrConflict) && !errors.Is(err, store.ErrNotFound) {
		return store.Key{}, false, fmt.Errorf("keys: %w", err)
	}
	written, err = s.mutate(ctx, actor, k.TenantID, k.ID, leak)
	return written, revoked, err
}
