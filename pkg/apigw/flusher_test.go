package apigw

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/apigateway/types"
)

func newFlusher(t *testing.T) (*Flusher, *fakeAPI, *fakeClock) {
	t.Helper()
	clock := newFakeClock()
	api := newFakeAPI()
	api.now = clock.now
	return NewFlusher(api, "a1b2c3", "prod", WithClock(clock.now), WithSleep(clock.sleep), WithJitter(fullJitter)), api, clock
}

func flushes(api *fakeAPI) []apiCall {
	var f []apiCall
	for _, c := range api.recorded() {
		if c.Op == "FlushStageAuthorizersCache" {
			f = append(f, c)
		}
	}
	return f
}

// waitFor polls cond, which reads the Flusher's state, for up to 5 s.
func waitFor(t *testing.T, f *Flusher, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		f.mu.Lock()
		ok := cond()
		f.mu.Unlock()
		if ok {
			return
		}
	}
	t.Fatal("timed out")
}

func TestFlushCallsTheStage(t *testing.T) {
	f, api, _ := newFlusher(t)
	if err := f.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := flushes(api)
	if len(got) != 1 || got[0].RestAPIID != "a1b2c3" || got[0].Stage != "prod" {
		t.Errorf("calls %+v, want one flush of a1b2c3/prod", got)
	}
}

// flushTogether makes n concurrent flushes arrive while their call waits
// for its slot after an earlier flush, and returns their errors.
func flushTogether(t *testing.T, f *Flusher, clock *fakeClock, n int) []error {
	t.Helper()
	gate := clock.hold()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = f.Flush(t.Context()) })
	}
	waitFor(t, f, func() bool { return f.pending != nil && f.pending.waiters == n })
	close(gate)
	wg.Wait()
	return errs
}

func TestConcurrentFlushesShareOneCall(t *testing.T) {
	f, api, clock := newFlusher(t)
	if err := f.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	for i, err := range flushTogether(t, f, clock, 10) {
		if err != nil {
			t.Errorf("flush %d: %v", i, err)
		}
	}
	got := flushes(api)
	if len(got) != 2 {
		t.Fatalf("%d calls, want the first and one for the ten: %+v", len(got), got)
	}
	if d := got[1].At.Sub(got[0].At); d < time.Second {
		t.Errorf("second call %v after the first, want at least 1s", d)
	}
}

func TestSharersAllGetTheError(t *testing.T) {
	f, api, clock := newFlusher(t)
	if err := f.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	api.mu.Lock()
	api.flushErr = &types.NotFoundException{Message: aws.String("Invalid stage identifier specified")}
	api.mu.Unlock()
	for i, err := range flushTogether(t, f, clock, 10) {
		if _, ok := errors.AsType[*types.NotFoundException](err); !ok {
			t.Errorf("flush %d: %v, want the NotFoundException", i, err)
		}
	}
	if n := len(flushes(api)); n != 2 {
		t.Errorf("%d calls, want 2", n)
	}
}

func TestFlushDuringACallMakesAnotherCall(t *testing.T) {
	f, api, clock := newFlusher(t)
	gate, entered := make(chan struct{}), make(chan struct{}, 2)
	api.mu.Lock()
	api.flushGate, api.flushEntered = gate, entered
	api.mu.Unlock()

	first := make(chan error)
	go func() { first <- f.Flush(t.Context()) }()
	<-entered // the first call is under way
	second := make(chan error)
	go func() { second <- f.Flush(t.Context()) }()
	waitFor(t, f, func() bool { return f.pending != nil && f.pending.waiters == 1 })
	close(gate)

	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := <-second; err != nil {
		t.Fatal(err)
	}
	got := flushes(api)
	if len(got) != 2 {
		t.Fatalf("%d calls, want 2: the second caller must not share the call under way", len(got))
	}
	if d := got[1].At.Sub(got[0].At); d < time.Second {
		t.Errorf("second call %v after the first, want at least 1s", d)
	}
	if s := clock.slept(); len(s) != 1 || s[0] != time.Second {
		t.Errorf("slept %v, want [1s]", s)
	}
}

func TestFlushRetriesThrottling(t *testing.T) {
	f, api, clock := newFlusher(t)
	api.throttle("FlushStageAuthorizersCache", 2)
	if err := f.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := len(flushes(api)); n != 3 {
		t.Errorf("%d calls, want 3", n)
	}
	if s := clock.slept(); len(s) != 2 || s[0] != backoffStart || s[1] != 2*backoffStart {
		t.Errorf("slept %v, want [200ms 400ms]", s)
	}
}

func TestFlushCallerCancelled(t *testing.T) {
	f, api, clock := newFlusher(t)
	if err := f.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	gate := clock.hold()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- f.Flush(ctx) }()
	waitFor(t, f, func() bool { return f.pending != nil })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	// The call nobody waits for is dropped; the next caller gets its own.
	close(gate)
	if err := f.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := len(flushes(api)); n != 2 {
		t.Errorf("%d calls, want 2", n)
	}
}

func TestFlushNotConfigured(t *testing.T) {
	api := newFakeAPI()
	for name, f := range map[string]*Flusher{
		"nil":           nil,
		"no REST API":   NewFlusher(api, "", "prod"),
		"no stage name": NewFlusher(api, "a1b2c3", ""),
	} {
		if err := f.Flush(t.Context()); err == nil {
			t.Errorf("%s: Flush succeeded", name)
		}
	}
	if c := api.recorded(); len(c) != 0 {
		t.Errorf("calls made: %+v", c)
	}
}
