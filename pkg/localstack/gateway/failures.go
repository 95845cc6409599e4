package gateway

import (
	"sync"
	"time"
)

// Failed operator-token attempts: a client address may fail
// failureBurst times at once, then once per failureEvery. Guessing the
// token is hopeless anyway (32 random characters); the limit keeps a
// guesser from costing anything.
const (
	failureBurst = 10
	failureEvery = 6 * time.Second
	// maxFailureBuckets bounds the addresses tracked; past it, those
	// whose bucket has refilled are forgotten.
	maxFailureBuckets = 10000
)

// failures is a token bucket of failed attempts per client address.
type failures struct {
	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

// refill brings b to now and returns it.
func (b *bucket) refill(now time.Time) *bucket {
	if d := now.Sub(b.at); d > 0 {
		b.tokens = min(failureBurst, b.tokens+d.Seconds()/failureEvery.Seconds())
		b.at = now
	}
	return b
}

// wait is how long addr must wait before its next attempt; 0 if it may
// try now.
func (f *failures) wait(addr string, now time.Time) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.buckets[addr]
	if !ok || b.refill(now).tokens >= 1 {
		return 0
	}
	return time.Duration((1 - b.tokens) * float64(failureEvery))
}

// fail counts a failed attempt from addr.
func (f *failures) fail(addr string, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.buckets[addr]
	if !ok {
		if len(f.buckets) >= maxFailureBuckets {
			// Forget the refilled buckets, and if too few are, any half:
			// a flood of addresses then costs some guesses, never memory.
			for a, old := range f.buckets {
				if old.refill(now).tokens >= failureBurst || len(f.buckets) > maxFailureBuckets/2 {
					delete(f.buckets, a)
				}
			}
		}
		b = &bucket{tokens: failureBurst, at: now}
		f.buckets[addr] = b
	}
	b.refill(now).tokens = max(0, b.tokens-1)
}
