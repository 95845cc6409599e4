package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/store"
)

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

// Bulk revocations: a removed member's keys, an offboarded tenant's.
//
// Each is complete or says it is not. The keys are found through an index
// that lags the table (on DynamoDB, a key written a moment ago may not be
// listed yet), so each compares what a pass of its listing showed with the
// count the store kept as the keys were created (KeyCount,
// MemberKeyCount), read after the pass, and lists again until one pass has
// shown them all. A key is counted in the transaction that creates it,
// before any listing can show it, so a pass that showed at least as many
// keys as the count read after it showed every key counted: keys created
// during the pass cannot stand in for one it missed. Each stops within a
// time budget, well inside the admin function's timeout, with
// ErrIncomplete; it records where it stopped, and the next call continues
// from there.

// ErrIncomplete: a bulk revocation stopped at its time budget before it
// had seen every key it must revoke. What it revoked stays revoked; call it
// again to continue.
var ErrIncomplete = errors.New("lifecycle: revocation incomplete; call again to continue")

// DefaultRevokeBudget is how long one bulk revocation call may run: the
// admin function has 25 s, and still flushes the authorizer cache (about
// 1.3 s) before it answers.
const DefaultRevokeBudget = 15 * time.Second

// revokeMargin is kept free before the caller's own deadline.
const revokeMargin = 5 * time.Second

// WithRevokeBudget sets how long one bulk revocation call may run.
func WithRevokeBudget(d time.Duration) Option { return func(s *Service) { s.revokeBudget = d } }

// revokeBatch is how many keys one transaction revokes: a key write and an
// audit entry each, within store.MaxChangeItems.
const revokeBatch = store.MaxChangeItems / 2

// bulk is one bulk revocation: which keys, how many there are, why.
type bulk struct {
	tenant string
	query  store.KeyQuery       // the listing that shows them
	only   func(store.Key) bool // which of those listed to revoke; nil: all
	// count is how many keys the listing must show in all.
	count  func(ctx context.Context) (int64, error)
	reason string // for the audit entries
	job    string // its checkpoint: where it stopped
}

// revokeComplete revokes b's keys, a page at a time, until one pass of the
// listing has shown at least as many as b.count says there are, read after
// the pass, resuming a pass an earlier call stopped. It returns how many
// this call revoked.
func (s *Service) revokeComplete(ctx context.Context, actor Actor, b bulk) (int, error) {
	budget := s.revokeBudget
	if d, ok := ctx.Deadline(); ok {
		budget = min(budget, time.Until(d)-revokeMargin)
	}
	deadline := s.now().Add(budget)
	seen, cursor, err := s.resume(ctx, b.job)
	if err != nil {
		return 0, err
	}
	total := 0
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		n, passSeen, err := s.revokePass(ctx, actor, b, seen, cursor, deadline)
		total += n
		if err != nil {
			return total, err
		}
		want, err := b.count(ctx)
		if err != nil {
			return total, fmt.Errorf("lifecycle: counting the keys to revoke: %w", err)
		}
		if int64(passSeen) >= want {
			return total, s.store.PutCheckpoint(ctx, b.job, "")
		}
		// The index has yet to show some keys: list again after a while.
		seen, cursor = 0, ""
		if err := s.store.PutCheckpoint(ctx, b.job, ""); err != nil {
			return total, err
		}
		if !s.now().Add(wait).Before(deadline) {
			return total, fmt.Errorf("%w: the index shows %d of %d keys", ErrIncomplete, passSeen, want)
		}
		if err := s.sleep(ctx, wait); err != nil {
			return total, err
		}
	}
}

