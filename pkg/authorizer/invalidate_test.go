package authorizer_test

import (
	"context"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/authorizer"
)

type countingFlusher struct{ flushes int }

func (f *countingFlusher) Flush(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.flushes++
	return nil
}

// TestInvalidateChange: twice, after the recheck delay, even once the
// caller has gone; nothing where no cache holds decisions.
func TestInvalidateChange(t *testing.T) {
	now := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	var slept time.Duration
	sleep := func(_ context.Context, d time.Duration) error { slept += d; now = now.Add(d); return nil }
	clock := func() time.Time { return now }

	gone, cancel := context.WithCancel(t.Context())
	cancel()
	f := &countingFlusher{}
	if err := authorizer.InvalidateChange(gone, f, 300, clock, sleep); err != nil || f.flushes != 2 || slept != authorizer.RecheckAfter {
		t.Fatalf("after the caller went: %v, %d flushes, slept %v", err, f.flushes, slept)
	}
	off := &countingFlusher{}
	if err := authorizer.InvalidateChange(t.Context(), off, 0, clock, sleep); err != nil || off.flushes != 0 {
		t.Fatalf("cache off: %v, %d flushes", err, off.flushes)
	}
	if err := authorizer.InvalidateChange(t.Context(), nil, 300, clock, sleep); err != nil {
		t.Fatalf("no flusher: %v", err)
	}
}
