// Package testflush records authorizer cache flushes for tests, on a test
// clock.
package testflush

import (
	"context"
	"sync"
	"time"

	"github.com/keyward/keyward/pkg/clock"
)

// Recorder is an authorizer.Flusher that records when it was flushed and
// fails (recording nothing) while Fail is set.
type Recorder struct {
	Clock *clock.Manual

	mu   sync.Mutex
	at   []time.Time
	fail error
}

// Flush records the clock's time, or returns the set failure.
func (r *Recorder) Flush(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	r.at = append(r.at, r.Clock.Now())
	return nil
}

// Fail makes every Flush fail with err until Fail(nil).
func (r *Recorder) Fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fail = err
}

// At returns when each successful flush happened.
func (r *Recorder) At() []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.at...)
}