// revokePass lists b's keys from cursor (seen of them counted before it)
// to the end, revoking the live ones, and returns how many it revoked and
// how many the whole pass has seen. At the deadline it records where it
// stopped and returns ErrIncomplete.
func (s *Service) revokePass(ctx context.Context, actor Actor, b bulk, seen int, cursor string, deadline time.Time) (revoked, passSeen int, err error) {
	q := b.query
	q.Limit, q.Cursor = store.MaxPageSize, cursor
	for {
		if !s.now().Before(deadline) {
			if err := s.store.PutCheckpoint(ctx, b.job, strconv.Itoa(seen)+" "+q.Cursor); err != nil {
				return revoked, seen, err
			}
			return revoked, seen, fmt.Errorf("%w: %d keys listed so far", ErrIncomplete, seen)
		}
		page, err := s.store.ListKeys(ctx, b.tenant, q)
		if errors.Is(err, store.ErrInvalidCursor) {
			return revoked, 0, nil // a checkpoint of another layout: list again from the start
		}
		if err != nil {
			return revoked, seen, fmt.Errorf("lifecycle: listing keys to revoke: %w", err)
		}
		// A key that does not decode is passed over, not a reason to leave
		// the others working; the authorizer refuses it anyway.
		seen += len(page.Keys) + len(page.Skipped)
		for _, id := range page.Skipped {
			s.log.ErrorContext(ctx, "a key that does not decode was passed over while revoking", "key_id", apikey.PublicID(id), "tenant_id", b.tenant, "reason", b.reason)
		}
		var live []store.Key
		for _, k := range page.Keys {
			if (k.Status == store.KeyActive || k.Status == store.KeyExpiring) && (b.only == nil || b.only(k)) {
				live = append(live, k)
			}
		}
		for batch := range slices.Chunk(live, revokeBatch) {
			n, err := s.revokeAll(ctx, actor, b.tenant, batch, b.reason)
			revoked += n
			if err != nil {
				return revoked, seen, err
			}
		}
		if page.NextCursor == "" {
			return revoked, seen, nil
		}
		q.Cursor = page.NextCursor
	}
}

// resume reads where an earlier call of a bulk revocation stopped.
func (s *Service) resume(ctx context.Context, job string) (seen int, cursor string, err error) {
	cp, err := s.store.GetCheckpoint(ctx, job)
	if err != nil || cp == "" {
		return 0, "", err
	}
	n, cursor, ok := strings.Cut(cp, " ")
	seen, convErr := strconv.Atoi(n)
	if !ok || convErr != nil || seen < 0 {
		return 0, "", nil // not ours to trust: start over
	}
	return seen, cursor, nil
}

// revokeAll revokes keys in one transaction; if any of them changed since
// it was listed, it falls back to revoking them one by one.
func (s *Service) revokeAll(ctx context.Context, actor Actor, tenant string, keys []store.Key, reason string) (int, error) {
	now := s.now().UTC()
	var c store.Change
	for _, k := range keys {
		rev := k.Revision
		if _, err := s.revokeInto(&k, &c, actor, now, reason); err != nil {
			return 0, err
		}
		c.Keys = append(c.Keys, store.KeyWrite{Key: k, ExpectedRevision: rev})
	}
	err := s.store.Apply(ctx, c)
	if err == nil {
		return len(keys), nil
	}
	if !errors.Is(err, store.ErrConflict) {
		return 0, s.writeError("revoking keys", err)
	}
	n := 0
	for _, k := range keys {
		var changed bool
		_, err := s.mutate(ctx, actor, tenant, k.ID, func(k *store.Key, c *store.Change, now time.Time) (bool, error) {
			done, err := s.revokeInto(k, c, actor, now, reason)
			changed = !done
			return done, err
		})
		if err != nil {
			return n, err
		}
		if changed {
			n++
		}
	}
	return n, nil
}

// RevokeMember revokes every key the member created (in the actor's
// environment, for a bounded actor), so that a removed member's keys die
// with their access: every key created before the call, however recently.
// It returns how many this call revoked; with ErrIncomplete, call it again.
func (s *Service) RevokeMember(ctx context.Context, actor Actor, tenant, member string) (int, error) {
	if err := validMemberID("member_id", member); err != nil {
		return 0, err
	}
	b := bulk{tenant: tenant, query: store.KeyQuery{CreatedBy: member}, reason: "member removed",
		count: func(ctx context.Context) (int64, error) { return s.store.MemberKeyCount(ctx, tenant, member) },
		job:   "revoke-member/" + tenant + "/" + member}
	// Every environment is listed, so the count is comparable; a bounded
	// actor revokes in its own.
	if env := actor.Bounds.Environment; env != "" {
		b.only = func(k store.Key) bool { return k.Environment == env }
		b.job += "/" + env
	}
	n, err := s.revokeComplete(ctx, actor, b)
	if err == nil {
		err = s.recordRemoval(ctx, tenant, member, s.now())
	}
	return n, err
}
