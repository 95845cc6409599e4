package keys

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/keyward/keyward/pkg/store"
)

// Receipt completes the Idempotency-Key record of the request making a
// change, in the change's own transaction (store.Change.Idempotency), so
// that a retry of the request finds either the answer or no effect at all,
// whatever fails in between.
type Receipt struct {
	// Claim is the request's record, in progress.
	Claim store.Idempotency
	// Answer renders what a replay of the request answers, from what the
	// change writes.
	Answer func(Outcome) (status int, body []byte, err error)
}

// Outcome is what a change writes, as stored: Keys in the order of the
// operation (Create: the new key; Rotate: the old key, then its
// replacement; Onboard: the live, then the test key), and the tenant that
// Onboard writes.
type Outcome struct {
	Keys   []store.Key
	Tenant *store.Tenant
}

// Prepare runs before a change that creates keys is written, with those
// keys (the admin API provisions their rate-limit identities, so that a
// key never exists without one). If the write fails, undo runs.
type Prepare func(ctx context.Context, created []store.Key) (undo func(), err error)

// resolveTimeout bounds settling an ambiguous write, which runs even when
// the request's context has ended.
const resolveTimeout = 10 * time.Second

// write applies c for actor: with the actor's receipt in the same
// transaction, after its Prepare. A write that failed in a way that leaves
// its effect unknown (a timeout, a lost answer) is settled through the
// receipt's claim: releasing the claim makes the change impossible from
// then on, since it completes that claim; failing to release it because the
// change completed it means the change was written.
func (s *Service) write(ctx context.Context, actor Actor, c store.Change) error {
	var created []store.Key
	for _, w := range c.Keys {
		if w.ExpectedRevision == 0 {
			created = append(created, w.Key)
		}
	}
	undo := func() {}
	if actor.Prepare != nil && len(created) > 0 {
		var err error
		if undo, err = actor.Prepare(ctx, created); err != nil {
			return fmt.Errorf("keys: preparing new keys: %w", err)
		}
	}
	if r := actor.Receipt; r != nil {
		out := Outcome{}
		for _, w := range c.Keys {
			k := w.Key
			k.Revision = w.ExpectedRevision + 1
			out.Keys = append(out.Keys, k)
		}
		if w := c.Tenant; w != nil {
			t := w.Tenant
			t.Revision = w.ExpectedRevision + 1
			out.Tenant = &t
		}
		status, body, err := r.Answer(out)
		if err != nil {
			undo()
			return fmt.Errorf("keys: rendering the idempotent answer: %w", err)
		}
		done := r.Claim
		done.Done, done.StatusCode, done.Body = true, status, body
		c.Idempotency = &done
	}
	err := s.store.Apply(ctx, c)
	if err != nil && actor.Receipt != nil && ambiguous(err) && s.written(ctx, actor.Receipt.Claim) {
		return nil
	}
	if err != nil {
		undo()
	}
	return err
}

// ambiguous reports whether a failed write may have been applied: any
// failure but the store's definite refusals.
func ambiguous(err error) bool {
	for _, definite := range []error{store.ErrConflict, store.ErrAlreadyExists, store.ErrNotFound, store.ErrChangeTooLarge, store.ErrCorrupt} {
		if errors.Is(err, definite) {
			return false
		}
	}
	return true
}

// written settles an ambiguous write that would have completed claim: it
// reports whether the write happened. Releasing the claim makes the write
// fail from then on; a claim that cannot be released is either done (by
// the write) or lost to another request.
func (s *Service) written(ctx context.Context, claim store.Idempotency) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), resolveTimeout)
	defer cancel()
	if err := s.store.DeleteIdempotency(ctx, claim); !errors.Is(err, store.ErrConflict) {
		return false // released (or unknown, which the caller reports as the failure it is)
	}
	got, err := s.store.GetIdempotency(ctx, claim.TenantID, claim.Key)
	return err == nil && got.Done && got.RequestHash == claim.RequestHash && got.CreatedAt.Equal(claim.CreatedAt)
}
