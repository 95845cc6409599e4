package clock_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/clock"
)

func TestSleepHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	start := time.Now()
	if err := clock.Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("sleep = %v, want context.Canceled", err)
	}
	if err := clock.Sleep(t.Context(), time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > time.Minute {
		t.Error("sleep ignored its context")
	}
}
