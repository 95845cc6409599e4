package lifecycle

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
// the request's context has ended; settleAttempts bounds its tries (about
// 4.5 s of backoff in all).
const (
	resolveTimeout = 10 * time.Second
	settleAttempts = 8
)

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
			return fmt.Errorf("lifecycle: preparing new keys: %w", err)
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
			return fmt.Errorf("lifecycle: rendering the idempotent answer: %w", err)
		}
		done := r.Claim
		done.Done, done.StatusCode, done.Body = true, status, body
		c.Idempotency = &done
	}
	err := s.store.Apply(ctx, c)
	switch {
	case err == nil:
		return nil
	case !ambiguous(err):
		undo()
		return err
	case actor.Receipt == nil && len(created) == 0:
		return err
	case actor.Receipt == nil:
		// No claim to settle with: the first new key tells. Where even
		// that cannot be read, keep what Prepare made, since an identity
		// without its key is harmless and a key without its identity is
		// refused by the gateway.
		switch s.exists(ctx, created[0].ID) {
		case written:
			return nil
		case notWritten:
			undo()
		}
		return err
	}
	switch s.settle(ctx, actor.Receipt.Claim) {
	case written:
		return nil
	case notWritten:
		undo()
	}
	return err
}

// settlement is what settling an ambiguous write found.
type settlement int

const (
	unknown settlement = iota
	written
	notWritten
)

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

// exists settles an ambiguous write that created key id by reading it.
func (s *Service) exists(ctx context.Context, id string) settlement {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), resolveTimeout)
	defer cancel()
	_, err := s.store.GetKey(ctx, id)
	switch {
	case err == nil:
		return written
	case errors.Is(err, store.ErrNotFound):
		return notWritten
	}
	return unknown
}

// settle finds out whether an ambiguous write that would have completed
// claim happened. Releasing the claim makes the write fail from then on
// (it completes that claim, in progress), so a release means not written;
// a claim that cannot be released is done, by the write, or another
// request's, which the write cannot have completed. Any other answer (the
// store still down, the transaction still holding the record) is retried,
// and after the last try the outcome stays unknown.
func (s *Service) settle(ctx context.Context, claim store.Idempotency) settlement {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), resolveTimeout)
	defer cancel()
	wait := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := s.store.DeleteIdempotency(ctx, claim)
		if err == nil {
			return notWritten
		}
		if errors.Is(err, store.ErrConflict) {
			got, err := s.store.GetIdempotency(ctx, claim.TenantID, claim.Key)
			switch {
			case err == nil && got.Done && got.RequestHash == claim.RequestHash && got.CreatedAt.Equal(claim.CreatedAt):
				return written
			case err == nil, errors.Is(err, store.ErrNotFound):
				return notWritten
			}
		}
		if attempt == settleAttempts {
			s.log.ErrorContext(ctx, "an ambiguous write could not be settled; its outcome is unknown", "error", err)
			return unknown
		}
		if s.sleep(ctx, wait) != nil {
			return unknown
		}
		wait = min(2*wait, time.Second)
	}
}
