// Package clock holds the one way keyward waits: for a duration, or until
// the context ends, whichever comes first. Code that waits takes a sleep
// function of this shape, so that tests can pass one that moves a test
// clock instead.
package clock

import (
	"context"
	"time"
)

// Sleep waits for d, or until ctx ends (returning its error).
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
