// Package lifecycle is the key lifecycle: create (the token is returned once),
// get, list, update, rotate with an overlap window, revoke, revoke every key
// of a member or of an offboarded tenant, and onboard tenants. Every change
// is written together with its audit entry in one store transaction. The
// admin API, the scheduled jobs and the local stack all call this package.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/clock"
	"github.com/keyward/keyward/pkg/store"
)

// Errors of the lifecycle; *ValidationError reports bad input.
var (
	// ErrNotFound: no such key in the caller's tenant (another tenant's key
	// is reported exactly like a missing one).
	ErrNotFound = errors.New("lifecycle: not found")
	// ErrConflict: the key's state does not allow the change (rotating a
	// revoked key, updating an expired one), or a concurrent change won
	// every retry.
	ErrConflict = errors.New("lifecycle: conflict")
	// ErrTenantInactive: the tenant does not exist or has been offboarded.
	ErrTenantInactive = errors.New("lifecycle: tenant not active")
)

// ConflictError is an ErrConflict with a reason fit to show the caller.
type ConflictError struct {
	Reason string
	Err    error // the store's error, if any, for logs
}

func (e *ConflictError) Error() string {
	if e.Err != nil {
		return "lifecycle: conflict: " + e.Reason + ": " + e.Err.Error()
	}
	return "lifecycle: conflict: " + e.Reason
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
	PutIdempotency(ctx context.Context, r store.Idempotency) error
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
	if err := a.Bounds.owns(k); err != nil {
		return err
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

func (s *Service) requireActiveTenant(ctx context.Context, tenant string) error {
	t, err := s.store.GetTenant(ctx, tenant)
	if errors.Is(err, store.ErrNotFound) {
		return ErrTenantInactive
	}
	if err != nil {
		return fmt.Errorf("lifecycle: reading tenant: %w", err)
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
	return fmt.Errorf("lifecycle: %s: %w", what, err)
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
			return store.Key{}, fmt.Errorf("lifecycle: reading key: %w", err)
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
