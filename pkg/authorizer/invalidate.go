package authorizer

import (
	"context"
	"fmt"
	"time"
)

// Flusher flushes the gateway's authorizer cache (FlushStageAuthorizersCache
// in AWS, the emulation's cache locally).
type Flusher interface {
	Flush(ctx context.Context) error
}

// CacheSettle is how long after a policy leaves the authorizer the gateway
// may still be caching it: the trip back to API Gateway, with room to spare.
const CacheSettle = 250 * time.Millisecond

// RecheckAfter is how long after a change the second flush must start: by
// then every policy read before the change has been cached or refused.
const RecheckAfter = MaxDecisionAge + CacheSettle

// Invalidate makes a change that took access away at changedAt effective
// for every later request, where the gateway caches decisions. A flush
// clears what is cached, but not a decision being made: one that read the
// key before the change can be cached after the flush, as API Gateway
// does. So Invalidate flushes at once, and again once RecheckAfter has
// passed since the change; no decision may take longer (MaxDecisionAge).
// sleep waits, or fails when ctx ends.
func Invalidate(ctx context.Context, f Flusher, changedAt time.Time, now func() time.Time, sleep func(context.Context, time.Duration) error) error {
	if err := f.Flush(ctx); err != nil {
		return err
	}
	if wait := changedAt.Add(RecheckAfter).Sub(now()); wait > 0 {
		if err := sleep(ctx, wait); err != nil {
			return fmt.Errorf("authorizer: waiting to flush again: %w", err)
		}
	}
	return f.Flush(ctx)
}

// InvalidateTimeout bounds making one change effective: two flushes,
// retried on throttling, and the wait between them.
const InvalidateTimeout = 20 * time.Second

// InvalidateChange makes a change just made effective on the next request
// (Invalidate from now), where a cache holds decisions: none without a
// flusher or with the cache off (cacheTTLSeconds 0). It runs to the end
// even if ctx is cancelled (the caller has gone, the change is made),
// within InvalidateTimeout.
func InvalidateChange(ctx context.Context, f Flusher, cacheTTLSeconds int, now func() time.Time, sleep func(context.Context, time.Duration) error) error {
	if f == nil || cacheTTLSeconds == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), InvalidateTimeout)
	defer cancel()
	return Invalidate(ctx, f, now(), now, sleep)
}
