package apigw

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/apigateway"
)

// flushInterval is the least time between the starts of two flushes.
const flushInterval = time.Second

// Flusher flushes a stage's authorizer cache, so that a revocation or a
// narrowing change applies to the very next request. Bursts are coalesced
// to at most one call per second per process.
type Flusher struct {
	client           API
	restAPIID, stage string
	o                options

	mu      sync.Mutex
	pending *flush // not started yet: later callers share it
	last    *flush // the latest started: pending waits for it
}

// flush is one FlushStageAuthorizersCache call and the callers sharing it.
type flush struct {
	prev    *flush
	ctx     context.Context
	cancel  context.CancelFunc
	waiters int       // guarded by Flusher.mu
	started time.Time // set under Flusher.mu before the call, read after prev.done
	err     error     // set before done is closed
	done    chan struct{}
}

// NewFlusher returns a Flusher for stage of the REST API restAPIID.
func NewFlusher(client API, restAPIID, stage string, opts ...Option) *Flusher {
	return &Flusher{client: client, restAPIID: restAPIID, stage: stage, o: newOptions(opts)}
}

// Flush returns nil only once a FlushStageAuthorizersCache call that
// started after Flush was called has succeeded: a call already under way
// may have begun before the caller's change was written. Callers that
// share a call all get its error.
func (f *Flusher) Flush(ctx context.Context) error {
	// A missing configuration must fail the revocation, never pass it.
	if f == nil || f.restAPIID == "" || f.stage == "" {
		return errors.New("apigw: flush: no REST API id or stage configured")
	}
	f.mu.Lock()
	c := f.pending
	if c == nil {
		// The call outlives any one caller: it ends only when all leave.
		cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		c = &flush{prev: f.last, ctx: cctx, cancel: cancel, done: make(chan struct{})}
		f.pending = c
		go f.run(c)
	}
	c.waiters++
	f.mu.Unlock()

	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		f.leave(c)
		return fmt.Errorf("apigw: flush %s/%s: %w", f.restAPIID, f.stage, ctx.Err())
	}
}

// leave drops a caller that stopped waiting, and cancels the call once no
// caller is left.
func (f *Flusher) leave(c *flush) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c.waiters--
	if c.waiters == 0 {
		c.cancel()
		if f.pending == c {
			f.pending = nil
		}
	}
}

func (f *Flusher) run(c *flush) {
	defer close(c.done)
	defer c.cancel()
	err := f.start(c)
	if err == nil {
		_, err = call(c.ctx, &f.o, "flush stage authorizers cache", func(ctx context.Context) (*apigateway.FlushStageAuthorizersCacheOutput, error) {
			return f.client.FlushStageAuthorizersCache(ctx, &apigateway.FlushStageAuthorizersCacheInput{RestApiId: &f.restAPIID, StageName: &f.stage})
		})
	}
	if err != nil {
		c.err = fmt.Errorf("apigw: flush %s/%s: %w", f.restAPIID, f.stage, err)
	}
}

// start waits until the previous call has ended and a second has passed
// since it started, then closes c to new callers.
func (f *Flusher) start(c *flush) error {
	if p := c.prev; p != nil {
		select {
		case <-p.done:
		case <-c.ctx.Done():
			return c.ctx.Err()
		}
		if wait := p.started.Add(flushInterval).Sub(f.o.now()); wait > 0 {
			if err := f.o.sleep(c.ctx, wait); err != nil {
				return err
			}
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pending != c { // every caller left
		return c.ctx.Err()
	}
	f.pending = nil
	f.last = c
	c.started = f.o.now()
	return nil
}
